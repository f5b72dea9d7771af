#!/usr/bin/env python3
"""All-gather of real bf16 activations over a rate-limited network, with and without shuff.

Starts 4 ranks, each in its own Linux network namespace, joined by veth pairs to a bridge in a
fifth ("switch") namespace; `tc` limits every link to the given rate in both directions (token
bucket). Traffic never leaves these namespaces. Each rank runs torch.distributed (gloo) and times,
per message size, the uncompressed all_gather and shuff.distributed.all_gather with `bytes` and
`exponent` codebooks trained on earlier steps of the same fine-tuning. Needs root (ip netns, tc).

    sudo .venv/bin/python bench/netns_allgather.py --rates 1gbit,10gbit,none --sizes 1,4,16,64 \\
         --capture data/minilm           # the full capture from tools/capture_minilm.py
    (--capture tests/data/minilm-sample works too: its tensors are repeated to fill the sizes)

Prints a Markdown table of medians; `none` = no namespaces, plain loopback, no rate limit.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

WS = 4
NS = [f"shuffbench{r}" for r in range(WS)]
SWITCH = "shuffbenchsw"


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True)


def teardown() -> None:
    for ns in NS + [SWITCH]:
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


def setup(rate: str) -> None:
    teardown()
    sh("ip", "netns", "add", SWITCH)
    sh("ip", "netns", "exec", SWITCH, "ip", "link", "add", "br0", "type", "bridge")
    sh("ip", "netns", "exec", SWITCH, "ip", "link", "set", "br0", "up")
    for r, ns in enumerate(NS):
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", f"sb{r}", "netns", ns, "type", "veth", "peer", "name", f"sbp{r}", "netns", SWITCH)
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"10.77.0.{r + 1}/24", "dev", f"sb{r}")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", f"sb{r}", "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        sh("ip", "netns", "exec", SWITCH, "ip", "link", "set", f"sbp{r}", "master", "br0")
        sh("ip", "netns", "exec", SWITCH, "ip", "link", "set", f"sbp{r}", "up")
        # Both directions of the rank's link: its egress, and the switch's egress towards it.
        for where, dev in ((ns, f"sb{r}"), (SWITCH, f"sbp{r}")):
            sh("ip", "netns", "exec", where, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", "1mb", "latency", "100ms")


def run_ranks(rate: str, script: str, extra: list[str]) -> str:
    """Runs `script --rank R --master ADDR EXTRA…` for the 4 ranks, each in its namespace behind a
    link limited to `rate` (`none`: plain loopback, no namespaces), one coding thread per rank (as
    one core per rank would give); returns the last line rank 0 printed."""
    namespaced = rate != "none"
    if namespaced:
        setup(rate)
    try:
        procs = []
        for r in range(WS):
            cmd = [sys.executable, script, "--rank", str(r), "--master", "10.77.0.1" if namespaced else "127.0.0.1", *extra]
            env = dict(os.environ, GLOO_SOCKET_IFNAME=f"sb{r}" if namespaced else "lo", OMP_NUM_THREADS="1", RAYON_NUM_THREADS="1",
                       HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
            if namespaced:
                cmd = ["ip", "netns", "exec", NS[r]] + cmd
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
        outs = [p.communicate()[0] for p in procs]
        if any(p.returncode for p in procs):
            sys.exit(f"a rank failed at rate {rate}")
        return outs[0].strip().splitlines()[-1]
    finally:
        if namespaced:
            teardown()


def worker(args) -> None:
    import numpy as np
    import torch
    import torch.distributed as dist

    import shuff
    import shuff.distributed as sd

    rank = args.rank
    dist.init_process_group("gloo", init_method=f"tcp://{args.master}:29555", rank=rank, world_size=WS)
    books = {layout: shuff.CodebookSet.load(p) for layout, p in json.loads(args.books).items()}
    source = torch.from_numpy(np.fromfile(args.data, dtype=np.uint8)).view(torch.bfloat16)
    rows = []
    for mib in [int(s) for s in args.sizes.split(",")]:
        n = mib * (1 << 20) // 2
        # Each rank its own slice of real activations (repeated if the source is short).
        start = (rank * n) % max(1, source.numel() - n) if source.numel() > n else 0
        x = source[start : start + n] if source.numel() >= n else source.repeat(n // source.numel() + 1)[:n]
        x = x.contiguous()
        outs = [torch.empty_like(x) for _ in range(WS)]
        variants = {"uncompressed": lambda: dist.all_gather(outs, x)}
        for layout, book in books.items():
            variants[f"shuff {layout}"] = lambda book=book: sd.all_gather(outs, x, book=book, cls="ffn1_act", compress=True)
        variants["shuff exponent auto"] = lambda: sd.all_gather(outs, x, book=books["exponent"], cls="ffn1_act", compress="auto")
        reps = 3 if mib >= 16 else 5
        for name, fn in variants.items():
            for _ in range(7 if "auto" in name else 1):  # warm-up (auto: past its calibration)
                fn()
            times = []
            for _ in range(reps):
                dist.barrier()
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            med = torch.tensor(statistics.median(times))
            dist.all_reduce(med, op=dist.ReduceOp.MAX)  # the slowest rank's median
            ratio = ""
            if name.startswith("shuff"):
                frame = shuff.encode_frame(x, books[name.split()[1]], "ffn1_act")
                ratio = f"{len(frame) / (2 * n):.3f}"
            rows.append((mib, name, float(med), ratio))
    if rank == 0:
        print(json.dumps(rows), flush=True)
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="1gbit,10gbit,none")
    ap.add_argument("--sizes", default="1,4,16,64", help="MiB per rank")
    ap.add_argument("--capture", default="data/minilm", help="directory of stepNNN.safetensors")
    ap.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--master", help=argparse.SUPPRESS)
    ap.add_argument("--books", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rank is not None:
        return worker(args)

    from safetensors.torch import load_file as load_torch  # bf16: numpy has no such dtype

    import shuff
    import torch

    steps = sorted(pathlib.Path(args.capture).glob("step*.safetensors"))
    if len(steps) < 2:
        sys.exit(f"{args.capture} needs at least two step files")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="shuff-netns-"))
    books = {}
    for layout in ("bytes", "exponent"):
        tr = shuff.Trainer()
        for b, path in enumerate(steps[:-1]):
            for name, t in load_torch(str(path)).items():
                if ".ffn1_act.x" in name:
                    tr.add("ffn1_act", "bf16", layout, b, shuff.byte_view(t))
        books[layout] = str(tmp / f"book-{layout}.json")
        tr.build("netns").save(books[layout])
    held = load_torch(str(steps[-1]))
    data = torch.cat([held[n].reshape(-1) for n in sorted(held) if ".ffn1_act.x" in n])
    data_path = tmp / "ffn1_act.bin"
    shuff.byte_view(data).tofile(data_path)
    print(f"held-out {steps[-1].name}: {data.numel() * 2 / 2**20:.1f} MiB of ffn1 activations; books from {len(steps) - 1} steps", file=sys.stderr)

    results = {}
    for rate in args.rates.split(","):
        extra = ["--books", json.dumps(books), "--data", str(data_path), "--sizes", args.sizes]
        results[rate] = json.loads(run_ranks(rate, __file__, extra))
    print("| link | MiB/rank | uncompressed | shuff bytes | shuff exponent | exponent, auto | speedup bytes | speedup exponent | speedup auto | ratio bytes / exponent |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rate, rows in results.items():
        by = {}
        for mib, name, secs, ratio in rows:
            by.setdefault(mib, {})[name] = (secs, ratio)
        for mib, v in by.items():
            u, b, e, a = (v[k][0] for k in ("uncompressed", "shuff bytes", "shuff exponent", "shuff exponent auto"))
            print(f"| {rate} | {mib} | {u * 1e3:.1f} ms | {b * 1e3:.1f} ms | {e * 1e3:.1f} ms | {a * 1e3:.1f} ms | {u / b:.2f}× | {u / e:.2f}× | {u / a:.2f}× | "
                  f"{v['shuff bytes'][1]} / {v['shuff exponent'][1]} |")


if __name__ == "__main__":
    main()
