"""The GPU coder on a real device: GPU and CPU frames are the same bytes for every dtype and layout,
each decodes the other's, and CUDA tensors go through the public API without leaving the device.
Skipped (with the reason) where there is no CUDA device; scripts/gpu-check runs them on one. The
kernels' logic is checked without a GPU by test_gpu_logic.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import shuff
from shuff import _shuff, gpu

pytestmark = pytest.mark.skipif(not (torch.cuda.is_available() and gpu.available()),
                                reason="no CUDA device with CuPy here: the GPU path runs in scripts/gpu-check "
                                       "(its kernel code is checked on the CPU by test_gpu_logic.py)")

CASES = [(torch.bfloat16, "exponent"), (torch.bfloat16, "bytes"), (torch.bfloat16, "planes"), (torch.float16, "exponent"),
         (torch.float16, "planes"), (torch.float32, "exponent"), (torch.float32, "planes"), (torch.float32, "bytes"),
         (torch.float8_e4m3fn, "bytes"), (torch.float8_e5m2, "exponent"), (torch.uint8, "bytes")]


def as_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.uint8:
        return t.to(torch.bfloat16).view(torch.uint8)
    return t.float().clamp(-400, 400).to(dtype) if dtype in (torch.float8_e4m3fn, torch.float8_e5m2) else t.to(dtype)


def real(steps, step: int, dtype: torch.dtype, pattern: str = "ffn1_act.x") -> torch.Tensor:
    return as_dtype(torch.cat([steps[step][k].reshape(-1) for k in sorted(steps[step]) if pattern in k]), dtype)


def book_for(tensors, layout: str) -> shuff.Codebook:
    tr = shuff.Trainer()
    for batch, t in enumerate(tensors):
        tr.add("c", shuff.dtype_name(t), layout, batch, shuff.byte_view(t))
    return tr.build("gpu").codebook("c")


def cpu_frame(x: torch.Tensor, book, lanes: int, checksum: bool = False) -> bytes:
    return _shuff.encode(shuff.byte_view(x), book, checksum, lanes)


@pytest.mark.parametrize("dtype,layout", CASES)
def test_gpu_and_cpu_frames_are_the_same_bytes_and_decode_each_other(steps, dtype, layout):
    book = book_for([real(steps, s, dtype) for s in range(4)], layout)
    x = real(steps, 4, dtype)
    xc = x.cuda()
    for lanes in [1, 4, 32, 255]:
        g = shuff.encode_frame(xc, book, lanes=lanes)
        assert g.is_cuda and g.dtype == torch.uint8
        want = cpu_frame(x, book, lanes)
        assert bytes(g.cpu().numpy()) == want, f"{dtype}/{layout}, {lanes} lanes: GPU and CPU frames differ"
        # The CPU decodes the GPU's frame; the GPU decodes the CPU's (with a checksum, too).
        back = torch.empty_like(x)
        shuff.decode_frame_into(g.cpu().numpy(), book, back)
        assert torch.equal(back.view(torch.uint8), x.view(torch.uint8))
        for frame in (want, cpu_frame(x, book, 4, checksum=True)):
            out = torch.empty_like(xc)
            shuff.decode_frame_into(torch.frombuffer(bytearray(frame), dtype=torch.uint8).cuda(), book, out)
            assert torch.equal(out.cpu().view(torch.uint8), x.view(torch.uint8))
        # With a checksum (the CRC-32 taken on the device): still the CPU encoder's bytes.
        g = shuff.encode_frame(xc, book, lanes=lanes, checksum=True)
        assert bytes(g.cpu().numpy()) == cpu_frame(x, book, lanes, checksum=True), f"{dtype}/{layout}, {lanes} lanes, checksum"


def test_large_messages_use_the_whole_gpu_and_match_the_cpu(steps):
    """64 MiB of real activations (tiled): 1024 chunks × 32 lanes of threads."""
    book = book_for([real(steps, s, torch.bfloat16) for s in range(4)], "exponent")
    base = real(steps, 4, torch.bfloat16)
    x = base.repeat(-(-(32 << 20) // base.numel()))[: 32 << 20]
    xc = x.cuda()
    g = shuff.encode_frame(xc, book)
    assert bytes(g.cpu().numpy()) == cpu_frame(x, book, gpu.lanes_for(x.numel() * 2))
    out = torch.empty_like(xc)
    shuff.decode_frame_into(g, book, out)
    assert torch.equal(out, xc)
    # The CRC kernels over 64 MiB (16,384 spans in 64 groups) give zlib's CRC-32.
    g = shuff.encode_frame(xc, book, checksum=True)
    assert bytes(g.cpu().numpy()) == cpu_frame(x, book, gpu.lanes_for(x.numel() * 2), checksum=True)
    shuff.decode_frame_into(g, book, out)
    assert torch.equal(out, xc)
    assert g.numel() < 0.7 * x.numel() * 2


def test_messages_of_cuda_tensors_stay_on_the_device(steps):
    book = book_for([real(steps, s, torch.bfloat16) for s in range(4)], "exponent")
    x = real(steps, 4, torch.bfloat16).reshape(48, -1).cuda()
    msg = shuff.encode(x, book)
    assert msg.is_cuda
    y = shuff.decode(msg, book)
    assert y.is_cuda and y.dtype == x.dtype and y.shape == x.shape and torch.equal(y, x)
    # A non-contiguous output and a side stream.
    out = torch.empty(x.shape[1], x.shape[0], dtype=x.dtype, device="cuda").t()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        shuff.decode(msg, book, out=out)
    side.synchronize()
    assert torch.equal(out, x)
    # The CPU reads the same message.
    z = shuff.decode(bytes(msg.cpu().numpy()), book)
    assert torch.equal(z, x.cpu())


def test_damaged_frames_raise_on_the_gpu(steps):
    book = book_for([real(steps, s, torch.bfloat16) for s in range(4)], "exponent")
    x = real(steps, 4, torch.bfloat16).cuda()
    g = shuff.encode_frame(x, book)
    out = torch.empty_like(x)
    for cut in [0, 5, 20, g.numel() // 2, g.numel() - 1]:
        with pytest.raises(shuff.ShuffError):
            shuff.decode_frame_into(g[:cut].clone(), book, out)
    rng = np.random.default_rng(3)
    cpu = g.cpu().numpy()
    for bit in rng.choice(g.numel() * 8, size=200, replace=False):
        f = cpu.copy()
        f[bit // 8] ^= 1 << (bit % 8)
        try:
            want = np.empty(x.numel() * 2, dtype=np.uint8)
            _shuff.decode_into_buffer(f.tobytes(), book, want)
        except shuff.ShuffError:
            want = None
        try:
            shuff.decode_frame_into(torch.from_numpy(f).cuda(), book, out)
        except shuff.ShuffError:
            assert want is None, f"bit {bit}: the CPU decodes it, the GPU refuses it"
            continue
        assert want is not None and np.array_equal(out.view(torch.uint8).cpu().numpy(), want), f"bit {bit}"
    other = book_for([real(steps, 0, torch.bfloat16, "weight_grad")], "exponent")
    with pytest.raises(shuff.ShuffError, match="codebook"):
        shuff.decode_frame_into(g, other, out)


def test_family_frames_on_the_gpu_are_the_cpus(steps):
    """Members chosen from the sample counted on the device equal the CPU's choice, so the frames
    are the Rust family encoder's bytes; each side decodes the other's."""
    book = book_for([real(steps, s, torch.bfloat16, "ffn1_act_grad") for s in range(4)], "exponent")
    family = shuff.Family.exponent_shift(book, [-1, 1])
    for scale in (1.0, 2.0):
        x = (real(steps, 4, torch.float32, "ffn1_act_grad") * scale).to(torch.bfloat16)
        raw = np.ascontiguousarray(shuff.byte_view(x))
        g = shuff.encode_frame(x.cuda(), family)
        want = _shuff.encode(raw, family, lanes=gpu.lanes_for(raw.size))
        assert bytes(g.cpu().numpy()) == want, f"×{scale}"
        out = torch.empty_like(x).cuda()
        shuff.decode_frame_into(torch.frombuffer(bytearray(want), dtype=torch.uint8).cuda(), family, out)
        assert torch.equal(out.cpu().view(torch.uint8), x.view(torch.uint8))


def _collectives_worker(rank: int, port: int, ws: int) -> None:
    import os

    import torch.distributed as dist

    import shuff.distributed as sd
    from conftest import step_tensors

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.cuda.set_device(0)
    dist.init_process_group("gloo", rank=rank, world_size=ws)
    steps = [step_tensors(s) for s in range(5)]
    act = lambda s, l=1: torch.cat([s[f"layer{l}.ffn1_act.x.shard{k}"] for k in range(8)], 1)  # noqa: E731
    grad = lambda s, k: s[f"layer4.weight_grad.ffn1.shard{k}"]  # noqa: E731
    tr = shuff.Trainer()
    for b, s in enumerate(steps[:3]):
        tr.add("act", "bf16", "exponent", b, shuff.byte_view(act(s)))
        for k in range(8):
            tr.add("grad", "bf16", "exponent", 8 * b + k, shuff.byte_view(grad(s, k)))
    book = tr.build("gpu-collectives")

    # all_gather of a multi-piece message (every tensor of a step, ~750 KB, tiled to ~3 MB).
    mine = torch.cat([t.reshape(-1) for _, t in sorted(steps[3 + rank % 2].items())]).repeat(4).cuda()
    got = [torch.empty_like(mine) for _ in range(ws)]
    ref = [torch.empty_like(mine) for _ in range(ws)]
    sd.all_gather(got, mine, book=book, cls="act", compress=True)
    dist.all_gather(ref, mine)
    assert all(torch.equal(g, r) for g, r in zip(got, ref)), "all_gather on CUDA tensors differs"

    # all_to_all and reduce_scatter of real gradients: against the same exchange of CPU copies.
    ins = [grad(steps[3 + rank % 2], (rank + k) % 8).cuda() for k in range(ws)]
    outs = [torch.empty_like(ins[0]) for _ in range(ws)]
    sd.all_to_all(outs, ins, book=book, cls="grad", compress=True)
    cpu_outs = [torch.empty_like(ins[0]).cpu() for _ in range(ws)]
    sd.all_to_all(cpu_outs, [t.cpu() for t in ins], book=book, cls="grad", compress=True)
    assert all(torch.equal(o.cpu(), c) for o, c in zip(outs, cpu_outs)), "all_to_all on CUDA tensors differs"
    red = torch.empty_like(ins[0])
    sd.reduce_scatter(red, ins, book=book, cls="grad", compress=True)
    cpu_red = torch.empty_like(ins[0]).cpu()
    # (The CPU path's compressed reduce_scatter is bit-exact with gloo's own: test_distributed.py.)
    sd.reduce_scatter(cpu_red, [t.cpu() for t in ins], book=book, cls="grad", compress=True)
    assert torch.equal(red.cpu(), cpu_red), "reduce_scatter on CUDA tensors differs"
    dist.barrier()
    dist.destroy_process_group()


def test_compressed_collectives_on_cuda_tensors_are_bit_exact():
    """Two processes sharing the GPU over gloo (one GPU here; NCCL needs two): frames coded and
    decoded on the device, results identical to the uncompressed exchange."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_collectives_worker, args=(port, 2), nprocs=2, join=True)
