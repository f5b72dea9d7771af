"""`.shuff` files in the style of safetensors: `save_file`, `load_file`, `safe_open`.

    import shuff
    shuff.save_file({"w": w, "b": b}, "model.shuff")              # codebooks trained from the tensors
    tensors = shuff.load_file("model.shuff")                     # {"w": ..., "b": ...}, bit-exact
    with shuff.safe_open("model.shuff", framework="pt") as f:    # reads only the tensors asked for
        w = f.get_tensor("w")

The file format, its checks and the bounded-memory streaming are the Rust `shuff-container`
crate's (docs/FORMAT.md, "Container files"); this module only converts tensors. A `.shuff` file
restores to a safetensors file bit for bit (`shuff decompress`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from . import _is_torch, _shuff, byte_view
from ._shuff import CodebookSet, ShuffError

__all__ = ["save_file", "load_file", "safe_open"]

# safetensors dtype names ↔ torch and numpy dtypes (by name, so torch stays optional).
_TORCH = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16", "I32": "int32", "U32": "uint32",
    "I64": "int64", "U64": "uint64", "F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
}
_NUMPY = {k: v for k, v in _TORCH.items() if k not in ("BF16", "F8_E4M3", "F8_E5M2")}
_FROM_NAME = {v: k for k, v in _TORCH.items()}


def _describe(name: str, x: Any) -> tuple[str, str, list[int], np.ndarray]:
    """(name, safetensors dtype, shape, contiguous CPU bytes) of an array or tensor."""
    dtype = str(x.dtype).removeprefix("torch.") if _is_torch(x) else np.asarray(x).dtype.name
    if dtype not in _FROM_NAME:
        raise ShuffError(f"tensor `{name}`: dtype {dtype} cannot be stored (supported: {', '.join(sorted(_FROM_NAME))})")
    return name, _FROM_NAME[dtype], [int(d) for d in x.shape], byte_view(x)


def save_file(tensors: dict[str, Any], path: str | os.PathLike, book: CodebookSet | None = None,
              metadata: dict[str, str] | None = None) -> None:
    """Writes `tensors` (name → torch tensor or numpy array, any dtype safetensors stores) to a
    `.shuff` file. With `book`, tensors go to its classes by their selectors; without, codebooks
    are trained from the tensors themselves (layer numbers taken out of names, best layout per
    class), as `shuff compress` does. Either way the codebooks are stored in the file. Written
    atomically; an existing file is replaced."""
    if not isinstance(tensors, dict):
        raise ShuffError("tensors must be a dict of name → tensor or array")
    described = [_describe(str(n), x) for n, x in tensors.items()]
    _shuff.save_file(described, os.fspath(path), book, metadata)


class safe_open:  # noqa: N801 — named after safetensors.safe_open, which it mirrors
    """An open `.shuff` file: `keys()`, `metadata()`, `get_tensor(name)` (which reads and decodes
    only that tensor's part of the file). `framework` is "pt" (torch tensors) or "np" (numpy
    arrays); `book` decodes files written by `shuff encode`, which carry no codebooks."""

    def __init__(self, path: str | os.PathLike, framework: str = "pt", device: str = "cpu", book: CodebookSet | None = None):
        if framework not in ("pt", "torch", "np", "numpy"):
            raise ShuffError(f"framework must be 'pt' or 'np', not {framework!r}")
        self._torch = framework in ("pt", "torch")
        self._device = device
        self._file = _shuff.ContainerFile(os.fspath(path), book)
        self._info = {name: (dtype, tuple(shape), n) for name, dtype, shape, n in self._file.tensors()}

    def __enter__(self) -> safe_open:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def keys(self) -> list[str]:
        return list(self._info)

    def metadata(self) -> dict[str, str] | None:
        return json.loads(self._file.header_json()).get("__metadata__")

    def get_tensor(self, name: str) -> Any:
        if name not in self._info:
            raise ShuffError(f"no tensor named `{name}` in the file")
        dtype, shape, _ = self._info[name]
        if self._torch:
            import torch

            out = torch.empty(shape, dtype=getattr(torch, _TORCH[dtype]))
            if out.numel():
                self._file.read_into(name, byte_view(out))
            return out if self._device == "cpu" else out.to(self._device)
        if dtype not in _NUMPY:
            raise ShuffError(f"tensor `{name}` is {dtype}, which numpy has no dtype for: open with framework='pt'")
        out = np.empty(shape, dtype=_NUMPY[dtype])
        if out.size:
            self._file.read_into(name, byte_view(out))
        return out


def load_file(path: str | os.PathLike, device: str = "cpu", book: CodebookSet | None = None) -> dict[str, Any]:
    """Every tensor of a `.shuff` file as torch tensors on `device`, bit-exact."""
    with safe_open(path, framework="pt", device=device, book=book) as f:
        return {k: f.get_tensor(k) for k in f.keys()}
