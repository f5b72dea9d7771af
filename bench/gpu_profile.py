"""Where the GPU coder's time goes: per-step medians of encode and decode (each step timed on the
host between device synchronisations) for kernel variants, beside the untraced whole-call medians;
with --ncu, one encode and one decode of the largest size for Nsight Compute to profile.

    python bench/gpu_profile.py [--sizes 1MiB,256MiB,1GiB] [--lanes 32,128] [--variants DEFINE=1,...]
    ncu --clock-control none -k regex:shuff_ python bench/gpu_profile.py --ncu
"""
from __future__ import annotations

import argparse
import collections
import statistics
import sys

import torch

from gpu import human, parse_size, sample, samples, train  # bench/gpu.py

import shuff.gpu as gpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1MiB,256MiB,1GiB")
    ap.add_argument("--variants", default="", help="comma-separated kernel builds, each a '+'-joined list of NAME=VALUE "
                    "definitions (empty: the default build)")
    ap.add_argument("--lanes", default=f"{gpu.DEFAULT_LANES}")
    ap.add_argument("--ncu", action="store_true")
    args = ap.parse_args()
    import cupy

    book = train(sample("ffn1_act.x", range(4)), "exponent")
    test = sample("ffn1_act.x", range(4, 5))[0]
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    variants = args.variants.split(",")
    lane_counts = [int(v) for v in args.lanes.split(",")]
    if args.ncu:
        sizes, variants, lane_counts = sizes[-1:], variants[:1], lane_counts[:1]
    print(f"{'variant':<14}{'lanes':>6}{'size':>8}  {'call':<7}{'median µs':>10}{'GB/s':>8}   steps (median µs)")
    for variant, lanes in ((v, n) for v in variants for n in lane_counts):
        coder = gpu.Coder(gpu._CudaBackend(tuple(variant.split("+")) if variant else ()))
        for size in sizes:
            x = test.repeat(-(-(size // 2) // test.numel()))[: size // 2].cuda()
            data = cupy.asarray(x.view(torch.uint8))
            out = cupy.empty(size, dtype=cupy.uint8)
            frame = coder.encode(data, book, lanes).copy()
            coder.decode_into(frame, book, out)
            assert bool((out == data).all()), f"{variant}: round trip differs"
            if args.ncu:
                torch.cuda.synchronize()
                return
            reps = max(5, min(30, (1 << 30) // size))
            for name, call in (("encode", lambda: coder.encode(data, book, lanes)), ("decode", lambda: coder.decode_into(frame, book, out))):
                totals = samples(call, reps, warm=False)
                steps = collections.defaultdict(list)
                coder.trace = []
                for _ in range(reps):
                    coder.trace.clear()
                    call()
                    for step, dt in coder.trace:
                        steps[step].append(dt)
                coder.trace = None
                t = statistics.median(totals)
                detail = "  ".join(f"{s} {statistics.median(v) * 1e6:.0f}" for s, v in steps.items())
                print(f"{variant or 'default':<14}{lanes:>6}{human(size):>8}  {name:<7}{t * 1e6:>10.0f}{size / t / 1e9:>8.1f}   {detail}", flush=True)
            del x, data, out, frame
            torch.cuda.empty_cache()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
