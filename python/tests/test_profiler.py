"""The profiler on a real fine-tuning: all-MiniLM-L6-v2 with its contrastive objective on real text
(as tools/capture_minilm.py), under bf16 autocast. Codebooks learned from warm-up steps are used on
the following steps and compared with each shard's own (three-stage) Huffman code."""
from __future__ import annotations

import random

import pytest
import torch

import shuff
import shuff.torch as st

from conftest import load_capture_tool

WARMUP, LATER, BATCH, SEQ, SHARDS = 4, 2, 16, 128, 8


def test_profiled_codebooks_track_per_shard_huffman_on_later_steps():
    cap = load_capture_tool()
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    random.seed(0)
    mdir = cap.model_dir()
    tok = AutoTokenizer.from_pretrained(mdir)
    model = AutoModel.from_pretrained(mdir)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5)
    sents = cap.real_sentences(mdir, limit=6000, text="stdlib")
    passages, cur = [], []
    for s in sents:
        cur.append(s)
        if len(tok(" ".join(cur))["input_ids"]) >= SEQ:
            passages.append(" ".join(cur))
            cur = []

    def train_step():
        start = random.randrange(0, len(passages) - 2 * BATCH)
        a, b = passages[start : start + 2 * BATCH : 2], passages[start + 1 : start + 2 * BATCH : 2]
        enc = tok(a + b, padding="max_length", truncation=True, max_length=SEQ, return_tensors="pt")
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(out.dtype)
            emb = torch.nn.functional.normalize(((out * m).sum(1) / m.sum(1)).float(), dim=-1)
        loss = torch.nn.functional.cross_entropy(emb[:BATCH] @ emb[BATCH:].T * 20.0, torch.arange(BATCH))
        loss.backward()
        opt.step()

    classes = {"ffn1": r"layer\.\d+\.intermediate\.dense$", "ffn2": r"layer\.\d+\.output\.dense$"}
    prof = st.Profiler(model, classes, layouts=("bytes", "exponent"), cast=torch.bfloat16)
    assert len(prof.modules) == 12  # 6 layers × (FFN1, FFN2)
    for _ in range(WARMUP):
        train_step()
        prof.step()
    prof.remove()
    books = {layout: prof.codebooks(layout) for layout in ("bytes", "exponent")}
    assert sorted(books["bytes"].classes()) == sorted(f"{c}.{k}" for c in classes for k in st.KINDS)

    seen: list[tuple[str, torch.Tensor]] = []
    rec = st.Profiler(model, classes, cast=torch.bfloat16, count=False, sink=lambda cls, t: seen.append((cls, t)))
    for _ in range(LATER):
        train_step()
    rec.remove()
    assert len(seen) >= LATER * 12 * 4
    for layout, book in books.items():
        totals = {"original_bits": 0.0, "huffman": 0.0, "fixed": 0.0}
        for cls, t in seen:
            for shard in torch.chunk(t.reshape(-1, t.shape[-1]), SHARDS, dim=-1):
                m = shuff.measure(shard.contiguous(), book, cls)
                for k in ("huffman", "fixed"):
                    totals[k] += m[k] * m["original_bits"]
                totals["original_bits"] += m["original_bits"]
        huffman, fixed = (totals[k] / totals["original_bits"] for k in ("huffman", "fixed"))
        print(f"{layout}: per-shard Huffman {huffman:.2f}%, profiled fixed codebook {fixed:.2f}% ({fixed - huffman:+.2f} pp)")
        assert fixed > 15.0
        assert huffman - fixed <= 0.5, f"{layout}: profiled codebooks are {huffman - fixed:.2f} pp behind per-shard Huffman"


def test_default_classes_keep_distinct_layers_and_errors_name_the_modules():
    import warnings

    import shuff.torch

    assert shuff.torch.default_class("encoder.layer.3.attention.self.query") == "encoder.layer.#.attention.self.query"
    assert shuff.torch.default_class("0") == "0" and shuff.torch.default_class("net.2") == "net.2"
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    prof = shuff.torch.Profiler(model, layouts=("bytes",))
    assert prof.modules == {"0": "0", "2": "2"}, "two different layers must not share a class"
    with pytest.raises(ValueError, match="no tensor was recorded"):
        prof.codebooks("bytes")
    model(torch.randn(64, 8)).sum().backward()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        book = prof.codebooks("bytes")
    assert any("step() was never called" in str(w.message) for w in caught)
    assert "0.act" in book.classes() and "2.act" in book.classes()
    prof.remove()
    with pytest.raises(ValueError, match=r"match no module.*modules: 0, 1, 2"):
        shuff.torch.Profiler(model, classes={"attn": r"attention"})
