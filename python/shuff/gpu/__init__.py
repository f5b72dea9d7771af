"""shuff's device coder: single-stage encode and decode of frames on a CUDA GPU.

The kernels (``shuff_lane.cuh``, wrapped by ``kernels.cu``) write and read the same v2 frames as
the CPU coder, byte for byte (docs/FORMAT.md): a frame encoded on the GPU decodes on the CPU and
the reverse. They are compiled at run time by NVRTC through CuPy and launched on the current CUDA
stream; tensors stay on the device (only the frame header, a few bytes, and the coded size cross to
the host).

The orchestration below is written once for two backends: ``cuda`` (CuPy arrays, kernels on the
GPU) and ``emulation`` (numpy arrays, the same per-thread code compiled for the CPU by the system's
C++ compiler and run thread after thread) — the tests check the kernels' logic without a GPU
through the second.

Why Python-side launch (CuPy + NVRTC) rather than a Rust CUDA crate: the GPU machine this project
measures on has CUDA, PyTorch and CuPy but no Rust toolchain or package registry, so a Rust launch
path could only be carried as a prebuilt binary; and the users with CUDA tensors are in PyTorch,
where CuPy shares torch's stream and memory without copies.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .. import _shuff
from .._shuff import ShuffError

__all__ = ["DEFAULT_LANES", "Coder", "cuda_coder", "emulation_coder", "kernel_source", "available", "lanes_for"]

_DIR = Path(__file__).resolve().parent
# The frame's constants, from the core (crates/shuff/src/frame.rs).
CHUNK_BYTES = _shuff.CHUNK_BYTES
MAX_HEADER_BYTES = _shuff.MAX_HEADER_BYTES
THREADS_PER_BLOCK = 256
# Lanes per coded stream per chunk in GPU-encoded frames: one thread per lane, and 2 bytes of lane
# size per lane per coded stream and chunk (32 lanes: 0.1% of a 64 KiB chunk per stream, 128
# lanes 0.4%). Large messages have threads enough at 32; smaller ones get more lanes (up to 128) so
# that the GPU still holds ~2^18 threads (see `lanes_for`).
DEFAULT_LANES = 32
MAX_AUTO_LANES = 128
TARGET_THREADS = 1 << 18


def lanes_for(nbytes: int) -> int:
    """The GPU encoder's default lane count for a message of `nbytes`: the power of two, from 32
    to 128, that gives the message about 2^18 threads (measured on an H200: 1 MiB encodes in 171
    instead of 267 µs with 128 lanes, for 1.1% more bytes)."""
    chunks = max(1, -(-nbytes // CHUNK_BYTES))
    lanes = DEFAULT_LANES
    while lanes < MAX_AUTO_LANES and chunks * lanes < TARGET_THREADS:
        lanes *= 2
    return lanes

_ELEMENT_SIZE = {"bf16": 2, "f16": 2, "f32": 4, "f8e4m3": 1, "f8e5m2": 1, "u8": 1}

# Kernel signatures, shared by both backends: 'p' a device (or host) array, 'q' u64, 'i' u32.
# The element loops come in one kernel per stream count k (suffix _k1, _k2, _k4).
_SIGNATURES = {
    "shuff_encode_plan": "qiipppppppp" + "q",
    "shuff_encode_scan": "pqqpppiqqqq",
    "shuff_decode_scan": "pqqqppp",
    "shuff_decode_plan": "pqqiippqppppppp",
    "shuff_sample_histogram": "pqiiiipq",
    "shuff_crc_spans": "pqqpq",
    "shuff_crc_groups": "pqqqqpq",
    "shuff_crc_frame": "pqqqp",
}
for _k in (1, 2, 4):
    _SIGNATURES[f"shuff_encode_count_k{_k}"] = "pqiiippp" + "q"
    _SIGNATURES[f"shuff_encode_write_k{_k}"] = "pqiiippppppppqqp" + "q"
    _SIGNATURES[f"shuff_decode_k{_k}"] = "pqqiiippppppppppq"
SCAN_THREADS = 1024
# CRC-32 on the device: bytes a thread checks (a multiple of 4, for the word loads), then spans a
# thread puts together; one thread puts the groups together (1 GiB: 262,144 spans, 1,024 groups).
CRC_SPAN = 4096
CRC_GROUP = 256

_ERRORS = {
    1: "a chunk's size is inconsistent with the frame",
    2: "unknown stream mode, or mode bits for streams the layout does not have",
    3: "a stream or its lanes run past the end of their chunk",
    4: "bytes after a chunk's last stream",
    5: "a lane does not end inside its last byte",
    6: "bits that start no code",
}


def kernel_source() -> str:
    """The CUDA source of the kernels, self-contained (the per-thread header inlined), as NVRTC
    compiles it."""
    lane = (_DIR / "shuff_lane.cuh").read_text()
    kernels = (_DIR / "kernels.cu").read_text()
    return kernels.replace('#include "shuff_lane.cuh"', lane)


def _first(book: Any) -> Any:
    """The codebook that gives a codebook or a family its dtype and layout."""
    return book.members[0] if isinstance(book, _shuff.Family) else book


def _geometry(codebook: Any) -> tuple[int, int]:
    """(streams k, rotate) of a codebook's (or family's) dtype and layout, as
    crates/shuff/src/layout.rs defines them."""
    codebook = _first(codebook)
    size = _ELEMENT_SIZE[codebook.dtype]
    if codebook.layout == "bytes" or size == 1:
        return 1, 0
    return size, int(codebook.layout == "exponent")


class _CudaBackend:
    name = "cuda"

    def __init__(self, defines: tuple[str, ...] = ()) -> None:
        import cupy

        self.xp = cupy
        self._module = cupy.RawModule(code=kernel_source(), options=("-std=c++17", *(f"-D{d}" for d in defines)))
        self._kernels = {name: self._module.get_function(name) for name in _SIGNATURES}

    def launch(self, name: str, threads: int, args: list, shared: int = 0, block: int = THREADS_PER_BLOCK) -> None:
        scalars = {"q": np.uint64, "i": np.uint32}
        typed = tuple(a if kind == "p" else scalars[kind](a) for kind, a in zip(_SIGNATURES[name], args, strict=True))
        blocks = max(1, math.ceil(threads / block))
        self._kernels[name]((blocks,), (block,), typed, shared_mem=shared)

    def sync(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()

    def to_host(self, a: Any) -> np.ndarray:
        return self.xp.asnumpy(a)


class _EmulationBackend:
    name = "emulation"
    xp = np

    def __init__(self, library: str) -> None:
        self._lib = ctypes.CDLL(library)
        kinds = {"p": ctypes.c_void_p, "q": ctypes.c_uint64, "i": ctypes.c_uint32}
        for name, sig in _SIGNATURES.items():
            fn = getattr(self._lib, name)
            fn.argtypes = [kinds[k] for k in sig]
            fn.restype = None

    def launch(self, name: str, threads: int, args: list, shared: int = 0, block: int = THREADS_PER_BLOCK) -> None:
        del threads, shared, block  # the host functions loop over every thread themselves
        conv = [a.ctypes.data if kind == "p" else int(a) for kind, a in zip(_SIGNATURES[name], args, strict=True)]
        getattr(self._lib, name)(*conv)

    def to_host(self, a: Any) -> np.ndarray:
        return np.asarray(a)

    def sync(self) -> None:
        pass


def _env_defines() -> tuple[str, ...]:
    """Kernel variants to build by default, from $SHUFF_GPU_DEFINES (comma-separated NAME=VALUE),
    so that tests and benchmarks can run a variant unchanged."""
    return tuple(d for d in os.environ.get("SHUFF_GPU_DEFINES", "").split(",") if d)


def build_emulation(directory: str | os.PathLike | None = None, defines: tuple[str, ...] | None = None) -> str:
    """Compiles host_emulation.cpp (the kernels' per-thread code for the CPU) with the system C++
    compiler; returns the shared library's path. `defines` default to $SHUFF_GPU_DEFINES."""
    defines = _env_defines() if defines is None else defines
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not cxx:
        raise ShuffError("no C++ compiler found (set CXX) to build the kernels' CPU emulation")
    directory = Path(directory or tempfile.mkdtemp(prefix="shuff-emulation-"))
    lib = directory / "libshuff_emulation.so"
    cmd = [cxx, "-O2", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", *(f"-D{d}" for d in defines),
           str(_DIR / "host_emulation.cpp"), "-o", str(lib)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return str(lib)


class Coder:
    """Encodes and decodes frames with one backend. Use :func:`cuda_coder` (GPU) or
    :func:`emulation_coder` (the same kernel code on the CPU, for tests)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.xp = backend.xp
        self._tables: dict[tuple[int, int], Any] = {}

    def _device_tables(self, codebook: Any, members: tuple[int, ...] = ()) -> Any:
        """The tables for a codebook, or for a family's `members` (one per stream), on the device
        (cached)."""
        key = (codebook.fingerprint, members, self._device_id())
        t = self._tables.get(key)
        if t is None:
            raw = codebook.device_tables(list(members)) if members else codebook.device_tables()
            t = self.xp.asarray(np.frombuffer(raw, dtype=np.uint8))
            self._tables[key] = t
        return t

    def choose(self, data: Any, family: Any) -> bytes:
        """The members of `family` that code `data` smallest, per stream: the sample counted on the
        device (every stride-th element, the CPU encoder's stride: shuff::measure::select_stride),
        the choice made by the Rust core from the counts — the members shuff::Family::choose picks
        on the CPU."""
        k, rotate = _geometry(family)
        es = _ELEMENT_SIZE[_first(family).dtype]
        elements = int(data.size) // es
        stride = _shuff.select_stride(elements)
        threads = -(-elements // stride)
        counts = self.xp.zeros(k * 256, dtype=self.xp.uint32)
        if threads:
            self.backend.launch("shuff_sample_histogram", threads, [data, elements, es, k, rotate, stride, counts, threads])
        host = self.backend.to_host(counts).reshape(k, 256).astype(np.uint64)
        return family.choose_from_counts([row.tolist() for row in host])

    def _device_id(self) -> int:
        return int(self.xp.cuda.Device().id) if self.backend.name == "cuda" else -1

    def _scratch(self, words: int) -> Any:
        """One uint32 buffer for all of a call's per-chunk and per-lane arrays (one allocation)."""
        return self.xp.empty(words, dtype=self.xp.uint32)

    def _mark(self, what: str) -> None:
        """With `trace` set to a list, records (step, seconds since the last mark) after syncing."""
        if self.trace is not None:
            import time

            self.backend.sync()
            now = time.perf_counter()
            self.trace.append((what, now - self._last))
            self._last = now

    trace: list | None = None
    _last = 0.0

    def encode(self, data: Any, codebook: Any, lanes: int = DEFAULT_LANES, out: Any = None, members: Any = None,
               checksum: bool = False) -> Any:
        """Encodes `data` (a 1-D uint8 array of the backend: the tensor's bytes) into a frame of
        `lanes` lanes per coded stream; returns the frame (a view of `out` if given: it must hold
        `shuff._shuff.max_frame_size(...)` bytes). `codebook` may be a `shuff.Family`: each stream
        is then coded by `members[s]`, or by the member `choose` picks. Five launches (six with a
        choice); reads the frame's length back to the host (8 bytes, the only synchronisation, and
        the sample's counts for a choice). With `checksum`, the frame carries the CRC-32 of `data`,
        taken on the device first (`crc32`: three launches more and one more synchronisation)."""
        xp, be = self.xp, self.backend
        if self.trace is not None:
            self._last = __import__("time").perf_counter()
        total = int(data.size)
        k, rotate = _geometry(codebook)
        family = isinstance(codebook, _shuff.Family)
        crc = self.crc32(data) if checksum else None
        if family:
            members = tuple(members if members is not None else self.choose(data, codebook))
            header = codebook.frame_header(total, lanes, list(members), crc)
        else:
            header = _shuff.frame_header(codebook, total, lanes, crc)
        hl = len(header)
        words = np.frombuffer(header.ljust(32, b"\0"), dtype="<u8")
        chunks = -(-total // CHUNK_BYTES)
        table_len = 4 * chunks if chunks > 1 else 0
        if out is None:
            out = xp.empty(_shuff.max_frame_size(_first(codebook).dtype, _first(codebook).layout, total), dtype=xp.uint8)
        if chunks == 0:
            out[:hl] = xp.asarray(np.frombuffer(header, dtype=np.uint8))
            return out[:hl]
        tables = self._device_tables(codebook, members if family else ())
        per_lane, per_stream = chunks * k * lanes, chunks * k
        # The u64 arrays first, where the (256-byte aligned) allocation keeps them 8-byte aligned.
        scratch = self._scratch(2 * chunks + 2 + 3 * per_lane + 2 * per_stream + 2 * chunks)
        starts, frame_len = scratch[:2 * chunks].view(xp.uint64), scratch[2 * chunks:2 * chunks + 2].view(xp.uint64)
        at = 2 * chunks + 2
        lane_bits, lane_const, lane_off = (scratch[at + i * per_lane:at + (i + 1) * per_lane] for i in range(3))
        at += 3 * per_lane
        stream_off, stream_const = scratch[at:at + per_stream], scratch[at + per_stream:at + 2 * per_stream]
        at += 2 * per_stream
        chunk_size, chunk_modes = scratch[at:at + chunks], scratch[at + chunks:at + 2 * chunks]
        self._mark("setup")
        be.launch(f"shuff_encode_count_k{k}", chunks * lanes, [data, total, k, rotate, lanes, tables, lane_bits, lane_const, chunks * lanes])
        self._mark("count")
        be.launch("shuff_encode_plan", chunks,
                  [total, k, lanes, tables, lane_bits, lane_const, chunk_size, chunk_modes, stream_off, stream_const, lane_off, chunks])
        self._mark("plan")
        be.launch("shuff_encode_scan", SCAN_THREADS, [chunk_size, chunks, hl + table_len, starts, frame_len, out, hl, *map(int, words)],
                  block=SCAN_THREADS)
        self._mark("scan")
        be.launch(f"shuff_encode_write_k{k}", chunks * lanes,
                  [data, total, k, rotate, lanes, tables, lane_bits, chunk_size, chunk_modes, stream_off, stream_const, lane_off,
                   starts, hl, chunks, out, chunks * lanes])
        self._mark("write")
        n = int(be.to_host(frame_len)[0])
        self._mark("length")
        return out[:n]

    def crc32(self, data: Any) -> int:
        """zlib's CRC-32 of `data` (a 1-D uint8 array of the backend), computed where it lies: three
        launches and 4 bytes read back, instead of a copy of the data to the host."""
        total = int(data.size)
        if total == 0:
            return 0
        spans = -(-total // CRC_SPAN)
        groups = -(-spans // CRC_GROUP)
        scratch = self._scratch(spans + groups + 1)
        span_crc, group_crc, crc = scratch[:spans], scratch[spans:spans + groups], scratch[spans + groups:]
        be = self.backend
        be.launch("shuff_crc_spans", spans, [data, total, CRC_SPAN, span_crc, spans])
        be.launch("shuff_crc_groups", groups, [span_crc, spans, total, CRC_SPAN, CRC_GROUP, group_crc, groups])
        be.launch("shuff_crc_frame", 1, [group_crc, groups, total, CRC_SPAN * CRC_GROUP, crc], block=1)
        return int(be.to_host(crc)[0])

    def decode_into(self, frame: Any, codebook: Any, out: Any) -> Any:
        """Decodes `frame` (1-D uint8 array of the backend) into `out` (1-D uint8 array of exactly
        the decoded size). Raises ShuffError on a frame of another codebook or a damaged one. Reads
        the header (≤ 25 bytes) and an error word back to the host: two synchronisations (three when
        the frame has a checksum, verified on the device: `crc32`)."""
        xp, be = self.xp, self.backend
        if self.trace is not None:
            self._last = __import__("time").perf_counter()
        frame_len = int(frame.size)
        head = bytes(be.to_host(frame[:MAX_HEADER_BYTES]))
        self._mark("header")
        info = _shuff.frame_header_info(head)
        if info["fingerprint"] is None:
            raise ShuffError("this frame carries its own code (three-stage): decode it on the CPU")
        first = _first(codebook)
        if (info["dtype"], info["layout"]) != (first.dtype, first.layout) or info["fingerprint"] != codebook.fingerprint & 0xFFFFFFFF:
            raise ShuffError(
                f"frame was encoded with codebook {info['fingerprint']:08x}… ({info['dtype']}/{info['layout']}), "
                f"but the codebook given is {codebook.fingerprint:016x} ({first.dtype}/{first.layout})")
        family = isinstance(codebook, _shuff.Family)
        size = len(codebook) if family else 1
        if any(m >= size for m in info["members"]):
            raise ShuffError(f"frame names codebook family members {info['members']}, but the family given has {size}")
        total = info["decoded_len"]
        if int(out.size) != total:
            raise ShuffError(f"output buffer is {int(out.size)} bytes, the frame decodes to {total}")
        k, rotate = _geometry(codebook)
        lanes, hl = info["lanes"], info["header_len"]
        chunks = -(-total // CHUNK_BYTES)
        if chunks == 0:
            if frame_len != hl:
                raise ShuffError(f"corrupt frame: {frame_len - hl} bytes after the header of an empty tensor")
            return out
        per_lane, per_stream = chunks * k * lanes, chunks * k
        scratch = self._scratch(2 * chunks + 1 + 2 * per_lane + 2 * per_stream + 3 * chunks)
        starts, error = scratch[:2 * chunks].view(xp.uint64), scratch[2 * chunks:2 * chunks + 1]
        at = 2 * chunks + 1
        lane_off, lane_len = scratch[at:at + per_lane], scratch[at + per_lane:at + 2 * per_lane]
        at += 2 * per_lane
        stream_off, stream_const = scratch[at:at + per_stream], scratch[at + per_stream:at + 2 * per_stream]
        at += 2 * per_stream
        chunk_size, chunk_modes, status = (scratch[at + i * chunks:at + (i + 1) * chunks] for i in range(3))
        self._mark("setup")
        be.launch("shuff_decode_scan", SCAN_THREADS, [frame, frame_len, hl, chunks, chunk_size, starts, error], block=SCAN_THREADS)
        self._mark("scan")
        be.launch("shuff_decode_plan", chunks,
                  [frame, frame_len, total, k, lanes, starts, chunk_size, chunks, chunk_modes, stream_off, stream_const, lane_off,
                   lane_len, status, error])
        self._mark("plan")
        tables = self._device_tables(codebook, tuple(info["members"]) if family else ())
        be.launch(f"shuff_decode_k{k}", chunks * lanes,
                  [frame, frame_len, total, k, rotate, lanes, tables, starts, chunk_modes, stream_off, stream_const, lane_off, lane_len,
                   status, out, error, chunks * lanes], shared=int(tables.size))  # every stream's record in shared memory
        self._mark("decode")
        code = int(be.to_host(error)[0])
        self._mark("error")
        if code:
            raise ShuffError(f"corrupt frame: {_ERRORS.get(code, f'error {code}')}")
        if info["checksum"] is not None:
            found = self.crc32(out)
            self._mark("checksum")
            if found != info["checksum"]:
                raise ShuffError(f"checksum mismatch: frame says {info['checksum']:08x}, decoded data gives {found:08x}")
        return out


def cuda_coder(defines: tuple[str, ...] | None = None) -> Coder:
    """The GPU coder (kernels compiled by NVRTC on first use; needs CuPy and a CUDA device).
    `defines` are preprocessor definitions for the kernels (default: $SHUFF_GPU_DEFINES)."""
    return _cuda_coder(_env_defines() if defines is None else defines)


@functools.cache
def _cuda_coder(defines: tuple[str, ...]) -> Coder:
    return Coder(_CudaBackend(defines))


@functools.cache
def emulation_coder(library: str | None = None) -> Coder:
    """The same kernels' per-thread code compiled for the CPU (see :func:`build_emulation`)."""
    return Coder(_EmulationBackend(library or build_emulation()))


def available() -> bool:
    """Whether a CUDA device and CuPy are present (the GPU path can run)."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - any failure to reach a device means "no"
        return False


# ---- torch tensors ---------------------------------------------------------------------------


def _cupy_bytes(t: Any) -> Any:
    """A CuPy uint8 view of a contiguous CUDA tensor's bytes (no copy)."""
    import cupy
    import torch

    t = t.reshape(-1).view(torch.uint8)
    return cupy.asarray(t) if t.numel() else cupy.empty(0, dtype=cupy.uint8)


def _on_torch_stream(device: Any):
    """CuPy's current device and stream set to torch's current ones for `device`."""
    import contextlib

    import cupy
    import torch

    stack = contextlib.ExitStack()
    stack.enter_context(cupy.cuda.Device(device.index if device.index is not None else torch.cuda.current_device()))
    stream = torch.cuda.current_stream(device)
    if hasattr(cupy.cuda.Stream, "from_external"):  # CuPy ≥ 14
        stack.enter_context(cupy.cuda.Stream.from_external(stream))
    else:
        stack.enter_context(cupy.cuda.ExternalStream(stream.cuda_stream))
    return stack


def encode_tensor(x: Any, codebook: Any, lanes: int | None = None, out: Any = None, checksum: bool = False) -> Any:
    """Encodes a CUDA tensor on its GPU, on torch's current stream, in `lanes` lanes (default:
    `lanes_for` its size), with a CRC-32 of its bytes in the frame if `checksum`; returns the frame
    as a CUDA uint8 tensor: a view of `out` (a CUDA uint8 tensor of at least `max_frame_size`
    bytes) if given, else of a new worst-case-sized buffer."""
    import torch

    t = x.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    nbytes = t.numel() * t.element_size()
    lanes = lanes or lanes_for(nbytes)
    need = _shuff.max_frame_size(_first(codebook).dtype, _first(codebook).layout, nbytes)
    if out is None:
        out = torch.empty(need, dtype=torch.uint8, device=t.device)
    elif out.numel() < need or out.dtype != torch.uint8 or not out.is_contiguous() or out.device != t.device:
        raise ShuffError(f"out must be a contiguous uint8 tensor of at least {need} bytes on {t.device}")
    with _on_torch_stream(t.device):
        frame = cuda_coder().encode(_cupy_bytes(t), codebook, lanes, out=_cupy_bytes(out), checksum=checksum)
    return out[: int(frame.size)]


def decode_tensor_into(frame: Any, codebook: Any, out: Any) -> Any:
    """Decodes `frame` (a CUDA uint8 tensor, or bytes-like, copied to `out`'s device) into the CUDA
    tensor `out` on torch's current stream."""
    import torch

    if not (type(frame).__module__.startswith("torch") and frame.device.type == "cuda"):
        frame = torch.frombuffer(bytearray(memoryview(frame).cast("B")), dtype=torch.uint8).to(out.device)
    frame = frame.reshape(-1).view(torch.uint8).contiguous()
    target = out if out.is_contiguous() else torch.empty_like(out, memory_format=torch.contiguous_format)
    with _on_torch_stream(out.device):
        cuda_coder().decode_into(_cupy_bytes(frame), codebook, _cupy_bytes(target))
    if target is not out:
        out.copy_(target)
    return out
