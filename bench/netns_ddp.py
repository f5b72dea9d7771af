#!/usr/bin/env python3
"""DDP and FSDP2 step time of a real model over a rate-limited network: torch's own collectives
beside shuff's (the DDP communication hook, FSDP2's custom all-gather and reduce-scatter),
compressed and as their uncompressed twin.

The same 4-rank network as bench/netns_allgather.py (one network namespace per rank, veth pairs to
a bridge, `tc` token buckets on every link in both directions; `none` = plain loopback). Each rank
fine-tunes all-MiniLM-L6-v2 (the contrastive objective of tools/capture_minilm.py, on real text)
with DistributedDataParallel, or FSDP2 (`fully_shard` per transformer layer and the root); per variant, the first steps are warm-up (the hook learns its
codebooks there) and the median of the following steps' wall time is kept (slowest rank). Needs
root (ip netns, tc).

    sudo .venv/bin/python bench/netns_ddp.py --rates 1gbit,10gbit,none --parallel ddp,fsdp --dtypes f32,bf16

Variants: `plain` (torch's own: DDP's gloo all-reduce, FSDP's default collectives), `twin` (shuff's
collectives with nothing coded), `shuff` (compressed, compress=True), `auto` (compress="auto":
measures both, keeps the faster). `bf16` trains the model in bfloat16, so its parameters and
gradients travel as bf16.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from netns_allgather import WS, run_ranks  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
VARIANTS = ("plain", "twin", "shuff", "auto")


def worker(args) -> None:
    import importlib.util
    import random

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from transformers import AutoModel, AutoTokenizer

    import shuff.ddp
    import shuff.distributed
    import shuff.fsdp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    spec = importlib.util.spec_from_file_location("capture_minilm", REPO / "tools" / "capture_minilm.py")
    cap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cap)
    rank = args.rank
    dist.init_process_group("gloo", init_method=f"tcp://{args.master}:29556", rank=rank, world_size=WS)
    torch.set_num_threads(1)
    mdir = cap.model_dir()
    tok = AutoTokenizer.from_pretrained(mdir)
    passages = [s for s in cap.real_sentences(mdir, limit=2000, text="stdlib") if len(s) > 40]
    rows = []
    for parallel, dtype in [(p, d) for p in args.parallel.split(",") for d in args.dtypes.split(",")]:
        for variant in VARIANTS:
            torch.manual_seed(0)
            model = AutoModel.from_pretrained(mdir, add_pooling_layer=False)
            if dtype == "bf16":
                model = model.to(torch.bfloat16)
            compress = {"twin": False, "shuff": True, "auto": "auto"}.get(variant)
            state, after_step = None, lambda: None
            if parallel == "ddp":
                model = DDP(model)
                if variant != "plain":
                    state = shuff.ddp.HookState(warmup_steps=args.warmup, compress=compress)
                    model.register_comm_hook(state, shuff.ddp.comm_hook)
            else:
                mesh = init_device_mesh("cpu", (WS,))
                for layer in model.encoder.layer:
                    fully_shard(layer, mesh=mesh)
                fully_shard(model, mesh=mesh)
                if variant != "plain":
                    state = shuff.fsdp.Compression(warmup_steps=args.warmup, compress=compress)
                    state.attach(model)
                    after_step = state.step
            model.train()
            opt = torch.optim.SGD(model.parameters(), lr=1e-3)
            rng = random.Random(rank)
            times = []
            # "auto" spends 2 × 3 calls per bucket size class on calibration: time past them.
            skip = args.warmup + (6 if variant == "auto" else 0)
            for step in range(skip + args.steps):
                start = rng.randrange(0, len(passages) - 2 * args.batch)
                a, b = passages[start : start + 2 * args.batch : 2], passages[start + 1 : start + 2 * args.batch : 2]
                enc = tok(a + b, padding="max_length", truncation=True, max_length=args.seq, return_tensors="pt")
                if state is not None and step == skip:
                    state.traffic = shuff.distributed.Traffic()  # count the timed steps only
                dist.barrier()
                t = time.perf_counter()
                out = model(**enc).last_hidden_state.float()
                m = enc["attention_mask"].unsqueeze(-1).to(out.dtype)
                emb = torch.nn.functional.normalize((out * m).sum(1) / m.sum(1), dim=-1)
                loss = torch.nn.functional.cross_entropy(emb[: args.batch] @ emb[args.batch :].T * 20.0, torch.arange(args.batch))
                opt.zero_grad()
                loss.backward()
                opt.step()
                after_step()
                if step >= skip:
                    times.append(time.perf_counter() - t)
            med = torch.tensor(statistics.median(times))
            dist.all_reduce(med, op=dist.ReduceOp.MAX)  # the slowest rank's median
            ratio = None
            if state is not None and state.traffic.compressed_calls:
                ratio = state.traffic.sent / state.traffic.original
            rows.append((parallel, dtype, variant, float(med), ratio))
    if rank == 0:
        print(json.dumps(rows), flush=True)
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="1gbit,10gbit,none")
    ap.add_argument("--parallel", default="ddp,fsdp", help="DDP (hook) and/or FSDP2 (custom collectives)")
    ap.add_argument("--dtypes", default="f32,bf16", help="parameter (and gradient) dtypes to train in")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=2, help="untimed first steps (the hook learns its codebooks there)")
    ap.add_argument("--batch", type=int, default=8, help="sentence pairs per rank and step")
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--master", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rank is not None:
        return worker(args)

    results = {}
    for rate in args.rates.split(","):
        extra = [a for k in ("parallel", "dtypes", "steps", "warmup", "batch", "seq") for a in (f"--{k}", str(getattr(args, k)))]
        results[rate] = json.loads(run_ranks(rate, __file__, extra))
    print("| link | parallel | params/grads | torch's own | shuff, uncompressed twin | shuff | shuff, auto | shuff vs torch | auto vs torch | bytes sent / given |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for rate, rows in results.items():
        by: dict[tuple[str, str], dict[str, tuple[float, float | None]]] = {}
        for parallel, dtype, variant, secs, ratio in rows:
            by.setdefault((parallel, dtype), {})[variant] = (secs, ratio)
        for (parallel, dtype), v in by.items():
            d, t, s, a = (v[k][0] for k in VARIANTS)
            print(f"| {rate} | {parallel} | {dtype} | {d * 1e3:.0f} ms | {t * 1e3:.0f} ms | {s * 1e3:.0f} ms | {a * 1e3:.0f} ms | {d / s:.2f}× | "
                  f"{d / a:.2f}× | {v['shuff'][1]:.3f} |")

if __name__ == "__main__":
    main()
