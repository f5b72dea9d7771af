#!/usr/bin/env python3
"""Turn `shuff eval --json` outputs into the README's markdown table.

Usage: python tools/results_table.py LAYOUT=eval.json [LAYOUT=eval.json ...]
"""
import json
import sys

print("| layout | class | elements | Shannon | per-shard Huffman | + its code | class code alone | **fixed family** | fixed − Huffman | fixed − Shannon |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for arg in sys.argv[1:]:
    layout, path = arg.split("=", 1)
    r = json.load(open(path))
    rows = list(r["classes"].items()) + [("**total**", r["total"])]
    for name, s in rows:
        p = s["percent"]
        print(f"| {layout} | {name} | {s['sizes']['elements']:,} | {p['shannon']:.2f}% | {p['huffman']:.2f}% | "
              f"{p['huffman_with_code']:.2f}% | {p['class_code']:.2f}% | **{p['fixed']:.2f}%** | {p['fixed_vs_huffman_pp']:+.2f} pp | {p['fixed_vs_shannon_pp']:+.2f} pp |")
