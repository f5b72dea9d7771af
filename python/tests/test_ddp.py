"""The DDP communication hook and the FSDP2 custom collectives on 4 gloo ranks, training the real
all-MiniLM-L6-v2 on real text: compressed training gives parameters bit-identical to its
uncompressed twin (same reduction order, nothing coded), all ranks stay in step, and the result is
what DDP / FSDP compute with their own collectives (up to the order of additions)."""
from __future__ import annotations

import os
import random

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

import shuff
import shuff.ddp
import shuff.fsdp
from conftest import load_capture_tool
from test_distributed import free_port

WS, STEPS, WARMUP, BATCH, SEQ = 4, 5, 2, 4, 32


def train(model_dir: str, passages: list[str], rank: int, wrap) -> torch.Tensor:
    """STEPS steps of the contrastive objective from the same start and the same batches; the
    parameters at the end (this rank's shards under FSDP), flattened. `wrap(model)` returns the
    parallel model and a function to call after each step."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    model, after_step = wrap(AutoModel.from_pretrained(model_dir, add_pooling_layer=False))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    torch.manual_seed(1 + rank)  # dropout: the same masks in every run of this rank
    rng = random.Random(rank)
    for _ in range(STEPS):
        start = rng.randrange(0, len(passages) - 2 * BATCH)
        a, b = passages[start : start + 2 * BATCH : 2], passages[start + 1 : start + 2 * BATCH : 2]
        enc = tok(a + b, padding="max_length", truncation=True, max_length=SEQ, return_tensors="pt")
        out = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).to(out.dtype)
        emb = torch.nn.functional.normalize((out * m).sum(1) / m.sum(1), dim=-1)
        loss = torch.nn.functional.cross_entropy(emb[:BATCH] @ emb[BATCH:].T * 20.0, torch.arange(BATCH))
        opt.zero_grad()
        loss.backward()
        opt.step()
        after_step()
    return torch.cat([(p.to_local() if hasattr(p, "to_local") else p).detach().reshape(-1) for p in model.parameters()])


def ddp(hook_state: shuff.ddp.HookState | None):
    def wrap(model):
        model = DDP(model)
        if hook_state is not None:
            model.register_comm_hook(hook_state, shuff.ddp.comm_hook)
        return model, lambda: None

    return wrap


def fsdp(comms: shuff.fsdp.Compression | None):
    def wrap(model):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (WS,))
        for layer in model.encoder.layer:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        if comms is None:
            return model, lambda: None
        assert comms.attach(model) == len(model.encoder.layer) + 1
        return model, comms.step

    return wrap


def check_same_everywhere(got: torch.Tensor) -> None:
    """All ranks hold the same tensor (they averaged, and got the same average)."""
    every = [torch.empty_like(got) for _ in range(WS)]
    dist.all_gather(every, got)
    assert all(np.array_equal(shuff.byte_view(e), shuff.byte_view(got)) for e in every), "ranks diverged"


def worker(rank: int, port: int, model_dir: str, passages: list[str], parallel: str) -> None:
    """Trains four times from the same start on the same batches — compressed, the uncompressed
    twin, torch's own collectives, compressed with refresh every step — and compares."""
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WS)
    torch.set_num_threads(1)  # the same kernels, so the same bits, in every run
    state, wrap, what = {
        "ddp": (shuff.ddp.HookState, ddp, "DDP hook"),
        "fsdp": (shuff.fsdp.Compression, fsdp, "FSDP2 collectives"),
    }[parallel]

    compressed = state(warmup_steps=WARMUP, compress=True)
    got = train(model_dir, passages, rank, wrap(compressed))
    twin = state(warmup_steps=WARMUP, compress=False)
    want = train(model_dir, passages, rank, wrap(twin))
    plain = train(model_dir, passages, rank, wrap(None))
    refreshing = state(warmup_steps=WARMUP, compress=True, refresh_every=1)
    refreshed = train(model_dir, passages, rank, wrap(refreshing))

    assert np.array_equal(shuff.byte_view(got), shuff.byte_view(want)), f"{what}: compressed training differs from its uncompressed twin"
    # Online refresh: a new set after every step past warm-up, built alike on every rank (the
    # collectives check it on every call), and training still bit-identical.
    assert refreshing.refreshes == STEPS - WARMUP and refreshing.book.fingerprint != compressed.book.fingerprint
    assert np.array_equal(shuff.byte_view(refreshed), shuff.byte_view(want)), f"{what}: training with refreshed codebooks differs"
    # The same average as torch's own collectives, up to the order of additions.
    assert torch.allclose(got, plain, rtol=0, atol=1e-6), f"{what}: max difference from torch's own {float((got - plain).abs().max()):.3g}"

    # Warm-up learned one codebook set, the same on every rank (the collectives check it on every
    # call); after warm-up the compressed run sent less than it was given.
    book = compressed.book
    assert book is not None and sorted(book.classes()) == {"ddp": ["grad.f32.ag", "grad.f32.rs"], "fsdp": ["grad.f32.rs", "param.f32"]}[parallel]
    assert twin.book is not None and twin.book.fingerprint == book.fingerprint, "both runs learn from the same counts"
    traffic = compressed.traffic
    assert traffic.compressed_calls > 0 and twin.traffic.compressed_calls == 0
    assert traffic.sent < twin.traffic.sent == twin.traffic.original == traffic.original
    if parallel == "ddp":
        # DDP ranks hold whole parameters: the same on every rank, and moved by training.
        check_same_everywhere(got)
        from transformers import AutoModel

        start = torch.cat([p.detach().reshape(-1) for p in AutoModel.from_pretrained(model_dir, add_pooling_layer=False).parameters()])
        assert float((got - start).abs().max()) > 1e-5, "training did not move the parameters"
        assert refreshing.traffic.original == traffic.original
    else:
        # FSDP ranks hold different shards; the set is the same everywhere.
        check_same_everywhere(torch.tensor([book.fingerprint & 0x7FFF_FFFF_FFFF_FFFF]))
    if rank == 0:
        print(f"{what}, {STEPS} steps ({WARMUP} warm-up): sent {traffic.sent / traffic.original:.4f} of the bytes "
              f"({traffic.compressed_calls} of {traffic.calls} calls compressed); refreshed every step: "
              f"{refreshing.traffic.sent / refreshing.traffic.original:.4f}")
    dist.barrier()
    dist.destroy_process_group()


def real_passages() -> tuple[str, list[str]]:
    cap = load_capture_tool()
    model_dir = cap.model_dir()
    passages = [s for s in cap.real_sentences(model_dir, limit=400, text="stdlib") if len(s) > 40]
    assert len(passages) > 4 * BATCH
    return model_dir, passages


def test_ddp_hook_trains_minilm_bit_identically_to_its_uncompressed_twin():
    mp.spawn(worker, args=(free_port(), *real_passages(), "ddp"), nprocs=WS, join=True)


def test_fsdp2_collectives_train_minilm_bit_identically_to_their_uncompressed_twin():
    mp.spawn(worker, args=(free_port(), *real_passages(), "fsdp"), nprocs=WS, join=True)


def test_hook_state_refuses_what_it_cannot_do():
    import pytest

    with pytest.raises(shuff.ShuffError, match="warm-up"):
        shuff.ddp.HookState(warmup_steps=0)
    with pytest.raises(shuff.ShuffError, match="compress"):
        shuff.ddp.HookState(compress="sometimes")
    with pytest.raises(shuff.ShuffError, match="refresh_every"):
        shuff.ddp.HookState(refresh_every=0)
    with pytest.raises(shuff.ShuffError, match="warm-up"):
        shuff.fsdp.Compression(warmup_steps=0)
    with pytest.raises(shuff.ShuffError, match="FSDP module"):
        shuff.fsdp.Compression().attach(torch.nn.Linear(2, 2))
