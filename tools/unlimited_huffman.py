#!/usr/bin/env python3
"""Fixed-codebook compressibility with *unlimited* code lengths, as the reference for the max-length loss.

An independent reimplementation (numpy + textbook heap Huffman) of `shuff train` + `shuff eval` for the
MiniLM capture: trains on steps 0-6 (average of per-batch distributions, every symbol floored to a
weight of 1 on a 2^40 scale, as shuff does) and evaluates on step 7, for bytes and exponent layouts.

Usage: python tools/unlimited_huffman.py [CAPTURE_DIR]   (default data/minilm; needs torch for bf16)
"""
import heapq, re, sys
import numpy as np
DIR = sys.argv[1] if len(sys.argv) > 1 else "data/minilm"
import torch
from safetensors.torch import load_file as _lf
def load_file(p):
    return {k: v.view(torch.int16).numpy() for k, v in _lf(p).items()}
classes = {"weight": r"\.weight\.", "weight_grad": r"\.weight_grad\.", "ffn1_act": r"\.ffn1_act\.x", "ffn1_act_grad": r"\.ffn1_act_grad\.", "ffn2_act": r"\.ffn2_act\.x", "ffn2_act_grad": r"\.ffn2_act_grad\."}
def streams(u16, layout):
    if layout == "bytes":
        return [u16.view(np.uint8)]
    r = ((u16 << 1) | (u16 >> 15)).astype(np.uint16)
    return [(r & 0xff).astype(np.uint8), (r >> 8).astype(np.uint8)]
def huff(w):
    h = [(x, i, None) for i, x in enumerate(w)]
    heap = [(x, i) for i, x in enumerate(w)]; heapq.heapify(heap)
    parent = {}; nxt = len(w)
    while len(heap) > 1:
        a, ia = heapq.heappop(heap); b, ib = heapq.heappop(heap)
        parent[ia] = nxt; parent[ib] = nxt; heapq.heappush(heap, (a + b, nxt)); nxt += 1
    L = []
    for i in range(len(w)):
        d = 0; j = i
        while j in parent: j = parent[j]; d += 1
        L.append(d)
    return np.array(L)
for layout in ["bytes", "exponent"]:
    hist = {c: [] for c in classes}  # per batch per stream
    for step in range(7):
        t = load_file(f"{DIR}/step{step:03d}.safetensors")
        for c, pat in classes.items():
            arrs = [v.view(np.uint16).ravel() for k, v in t.items() if re.search(pat, k)]
            u = np.concatenate(arrs)
            hist[c].append([np.bincount(s, minlength=256) for s in streams(u, layout)])
    test = load_file(f"{DIR}/step007.safetensors")
    tot_orig = tot_unl = 0
    for c, pat in classes.items():
        ns = len(hist[c][0])
        u = np.concatenate([v.view(np.uint16).ravel() for k, v in test.items() if re.search(pat, k)])
        th = [np.bincount(s, minlength=256) for s in streams(u, layout)]
        bits = 0
        for k in range(ns):
            p = np.mean([b[k] / b[k].sum() for b in hist[c]], axis=0)
            w = np.maximum(1, np.round(p * 2.0**40)).astype(np.int64)
            L = huff([int(x) for x in w])
            bits += int((th[k] * L).sum())
        orig = u.size * 16
        tot_orig += orig; tot_unl += bits
        print(layout, c, f"unlimited fixed {100*(1-bits/orig):.3f}%")
    print(layout, "TOTAL", f"unlimited fixed {100*(1-tot_unl/tot_orig):.3f}%")
