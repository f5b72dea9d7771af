"""Online codebook refresh against a frozen set, on a real capture: 4 gloo ranks all-gather the
activation gradients of every layer, step after step (rank r sends shards 2r and 2r+1), with the
set trained on step 0 frozen, refreshed every N calls, and refreshed when the drift passes 0.5 pp
(`shuff.distributed.Refresh`). Prints the bytes sent by all ranks for each.

    python bench/refresh.py CAPTURE_DIR    # step000..step005.safetensors from tools/capture_minilm.py
"""
import os
import socket
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

import shuff
import shuff.distributed as sd

WS = 4
CAP = sys.argv[1]
def port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
def worker(rank, p, every):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(p)
    dist.init_process_group("gloo", rank=rank, world_size=WS)
    steps = [load_file(f"{CAP}/step{s:03d}.safetensors") for s in range(6)]
    grad = lambda s, l: torch.cat([s[f"layer{l}.ffn1_act_grad.x.shard{k}"] for k in (2 * rank, 2 * rank + 1)], 1)
    tr = shuff.Trainer()
    for l in range(6):
        for k in range(8):
            tr.add("g", steps[0][f"layer{l}.ffn1_act_grad.x.shard{k}"], batch=0, layout="exponent")
    frozen = tr.build("f")
    calls = [(s, l) for s in range(1, 6) for l in range(6)]
    def run(book):
        with sd.Traffic().recording() as t:
            for s, l in calls:
                mine = grad(steps[s], l)
                got = [torch.empty_like(mine) for _ in range(WS)]
                sd.all_gather(got, mine, book=book, cls="g", compress=True)
        tot = torch.tensor([t.sent, t.original]); dist.all_reduce(tot); return int(tot[0]), int(tot[1])
    f, o = run(frozen)
    r = sd.Refresh(frozen, every=every); rr, _ = run(r)
    d = sd.Refresh(frozen, every=every, drift_pp=0.5); dd, _ = run(d)
    if rank == 0:
        print(f"every={every}: original {o}, frozen {f} ({100*(1-f/o):.2f}%), refresh {rr} ({100*(1-rr/o):.2f}%, {r.refreshes} refreshes), drift>0.5pp {dd} ({100*(1-dd/o):.2f}%, {d.refreshes} refreshes, last drift {d.last_drift_pp:.2f} pp)", flush=True)
    dist.destroy_process_group()
if __name__ == "__main__":
    for every in (6, 12):
        mp.spawn(worker, args=(port(), every), nprocs=WS, join=True)
