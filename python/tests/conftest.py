"""Shared fixtures: real tensors from the repository's committed sample (tests/data)."""
from __future__ import annotations

import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SAMPLE = REPO / "tests" / "data" / "minilm-sample"
WHISPER = REPO / "tests" / "data" / "whisper-sample.safetensors"


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
