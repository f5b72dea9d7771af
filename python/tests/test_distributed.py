"""Compressed collectives on 4 gloo processes, bit-exact against torch's uncompressed ones, on the
committed real tensors."""
from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import shuff
import shuff.distributed as sd
from conftest import step_tensors

WS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return np.array_equal(shuff.byte_view(a), shuff.byte_view(b))


def book_for(cls_tensors: dict[str, list[torch.Tensor]], layout: str) -> shuff.CodebookSet:
    tr = shuff.Trainer()
    for cls, ts in cls_tensors.items():
        for batch, t in enumerate(ts):
            tr.add(cls, shuff.dtype_name(t), layout, batch, shuff.byte_view(t))
    return tr.build("dist-test")


def worker(rank: int, port: int, layout: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WS)
    steps = [step_tensors(s) for s in range(5)]
    # Every rank trains the same book from steps 0-2 (deterministic), and sends step 3-4 data.
    act = lambda s, l=1: torch.cat([s[f"layer{l}.ffn1_act.x.shard{k}"] for k in range(8)], 1)  # noqa: E731
    grad = lambda s, k: s[f"layer4.weight_grad.ffn1.shard{k}"]  # noqa: E731
    book = book_for({"act": [act(s) for s in steps[:3]], "grad": [grad(s, k) for s in steps[:3] for k in range(8)]}, layout)

    # all_gather: each rank its own real activation.
    mine = act(steps[3 + rank % 2], l=1 if rank < 2 else 4)
    got = [torch.empty_like(mine) for _ in range(WS)]
    ref = [torch.empty_like(mine) for _ in range(WS)]
    sd.all_gather(got, mine, book=book, cls="act", compress=True)
    dist.all_gather(ref, mine)
    assert all(same_bits(g, r) for g, r in zip(got, ref)), "all_gather differs"
    ref_gather = ref

    # A message of several pipeline pieces (128 KiB, 256 KiB, 512 KiB, 1 MiB, …): every real
    # tensor of the sample, ~3.7 MB per rank, rotated per rank so each rank sends different data.
    big = torch.cat([t.reshape(-1) for s in steps for _, t in sorted(s.items())])
    big = torch.roll(big, shifts=rank * 1000).contiguous()
    got = [torch.empty_like(big) for _ in range(WS)]
    ref = [torch.empty_like(big) for _ in range(WS)]
    sd.all_gather(got, big, book=book, cls="act", compress=True)
    dist.all_gather(ref, big)
    assert big.numel() * 2 > 3 * 2**20 and all(same_bits(g, r) for g, r in zip(got, ref)), "pipelined all_gather differs"

    # all_to_all: chunk j of rank r's activation goes to rank j.
    chunks = [c.contiguous() for c in mine.chunk(WS, dim=0)]
    got = [torch.empty_like(c) for c in chunks]
    ref = [torch.empty_like(c) for c in chunks]
    sd.all_to_all(got, chunks, book=book, cls="act", compress=True)
    dist.all_to_all(ref, chunks)
    assert all(same_bits(g, r) for g, r in zip(got, ref)), "all_to_all differs"
    ref_a2a = ref

    # reduce_scatter of real weight gradients, bit-identical to torch's own (gloo), also for sizes
    # that do not split evenly and in f32/f16.
    for dtype, n in [(torch.bfloat16, None), (torch.bfloat16, 1001), (torch.float32, 777), (torch.float16, 50)]:
        inputs = [grad(steps[3 + rank % 2], (rank + j) % 8).reshape(-1)[:n].to(dtype).contiguous() for j in range(WS)]
        gb = book_for({"g": [grad(steps[0], k).reshape(-1)[:n].to(dtype).contiguous() for k in range(8)]}, layout)
        out, ref_out = torch.empty_like(inputs[0]), torch.empty_like(inputs[0])
        sd.reduce_scatter(out, inputs, book=gb, cls="g", compress=True)
        dist.reduce_scatter(ref_out, inputs)
        assert same_bits(out, ref_out), f"reduce_scatter {dtype} x{inputs[0].numel()} differs from torch's"

    # Data that does not shrink travels raw and still arrives intact.
    noise = torch.randint(0, 256, (5000,), dtype=torch.uint8, generator=torch.Generator().manual_seed(rank))
    nb = book_for({"u8": [torch.arange(256, dtype=torch.uint8).repeat(4)]}, "bytes")
    got = [torch.empty_like(noise) for _ in range(WS)]
    ref = [torch.empty_like(noise) for _ in range(WS)]
    sd.all_gather(got, noise, book=nb, cls="u8", compress=True)
    dist.all_gather(ref, noise)
    assert all(same_bits(g, r) for g, r in zip(got, ref)), "raw fallback differs"

    # compress="auto": calibration calls alternate both paths, then all ranks keep the same one.
    for _ in range(9):
        got = [torch.empty_like(mine) for _ in range(WS)]
        sd.all_gather(got, mine, book=book, cls="act", compress="auto")
        assert all(same_bits(g, r) for g, r in zip(got, ref_gather)), "auto all_gather differs"
        got = [torch.empty_like(c) for c in chunks]
        sd.all_to_all(got, chunks, book=book, cls="act", compress="auto")
        assert all(same_bits(g, r) for g, r in zip(got, ref_a2a)), "auto all_to_all differs"

    # A rank with another codebook set: every rank gets the error, none decodes garbage.
    other = book_for({"act": [act(steps[4], l=4)]}, layout) if rank == 3 else book
    with pytest.raises(shuff.ShuffError, match="different codebook sets"):
        sd.all_gather([torch.empty_like(mine) for _ in range(WS)], mine, book=other, cls="act", compress=True)
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.parametrize("layout", ["bytes", "exponent"])
def test_collectives_are_bit_exact_on_four_gloo_ranks(layout):
    mp.spawn(worker, args=(free_port(), layout), nprocs=WS, join=True)


def refresh_worker(rank: int, port: int) -> None:
    """Online refresh on real steps: activation gradients, frozen set from step 0, 8 calls over
    steps 1-4."""
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WS)
    steps = [step_tensors(s) for s in range(5)]
    grad = lambda s, l: torch.cat([s[f"layer{l}.ffn1_act_grad.x.shard{k}"] for k in (2 * rank, 2 * rank + 1)], 1)  # noqa: E731
    # The same set on every rank: all of step 0's shards.
    frozen = book_for({"g": [steps[0][f"layer{l}.ffn1_act_grad.x.shard{k}"] for l in (1, 4) for k in range(8)]}, "exponent")
    calls = [(s, l) for s in range(1, 5) for l in (1, 4)]

    def run(book) -> int:
        """Bytes all ranks sent over the calls; every output bit-exact against torch's."""
        with sd.Traffic().recording() as traffic:
            for s, l in calls:
                mine = grad(steps[s], l)
                got, ref = [torch.empty_like(mine) for _ in range(WS)], [torch.empty_like(mine) for _ in range(WS)]
                sd.all_gather(got, mine, book=book, cls="g", compress=True)
                dist.all_gather(ref, mine)
                assert all(same_bits(g, r) for g, r in zip(got, ref)), f"refreshing all_gather differs at step {s}"
        total = torch.tensor([traffic.sent, traffic.original])
        dist.all_reduce(total)
        return int(total[0]), int(total[1])

    sent_frozen, original = run(frozen)
    every = sd.Refresh(frozen, every=2)
    sent_refresh, _ = run(every)
    assert (every.calls, every.checks, every.refreshes) == (8, 4, 4)
    fingerprints = [None] * WS
    dist.all_gather_object(fingerprints, every.fingerprint)
    assert len(set(fingerprints)) == 1 and fingerprints[0] != frozen.fingerprint, "every rank built the same new set"
    # DriftMonitor as the trigger: a threshold no drift reaches never refreshes (the frozen set's
    # traffic to the byte); one every check passes refreshes as `every` does.
    never = sd.Refresh(frozen, every=2, drift_pp=100.0)
    assert run(never)[0] == sent_frozen and (never.checks, never.refreshes) == (4, 0) and never.last_drift_pp > 0
    always = sd.Refresh(frozen, every=2, drift_pp=-1.0)
    assert run(always)[0] == sent_refresh and always.refreshes == 4
    if rank == 0:
        print(f"\nrefresh on 4 ranks, 8 calls of activation gradients (steps 1-4), {original} bytes: frozen set "
              f"(step 0) sent {sent_frozen}, refreshed every 2 calls {sent_refresh} "
              f"({100 * (sent_frozen - sent_refresh) / original:+.2f} pp of the original); drift at the last check "
              f"{never.last_drift_pp:.2f} pp")
    # A rank that did not switch is caught by the fingerprint check: every rank gets the error.
    if rank == 0:
        every.current = frozen
    mine = grad(steps[4], 1)
    with pytest.raises(shuff.ShuffError, match="different codebook sets"):
        sd.all_gather([torch.empty_like(mine) for _ in range(WS)], mine, book=every, cls="g", compress=True)
    dist.barrier()
    dist.destroy_process_group()


def test_refresh_switches_sets_together_and_stays_bit_exact():
    mp.spawn(refresh_worker, args=(free_port(),), nprocs=WS, join=True)


def order_worker(rank: int, port: int, ws: int) -> None:
    """The summation-order model behind reduce_scatter, against gloo itself, many sizes."""
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=ws)
    g = torch.Generator().manual_seed(7)
    for n in [1, 2, 3, 7, 64, 999, 4097, 65537]:
        for dtype in (torch.bfloat16, torch.float16, torch.float32):
            every = [[(torch.randn(n, generator=g) * 10 ** torch.randn(n, generator=g)).to(dtype) for _ in range(ws)] for _ in range(ws)]
            ref = torch.empty(n, dtype=dtype)
            dist.reduce_scatter(ref, every[rank])
            mine = torch.empty(n, dtype=dtype)
            sd._sum_like_gloo([every[r][rank] for r in range(ws)], mine)
            assert same_bits(mine, ref), f"{ws} ranks, {n} x {dtype}: gloo added in another order"
    dist.destroy_process_group()


@pytest.mark.parametrize("ws", [3, 5])
def test_reduce_scatter_order_model_matches_gloo(ws):
    mp.spawn(order_worker, args=(free_port(), ws), nprocs=ws, join=True)
