"""Shared fixtures: real tensors from the repository's committed sample (tests/data)."""
from __future__ import annotations

import importlib.util
import os
import pathlib

import pytest

# transformers' model-loading reports (e.g. the unused pooler) would drown the test output.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO = pathlib.Path(__file__).resolve().parents[2]
SAMPLE = REPO / "tests" / "data" / "minilm-sample"
WHISPER = REPO / "tests" / "data" / "whisper-sample.safetensors"


def load_capture_tool():
    """tools/capture_minilm.py as a module (the MiniLM model folder and its real text)."""
    spec = importlib.util.spec_from_file_location("capture_minilm", REPO / "tools" / "capture_minilm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def step_tensors(step: int) -> dict:
    from safetensors.torch import load_file

    return load_file(str(SAMPLE / f"step{step:03d}.safetensors"))


@pytest.fixture(scope="session")
def steps():
    """The five committed MiniLM fine-tuning steps: {name: bf16 tensor} each."""
    return [step_tensors(s) for s in range(5)]


@pytest.fixture(scope="session")
def whisper():
    from safetensors.torch import load_file

    return load_file(str(WHISPER))
