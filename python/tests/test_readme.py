"""The README's Python example runs as written. The names it leaves to the reader are bound to real
things: `model` is all-MiniLM-L6-v2 with a real training step on real text, `saved_steps` and the
tensors are the committed sample's, and the collectives run in a one-rank gloo group."""
from __future__ import annotations

import os
import re

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import shuff
from conftest import REPO, load_capture_tool, step_tensors
from test_distributed import free_port


def readme_python_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Python\n") :]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block, "the README's Python section has no python block"
    return block.group(1)


def test_readme_python_example_runs(tmp_path, monkeypatch):
    from transformers import AutoModel, AutoTokenizer

    monkeypatch.chdir(tmp_path)  # it writes book.json and model.shuff
    cap = load_capture_tool()
    mdir = cap.model_dir()
    tok = AutoTokenizer.from_pretrained(mdir)
    torch.manual_seed(0)
    model = AutoModel.from_pretrained(mdir, add_pooling_layer=False)
    sentences = [s for s in cap.real_sentences(mdir, limit=200, text="stdlib") if len(s) > 40]

    def train_step(batch: list[str]) -> None:
        enc = tok(batch, padding="max_length", truncation=True, max_length=32, return_tensors="pt")
        model.zero_grad()
        model(**enc).last_hidden_state.float().pow(2).mean().backward()

    saved_steps = [step_tensors(0), step_tensors(1)]
    x = step_tensors(3)["layer1.ffn1_act.x.shard2"]
    g = step_tensors(3)["layer4.weight_grad.ffn1.shard0"]
    names = {
        "model": model, "warmup": [sentences[0:4], sentences[4:8]], "train_step": train_step, "saved_steps": saved_steps,
        "x": x, "outs": [torch.empty_like(x)], "ins": [x], "out": torch.empty_like(x), "g": g, "g_out": torch.empty_like(g),
    }
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(free_port())
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        names["ddp_model"] = DDP(torch.nn.Linear(8, 8))
        exec(compile(readme_python_example(), "README.md", "exec"), names)
    finally:
        dist.destroy_process_group()

    same = lambda a, b: np.array_equal(shuff.byte_view(a), shuff.byte_view(b))  # noqa: E731
    assert sorted(names["book"].classes()) == ["ffn1.act", "ffn1.act_grad", "ffn1.weight", "ffn1.weight_grad"]
    assert (tmp_path / "book.json").exists() and names["my_book"].classes() == ["ffn1.act"]
    assert same(names["y"], x) and len(names["msg"]) < x.numel() * 2
    assert same(names["outs"][0], x) and same(names["out"], x)
    assert same(names["g_out"], g)
    assert same(names["w"], model.state_dict()["encoder.layer.0.intermediate.dense.weight"])
    assert sorted(names["state"]) == sorted(model.state_dict())
