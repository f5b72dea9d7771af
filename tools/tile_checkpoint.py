"""Builds a large bf16 safetensors checkpoint from a real one, for file-speed and memory
benchmarks: every tensor of SOURCE is cast to bf16 and repeated as new layers (layer number in the
name) until the file reaches SIZE, each copy's elements in a fresh random order — the byte
statistics stay the real ones, while no copy repeats another's bytes (so LZ compressors such as
zstd cannot win by matching repeats that a real checkpoint would not have).

usage: python tools/tile_checkpoint.py SOURCE.safetensors SIZE_GB OUT.safetensors
"""
import sys

import torch
from safetensors.torch import load_file, save_file


def main() -> None:
    source, size_gb, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    base = {k: v.to(torch.bfloat16).contiguous() for k, v in load_file(source).items()}
    per_copy = sum(t.numel() * 2 for t in base.values())
    copies = max(1, int(size_gb * 1e9 // per_copy))
    g = torch.Generator().manual_seed(0)
    tensors = {}
    for c in range(copies):
        for name, t in base.items():
            flat = t.reshape(-1)
            tensors[f"copy.{c}.{name}"] = flat[torch.randperm(flat.numel(), generator=g)].reshape(t.shape)
    save_file(tensors, out)
    print(f"{out}: {copies} copies of {len(base)} tensors, {copies * per_copy / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
