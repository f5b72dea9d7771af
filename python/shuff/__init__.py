"""shuff: single-stage Huffman compression of ML tensors with fixed, pre-trained codebooks.

    import shuff
    book = shuff.CodebookSet.load("book.json")
    msg = shuff.encode(tensor, book, "ffn1_act")     # bytes: a small shape header + a shuff frame
    back = shuff.decode(msg, book, "ffn1_act")       # same dtype, shape and bits

Arrays and CPU tensors are read in place (no copy on the way in); coding runs in Rust with the
GIL released. CUDA tensors are coded on their GPU (`shuff.gpu`), on the current stream, and the
frames stay on the device; GPU and CPU frames are the same bytes. `shuff.torch` learns codebooks from a model with hooks; `shuff.distributed` has
compressed collectives over torch.distributed; `shuff.ddp` is a DistributedDataParallel
communication hook and `shuff.fsdp` the custom collectives of FSDP2, both built on them.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from . import _shuff
from ._shuff import ClassSelector, Codebook, CodebookSet, Family, ShuffError, __version__, frame_info

__all__ = [
    "ClassSelector", "Codebook", "CodebookSet", "Family", "ShuffError", "Trainer", "__version__", "encode", "decode", "encode_frame",
    "decode_frame_into", "byte_view", "dtype_name", "frame_info", "measure", "save_file", "load_file", "safe_open",
]

# Exact element types a message may carry; the index is stored in the message header.
_EXACT = ["bfloat16", "float16", "float32", "float8_e4m3fn", "float8_e5m2", "uint8", "int8"]
# shuff's dtype for each: what the codebook must code.
_SHUFF = {"bfloat16": "bf16", "float16": "f16", "float32": "f32", "float8_e4m3fn": "f8e4m3", "float8_e5m2": "f8e5m2", "uint8": "u8", "int8": "u8"}
_MAGIC = b"SHPY"
_HEAD = struct.Struct("<4sBBBB")  # magic, version, kind (0 numpy, 1 torch), exact dtype, ndim


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _is_cuda(x: Any) -> bool:
    return _is_torch(x) and x.device.type == "cuda"


def _exact_name(x: Any) -> str:
    if _is_torch(x):
        name = str(x.dtype).removeprefix("torch.")
    else:
        name = np.asarray(x).dtype.name
    if name not in _SHUFF:
        raise ShuffError(f"dtype {name} is not coded by shuff (supported: {', '.join(_EXACT)})")
    return name


def dtype_name(x: Any) -> str:
    """shuff's name (bf16, f16, f32, f8e4m3, f8e5m2, u8) for the element type of an array or tensor."""
    return _SHUFF[_exact_name(x)]


def byte_view(x: Any) -> np.ndarray:
    """The bytes of an array or tensor as a flat numpy uint8 array, without copying when `x` is a
    contiguous CPU array/tensor (a GPU or strided tensor is copied to contiguous CPU memory first)."""
    if _is_torch(x):
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous().reshape(-1)
        import torch

        return t.view(torch.uint8).numpy()
    a = np.ascontiguousarray(x)
    return a.reshape(-1).view(np.uint8)


def _codebook(book: CodebookSet | Codebook | Family, cls: str | None) -> Codebook | Family:
    """What codes class `cls`: a set's class family (its codebook and the members `shuff train`
    added), or the Codebook/Family given."""
    if isinstance(book, (Codebook, Family)):
        return book
    if cls is None:
        raise ShuffError("give the class whose codebook codes the tensor (cls=...)")
    return book.family(cls)


def encode_frame(x: Any, book: CodebookSet | Codebook | Family, cls: str | None = None, *, checksum: bool = False,
                 lanes: int | None = None, members: list[int] | None = None) -> Any:
    """A bare shuff frame of `x`'s bytes (no shape: for callers that know it, like collectives).

    CPU input gives `bytes`; a CUDA tensor is coded on its GPU into a CUDA uint8 tensor. `lanes`
    sets the frame's lane geometry (default on the CPU: 4, or 8 for messages of 16 KiB and up with
    a stream the CPU decodes in eight lanes, as Rust's `shuff::cpu_lanes`; on the GPU
    `shuff.gpu.lanes_for` the size, 32 to 128); every decoder reads every geometry. With a family (a set's class has one),
    each stream's member is picked from a sample of `x`, or given as `members` (one per stream: a
    caller that knows which member fits, e.g. from an earlier message, skips the sampling)."""
    codebook = _codebook(book, cls)
    first = codebook.members[0] if isinstance(codebook, Family) else codebook
    if dtype_name(x) != first.dtype:
        raise ShuffError(f"tensor is {dtype_name(x)} but the codebook codes {first.dtype}")
    if _is_cuda(x):
        from . import gpu

        if members is not None:
            raise ShuffError("the GPU coder picks members itself; explicit members are a CPU option for now")
        return gpu.encode_tensor(x, codebook, lanes, checksum=checksum)
    return _shuff.encode(byte_view(x), codebook, checksum, lanes, members)


def decode_frame_into(frame: Any, book: CodebookSet | Codebook, out: Any, cls: str | None = None) -> Any:
    """Decodes a bare frame into `out` (contiguous array/tensor of the right size), returns `out`.
    A CUDA `out` is decoded on its GPU (the frame a CUDA uint8 tensor, or bytes copied there)."""
    codebook = _codebook(book, cls)
    if _is_cuda(out):
        from . import gpu

        gpu.decode_tensor_into(frame, codebook, out)
        return out
    if _is_cuda(frame):
        frame = frame.cpu().numpy()
    contiguous = out.is_contiguous() if _is_torch(out) else isinstance(out, np.ndarray) and out.flags.c_contiguous
    # A strided or Fortran-order `out` is decoded into a contiguous copy, then copied back.
    target = out if contiguous else (out.contiguous() if _is_torch(out) else np.ascontiguousarray(out))
    _shuff.decode_into_buffer(frame, codebook, byte_view(target))
    if not contiguous:
        if _is_torch(out):
            out.copy_(target)
        else:
            out[...] = target
    return out


def encode(x: Any, book: CodebookSet | Codebook, cls: str | None = None, *, checksum: bool = False, lanes: int | None = None) -> Any:
    """Encodes a numpy array or torch tensor (bf16, f16, f32, float8 e4m3/e5m2, uint8/int8) with the
    class's fixed codebook. Returns a message: an 8-byte header, the shape, then the shuff frame —
    `bytes`, or for a CUDA tensor a CUDA uint8 tensor coded on the GPU."""
    exact = _exact_name(x)
    shape = tuple(x.shape)
    head = _HEAD.pack(_MAGIC, 1, int(_is_torch(x)), _EXACT.index(exact), len(shape)) + struct.pack(f"<{len(shape)}Q", *shape)
    frame = encode_frame(x, book, cls, checksum=checksum, lanes=lanes)
    if _is_cuda(x):
        import torch

        return torch.cat([torch.frombuffer(bytearray(head), dtype=torch.uint8).to(x.device), frame])
    return head + frame


def decode(msg: bytes | bytearray | memoryview, book: CodebookSet | Codebook, cls: str | None = None, out: Any = None) -> Any:
    """Decodes a message from `encode` into a new array/tensor of the original dtype and shape (a
    torch tensor if a tensor was encoded), or into `out`. A message made with another codebook, or
    damaged, raises ShuffError."""
    if _is_cuda(msg):
        return _decode_cuda(msg, book, cls, out)
    mv = memoryview(msg).cast("B")
    kind, name, shape, end = _envelope(lambda a, b: bytes(mv[a:b]))
    if out is None:
        if kind == 1:
            import torch

            out = torch.empty(shape, dtype=getattr(torch, name))
        else:
            try:
                out = np.empty(shape, dtype=name)
            except TypeError:
                raise ShuffError(f"numpy has no {name} dtype here (ml_dtypes provides it); pass out=") from None
    elif tuple(out.shape) != tuple(shape) or _exact_name(out) != name:
        raise ShuffError(f"out is {_exact_name(out)}{tuple(out.shape)}, the message holds {name}{tuple(shape)}")
    return decode_frame_into(mv[end:], book, out, cls)


def _envelope(read) -> tuple[int, str, tuple[int, ...], int]:
    """Parses a message's envelope through `read(start, end) -> bytes` (fewer at the message's end):
    (kind, exact dtype name, shape, where the frame starts)."""
    head = read(0, _HEAD.size)
    if len(head) < _HEAD.size:
        raise ShuffError("message is shorter than its header")
    magic, version, kind, exact, ndim = _HEAD.unpack(head)
    if magic != _MAGIC or version != 1 or exact >= len(_EXACT):
        raise ShuffError("not a shuff message (bad magic, version or dtype)")
    end = _HEAD.size + 8 * ndim
    dims = read(_HEAD.size, end)
    if len(dims) < 8 * ndim:
        raise ShuffError("message is shorter than its shape")
    shape = struct.unpack(f"<{ndim}Q", dims)
    # The shape is checked against the frame's own element count before anything is allocated:
    # a damaged or hostile envelope must be a ShuffError, not a MemoryError.
    elements = frame_info(read(end, end + _shuff.MAX_HEADER_BYTES))[2]
    n = 1
    for d in shape:
        n *= d
    if n != elements:
        raise ShuffError(f"message shape {shape} holds {n} elements, its frame {elements}")
    return kind, _EXACT[exact], shape, end


def _decode_cuda(msg: Any, book: CodebookSet | Codebook, cls: str | None, out: Any) -> Any:
    """`decode` of a message held in a CUDA uint8 tensor: the envelope (a few bytes) is read on the
    host, the frame decoded on the GPU into a CUDA tensor (or `out`)."""
    import torch

    _kind, name, shape, end = _envelope(lambda a, b: bytes(msg[a:b].cpu().numpy()))
    if out is None:
        out = torch.empty(shape, dtype=getattr(torch, name), device=msg.device)
    elif tuple(out.shape) != tuple(shape) or _exact_name(out) != name:
        raise ShuffError(f"out is {_exact_name(out)}{tuple(out.shape)}, the message holds {name}{tuple(shape)}")
    return decode_frame_into(msg[end:], book, out, cls)


class Trainer(_shuff.Trainer):
    """Learns one codebook per class from tensors of earlier batches (the average of the per-batch
    distributions, as `shuff train`; maximum code length: each layout's default unless given).

        tr = shuff.Trainer()
        for step, batch in enumerate(steps):
            tr.add("ffn1_act", batch["layer0.ffn1_act"], batch=step, layout="exponent")
        book = tr.build("mine")
    """

    def add(self, cls: str, x: Any, *explicit: Any, batch: int = 0, layout: str = "bytes", source: str = "") -> None:
        """Counts tensor or array `x` (dtype inferred; CUDA and strided tensors are copied to
        contiguous CPU memory) into class `cls`, batch `batch`, in `layout` (default `bytes`, as
        the CLI). The explicit form `add(cls, dtype, layout, batch, data, source="")` with tensor
        bytes is accepted too."""
        if explicit or isinstance(x, str):
            super().add(cls, x, *explicit)
            return
        super().add(cls, dtype_name(x), layout, batch, byte_view(x), source)


def measure(x: Any, book: CodebookSet | Codebook, cls: str | None = None) -> dict[str, float]:
    """Compressibility of `x` (percent, 1 − coded/original) under the Shannon bound, its own
    per-message Huffman code (payload only) and the fixed codebook — as `shuff eval` reports."""
    original, shannon, huffman, fixed = _shuff.measure(byte_view(x), _codebook(book, cls))
    pct = lambda bits: 100.0 * (1.0 - bits / original) if original else 0.0  # noqa: E731
    return {"original_bits": original, "shannon": pct(shannon), "huffman": pct(huffman), "fixed": pct(fixed)}


# Last: the file API builds on byte_view above.
from .files import load_file, safe_open, save_file  # noqa: E402
