"""The GPU coder's kernel code, checked without a GPU: shuff_lane.cuh's per-thread functions compiled
for the CPU (host_emulation.cpp) and run through the same orchestration as on the device must write
the Rust encoder's frames byte for byte, for every dtype, layout and lane count, and decode every
frame the Rust encoder writes (v1 vectors included). On a machine with a GPU, scripts/gpu-check
runs the same comparisons on the device (test_gpu_device.py)."""
from __future__ import annotations

import ctypes
import glob
import os
import pathlib
import zlib

import numpy as np
import pytest
import torch

import shuff
from shuff import _shuff
from shuff import gpu

REPO = pathlib.Path(__file__).resolve().parents[2]

LANES = [1, 4, 7, 32, 255]


@pytest.fixture(scope="module")
def coder(tmp_path_factory):
    return gpu.emulation_coder(gpu.build_emulation(tmp_path_factory.mktemp("emulation")))


def as_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.float().clamp(-400, 400).to(dtype) if dtype in (torch.float8_e4m3fn, torch.float8_e5m2) else t.to(dtype)


def real(steps, step: int, dtype: torch.dtype) -> torch.Tensor:
    """All FFN1 activations of a step (~150 KB of bf16: three chunks, the last one partial)."""
    return as_dtype(torch.cat([steps[step][k].reshape(-1) for k in sorted(steps[step]) if "ffn1_act.x" in k]), dtype)


def book_for(tensors, layout: str) -> shuff.Codebook:
    tr = shuff.Trainer()
    for batch, t in enumerate(tensors):
        tr.add("c", shuff.dtype_name(t), layout, batch, shuff.byte_view(t))
    return tr.build("gpu-logic").codebook("c")


CASES = [(torch.bfloat16, "exponent"), (torch.bfloat16, "bytes"), (torch.bfloat16, "planes"), (torch.float16, "exponent"),
         (torch.float32, "exponent"), (torch.float32, "planes"), (torch.float8_e4m3fn, "bytes"), (torch.uint8, "bytes")]


@pytest.mark.parametrize("dtype,layout", CASES)
def test_emulated_kernels_write_the_rust_encoders_bytes_and_decode_its_frames(coder, steps, dtype, layout):
    if dtype == torch.uint8:
        train = [real(steps, s, torch.bfloat16).view(torch.uint8) for s in range(4)]
        test = real(steps, 4, torch.bfloat16).view(torch.uint8)
    else:
        train = [real(steps, s, dtype) for s in range(4)]
        test = real(steps, 4, dtype)
    book = book_for(train, layout)
    data = shuff.byte_view(test)
    es = test.element_size()
    for size in [data.size, 0, es, 100 * es, 65536, 65536 + 6 * es]:
        msg = np.ascontiguousarray(data[:size])
        for lanes in LANES:
            want = _shuff.encode(msg, book, False, lanes)
            got = coder.encode(msg, book, lanes)
            assert bytes(got) == want, f"{dtype}/{layout}, {size} bytes, {lanes} lanes"
            out = np.empty_like(msg)
            coder.decode_into(np.frombuffer(want, dtype=np.uint8), book, out)
            assert np.array_equal(out, msg)
        # A CPU frame with a checksum decodes (verified by the CRC kernels), and the kernels
        # write it (the CRC-32 taken by them) byte for byte.
        want = _shuff.encode(msg, book, True, 32)
        assert bytes(coder.encode(msg, book, 32, checksum=True)) == want, f"{dtype}/{layout}, {size} bytes, checksum"
        out = np.empty_like(msg)
        coder.decode_into(np.frombuffer(want, dtype=np.uint8), book, out)
        assert np.array_equal(out, msg)


def test_unaligned_input_and_output_take_the_byte_paths(coder, steps):
    """Lanes that start off 8-byte alignment (a tensor at an odd address) read and write bytewise."""
    test = shuff.byte_view(real(steps, 4, torch.bfloat16))
    book = book_for([real(steps, s, torch.bfloat16) for s in range(4)], "exponent")
    buf = np.zeros(test.size + 1, dtype=np.uint8)
    buf[1:] = test
    msg = buf[1:]
    for lanes in [4, 32]:
        want = _shuff.encode(np.ascontiguousarray(msg), book, False, lanes)
        assert bytes(coder.encode(msg, book, lanes)) == want
        frame = np.zeros(len(want) + 3, dtype=np.uint8)
        frame[3:] = np.frombuffer(want, dtype=np.uint8)
        out = np.zeros(test.size + 1, dtype=np.uint8)
        coder.decode_into(frame[3:], book, out[1:])
        assert np.array_equal(out[1:], test)


def test_version_1_vectors_decode_through_the_kernels(coder):
    vectors = REPO / "tests" / "data" / "frames-v1"
    book_set = shuff.CodebookSet.load(str(vectors / "books.json"))
    for name in book_set.classes():
        book = book_set.codebook(name)
        frame = np.frombuffer((vectors / f"{name}.shf").read_bytes(), dtype=np.uint8)
        info = _shuff.frame_header_info(frame.tobytes())
        out = np.empty(info["decoded_len"], dtype=np.uint8)
        coder.decode_into(frame, book, out)
        assert np.array_equal(out, np.frombuffer(_cpu_decode(frame, book, info["decoded_len"]), dtype=np.uint8)), name


def _cpu_decode(frame: np.ndarray, book, n: int) -> bytes:
    out = np.empty(n, dtype=np.uint8)
    _shuff.decode_into_buffer(frame.tobytes(), book, out)
    return out.tobytes()


def test_damaged_frames_fail_cleanly_or_decode_the_original(coder, steps):
    """Every truncation and every bit flip of a two-chunk frame: a ShuffError, or (flips in padding
    bits, in bytes a coded stream does not use) the original data — as the CPU decoder behaves."""
    test = shuff.byte_view(real(steps, 4, torch.bfloat16))[:70000]
    book = book_for([real(steps, s, torch.bfloat16) for s in range(4)], "exponent")
    frame = np.frombuffer(_shuff.encode(test, book, False, 8), dtype=np.uint8)
    out = np.empty_like(test)
    for cut in range(0, frame.size, 97):
        with pytest.raises(shuff.ShuffError):
            coder.decode_into(frame[:cut].copy(), book, out)
    rng = np.random.default_rng(7)
    for bit in rng.choice(frame.size * 8, size=600, replace=False):
        f = frame.copy()
        f[bit // 8] ^= 1 << (bit % 8)
        cpu_ok = True
        try:
            cpu = _cpu_decode(f, book, test.size)
        except shuff.ShuffError:
            cpu_ok = False
        try:
            coder.decode_into(f, book, out)
        except shuff.ShuffError:
            assert not cpu_ok, f"bit {bit}: the CPU decodes it, the kernels refuse it"
            continue
        assert cpu_ok, f"bit {bit}: the kernels accept a frame the CPU decoder refuses"
        assert out.tobytes() == cpu, f"bit {bit}: kernels and CPU decode differently"


def test_the_crc_kernels_give_zlibs_crc32(coder):
    """Spans, groups of spans, the last of each shorter or not, and data off 4-byte alignment:
    the device's CRC-32 is zlib's."""
    rng = np.random.default_rng(7)
    span, group = gpu.CRC_SPAN, gpu.CRC_GROUP
    data = rng.integers(0, 256, 3 * span * group + 5 * span + 3, dtype=np.uint8)
    lengths = [1, 3, 4, 5, span - 1, span, span + 1, 7 * span + 2, span * group, span * group + 1, 2 * span * group - 3, data.size - 1]
    for n in lengths:
        for offset in (0, 1):
            part = data[offset:offset + n]
            assert coder.crc32(part) == zlib.crc32(part.tobytes()), f"{n} bytes from {offset}"
    assert coder.crc32(data[:0]) == 0


def test_a_wrong_checksum_is_caught_on_the_device_path(coder, steps):
    """A CPU frame's checksum is checked by the CRC kernels: a frame whose CRC field is damaged
    is refused with a checksum error."""
    test = np.ascontiguousarray(shuff.byte_view(real(steps, 4, torch.bfloat16)))
    book = book_for([real(steps, s, torch.bfloat16) for s in range(4)], "exponent")
    frame = bytearray(_shuff.encode(test, book, True, 4))
    info = _shuff.frame_header_info(bytes(frame[:_shuff.MAX_HEADER_BYTES]))
    crc = info["checksum"].to_bytes(4, "little")
    at = bytes(frame).index(crc)
    frame[at] ^= 1
    with pytest.raises(shuff.ShuffError, match="checksum"):
        coder.decode_into(np.frombuffer(bytes(frame), dtype=np.uint8), book, np.empty_like(test))


def test_another_codebook_is_refused(coder, steps):
    test = shuff.byte_view(real(steps, 4, torch.bfloat16))
    book = book_for([real(steps, s, torch.bfloat16) for s in range(4)], "exponent")
    other = book_for([real(steps, 0, torch.bfloat16)], "exponent")
    frame = np.frombuffer(_shuff.encode(test, book, False, 32), dtype=np.uint8)
    with pytest.raises(shuff.ShuffError, match="codebook"):
        coder.decode_into(frame, other, np.empty_like(test))


def _nvrtc() -> ctypes.CDLL:
    """libnvrtc from the CUDA wheels torch installs (no GPU needed to compile)."""
    import site

    roots = [*site.getsitepackages(), site.getusersitepackages()]
    for root in roots:
        for path in sorted(glob.glob(os.path.join(root, "nvidia", "**", "libnvrtc.so*"), recursive=True)):
            if "builtins" not in path:
                return ctypes.CDLL(path)
    raise FileNotFoundError("libnvrtc (PyPI nvidia-cuda-nvrtc, a dependency of torch's CUDA wheels) not found")


def test_kernel_source_compiles_with_nvrtc_for_hopper():
    """The CUDA source compiles for sm_90 (H100/H200) with NVRTC, which needs no GPU."""
    nvrtc = _nvrtc()
    prog = ctypes.c_void_p()
    src = gpu.kernel_source().encode()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(prog), src, b"kernels.cu", 0, None, None) == 0
    opts = [b"-std=c++17", b"--gpu-architecture=sm_90"]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    rc = nvrtc.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(prog, log)
    assert rc == 0, log.value.decode(errors="replace")


@pytest.mark.parametrize("dtype,layout", [(torch.bfloat16, "exponent"), (torch.float32, "exponent"), (torch.bfloat16, "bytes"),
                                          (torch.float16, "planes")])
def test_emulated_kernels_choose_and_write_family_frames_as_the_rust_core_does(coder, steps, dtype, layout):
    """A shift family: the device counts the sample, the core chooses from the counts — the same
    members as shuff::Family::choose on the CPU — and the frames are the Rust family encoder's bytes."""
    book = book_for([real(steps, s, dtype) for s in range(4)], layout)
    family = shuff.Family.exponent_shift(book, [-1, 1])
    for scale in (1.0, 2.0, 0.5):
        x = (real(steps, 4, torch.float32) * scale).to(dtype)
        raw = np.ascontiguousarray(shuff.byte_view(x))
        assert coder.choose(raw, family) == family.choose(raw), f"{dtype}/{layout} ×{scale}"
        for lanes in (4, 32):
            want = _shuff.encode(raw, family, lanes=lanes)
            assert bytes(coder.encode(raw, family, lanes)) == want, f"{dtype}/{layout} ×{scale}, {lanes} lanes"
            checked = _shuff.encode(raw, family, True, lanes)
            assert bytes(coder.encode(raw, family, lanes, checksum=True)) == checked, f"{dtype}/{layout} ×{scale}, checksum"
            out = np.empty_like(raw)
            coder.decode_into(np.frombuffer(want, dtype=np.uint8), family, out)
            assert np.array_equal(out, raw)
    # Members named by the caller, and a frame the class code alone cannot read.
    k = len(family.choose(raw))
    named = [len(family) - 1] * k
    frame = coder.encode(raw, family, 32, members=named)
    assert bytes(frame) == _shuff.encode(raw, family, lanes=32, members=named)
    if len(family) > 1:
        with pytest.raises(shuff.ShuffError):
            coder.decode_into(frame, book, np.empty_like(raw))
    else:  # no exponent stream (bytes layout): a family of one is its codebook
        coder.decode_into(frame, book, np.empty_like(raw))
