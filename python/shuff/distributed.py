"""Compressed collectives over torch.distributed (gloo on CPU; any backend that moves uint8).

CPU tensors are coded in Rust on the host; CUDA tensors are coded on their GPU (`shuff.gpu`) and
their frames exchanged as CUDA uint8 tensors (NCCL moves them device to device; gloo stages them
through the host itself).

Each function has the signature of its torch.distributed namesake plus `book` (a CodebookSet) and
`cls` (the class whose codebook codes the tensors). Every rank encodes its tensors with the fixed
codebook (one pass, no codebook in the message), the ranks exchange the compressed sizes, then the
frames (padded to the largest), and decode. A message that would not shrink travels raw (its size
is sent negated), so a collective never sends more than the uncompressed one plus the sizes.

By default (`compress="auto"`) each kind of call first measures itself compressed and uncompressed
and keeps the faster, so a fast link is not slowed down; `compress=True` forces compression;
`compress=False` is the plain collective (`book` may then be None). `Traffic` records how many
bytes the calls were handed and how many they sent.

Every compressed call checks, inside the size exchange it needs anyway, that all ranks hold the same codebook
set (by fingerprint); a mismatch raises ShuffError on every rank instead of decoding garbage.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.distributed as dist

from . import CodebookSet, ShuffError, Trainer, _shuff, byte_view, dtype_name
from ._shuff import encode_into_buffer, max_frame_size

# Messages are cut into pieces of this many tensor bytes, so that decoding one piece overlaps the
# transfer of the next (on a slow link the coding then costs almost nothing).
PIECE_BYTES = 1 << 20


def _signed(u: int) -> int:
    return u - (1 << 64) if u >= 1 << 63 else u


def _control_device(group) -> torch.device:
    """Where small control tensors (sizes, timings) must live for the group's backend: NCCL moves
    only CUDA tensors."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _exchange(row: Sequence[int], book: CodebookSet, group: dist.ProcessGroup | None) -> torch.Tensor:
    """All-gathers each rank's `row` of sizes together with its codebook set's fingerprint, and
    raises ShuffError on every rank if the fingerprints differ. Returns the [ranks, len(row)] matrix.

    Riding on the size exchange every collective needs anyway, the check costs no extra round trip,
    and it catches a rank that switches sets later, not only at the first call."""
    ws = dist.get_world_size(group)
    mine = torch.tensor([_signed(book.fingerprint), *row], dtype=torch.int64, device=_control_device(group))
    every = [torch.empty_like(mine) for _ in range(ws)]
    dist.all_gather(every, mine, group=group)
    m = torch.stack(every).cpu()
    fps = [int(v) & ((1 << 64) - 1) for v in m[:, 0].tolist()]
    if len(set(fps)) != 1:
        listing = ", ".join(f"rank {r}: {fp:016x}" for r, fp in enumerate(fps))
        raise ShuffError(f"ranks hold different codebook sets ({listing}); load the same set everywhere")
    return m[:, 1:]


class SharedTrainer:
    """Learns codebooks that every rank of a group agrees on, without sending any codebook: each
    rank counts the symbols of what it sends (`count`, per class, one batch per `end_step`), and
    `build` gathers the counts of the group (a few KiB per class, step and rank) and builds the set
    from them with the library's Trainer — the same numbers give every rank the same set. All ranks must count the same classes and call `end_step`/`build` together.

        learner = shuff.distributed.SharedTrainer(layout="exponent")
        for step in warmup:
            ...; learner.count("act", activation); ...; learner.end_step()
        book = learner.build("learned")
    """

    def __init__(self, layout: str = "exponent", group: dist.ProcessGroup | None = None) -> None:
        self.layout = layout
        self.group = group
        # One {class: (dtype, [[256 counts] per stream])} per step; the last is the step in progress.
        self._steps: list[dict[str, tuple[str, list[list[int]]]]] = [{}]

    def count(self, cls: str, t) -> None:
        """Counts tensor `t` (contiguous; its dtype is the class's) into class `cls`, this step."""
        dtype = dtype_name(t)
        counts = _shuff.stream_histograms(byte_view(t), dtype, self.layout)
        step = self._steps[-1]
        if cls in step:
            if step[cls][0] != dtype:
                raise ShuffError(f"class {cls!r} got {dtype} after {step[cls][0]}")
            counts = [[a + b for a, b in zip(x, y)] for x, y in zip(step[cls][1], counts)]
        step[cls] = (dtype, counts)

    def counts(self) -> dict[str, list[list[int]]]:
        """This rank's counts since the last `build`, summed over its steps: per class, 256 per stream."""
        totals: dict[str, list[list[int]]] = {}
        for step in self._steps:
            for cls, (_dtype, counts) in step.items():
                acc = totals.get(cls)
                totals[cls] = counts if acc is None else [[a + b for a, b in zip(x, y)] for x, y in zip(acc, counts)]
        return totals

    def end_step(self) -> None:
        """Ends a batch: the distributions of the steps are averaged with equal weights."""
        if self._steps[-1]:
            self._steps.append({})

    def build(self, name: str) -> CodebookSet:
        """Gathers every rank's counts and builds the set (a collective: every rank calls it). Each
        rank's counts of a step are one message of that step's batch: the class code averages the
        steps as `shuff train` does, and the family's members are trained on ranks × steps messages."""
        steps = [s for s in self._steps if s]
        classes = sorted({c for step in steps for c in step})
        flat = [n for step in steps for c in classes if c in step for stream in step[c][1] for n in stream]
        mine = torch.tensor(flat, dtype=torch.int64, device=_control_device(self.group))
        every = [torch.empty_like(mine) for _ in range(dist.get_world_size(self.group))]
        dist.all_gather(every, mine, group=self.group)
        ranks = [iter(t.cpu().tolist()) for t in every]
        trainer = Trainer()
        for batch, step in enumerate(steps):
            for c in classes:
                if c in step:
                    dtype, counts = step[c]
                    for r in ranks:
                        trainer.add_counts(c, dtype, self.layout, batch, [[next(r) for _ in range(256)] for _ in counts], "shared")
        self._steps = [{}]
        return trainer.build(name)


class LearnedBook:
    """The codebooks a data-parallel job's ranks agree on, step by step (shared by shuff.ddp and
    shuff.fsdp): given, or learned from the first `warmup_steps` steps and, with `refresh_every=N`,
    rebuilt every N steps after that — each time from the symbol counts of all ranks
    (`SharedTrainer`), so every rank builds the same set and no codebook travels.

    While counting, callers `count` what they send; `end_step()` (every rank, at the same point)
    closes a step and builds the next set when one is due. `mode()` is the `compress` argument for
    the collectives: False until there is a set. `traffic` records what the collectives sent.
    """

    def __init__(self, *, book: CodebookSet | None, warmup_steps: int, layout: str, compress: bool | str, refresh_every: int | None,
                 group: dist.ProcessGroup | None, name: str) -> None:
        if book is None and warmup_steps < 1:
            raise ShuffError("give a codebook set (book=...) or at least one warm-up step to learn one")
        if refresh_every is not None and refresh_every < 1:
            raise ShuffError("refresh_every must be at least 1 step (or None)")
        if compress not in (True, False, "auto"):
            raise ShuffError(f"compress must be True, False or 'auto', not {compress!r}")
        self.book = book
        self.warmup_steps = warmup_steps
        self.compress = compress
        self.refresh_every = refresh_every
        self.group = group
        self.name = name
        self.layout = layout if book is None or not len(book) else book.codebook(book.classes()[0]).layout
        # Completed steps, and sets built after the first (each replaced the one before).
        self.steps = 0
        self.refreshes = 0
        # The step the first set takes over: refreshes count from it.
        self._first_set_step = 0 if book is not None else warmup_steps
        # Counts towards the next set: during warm-up, and between refreshes.
        self.learner = SharedTrainer(self.layout, group) if book is None or refresh_every else None
        self.traffic = Traffic()

    def count(self, cls: str, t) -> None:
        """Counts what this rank sends as class `cls`, while a set is being learned."""
        if self.learner is not None:
            self.learner.count(cls, t)

    def mode(self) -> bool | str:
        return False if self.book is None else self.compress

    def end_step(self) -> None:
        self.steps += 1
        if self.learner is None:
            return
        self.learner.end_step()
        warm = self.book is None and self.steps >= self.warmup_steps
        due = self.book is not None and self.refresh_every and (self.steps - self._first_set_step) % self.refresh_every == 0
        if warm or due:
            self.book = self.learner.build(f"{self.name}-step{self.steps}")
            self.refreshes += bool(due)
            self.learner = SharedTrainer(self.layout, self.group) if self.refresh_every else None


class Refresh:
    """A codebook set for the collectives below that keeps up with the data (beyond the paper):
    pass it as `book=` where a CodebookSet goes.

    Every rank counts the symbols of what it sends. Every `every` calls the ranks decide together
    whether to switch: always, or — with `drift_pp` — only when on some rank the set has fallen
    more than `drift_pp` points of compressibility behind the data it sent since the last check
    (`Family.drift`: the DriftMonitor's excess over the data's entropy; one all-reduce of a single
    number). To switch, they gather their counts (`SharedTrainer`: a few KiB per rank and
    class) and each builds the identical next set, families included, switching at the same call;
    classes not sent since the last check keep their codes. No codebook travels. A rank that did
    not switch is caught by the fingerprint check every compressed call makes (ShuffError on every
    rank). Every rank must make the same calls.

        book = sd.Refresh(shuff.CodebookSet.load("book.json"), every=50, drift_pp=0.5)
        sd.all_gather(out, t, book=book, cls="act")
    """

    def __init__(self, book: CodebookSet, *, every: int = 100, drift_pp: float | None = None,
                 group: dist.ProcessGroup | None = None, name: str = "refreshed") -> None:
        if every < 1:
            raise ShuffError("every must be at least 1 call")
        if not len(book):
            raise ShuffError("give a codebook set with at least one class to start from")
        self.current = book
        self.every, self.drift_pp, self.group, self.name = every, drift_pp, group, name
        self.layout = book.codebook(book.classes()[0]).layout
        self.calls = 0
        self.checks = 0
        self.refreshes = 0
        # The worst drift (pp) any rank saw at the last check.
        self.last_drift_pp: float | None = None
        self._learner = SharedTrainer(self.layout, group)

    # What the collectives use of a CodebookSet: the current set's.
    def family(self, cls: str):
        return self.current.family(cls)

    def codebook(self, cls: str):
        return self.current.codebook(cls)

    def classes(self) -> list[str]:
        return self.current.classes()

    @property
    def fingerprint(self) -> int:
        return self.current.fingerprint

    def __len__(self) -> int:
        return len(self.current)

    def _count(self, cls: str, tensors: Sequence[torch.Tensor]) -> None:
        for t in tensors:
            self._learner.count(cls, t.detach().cpu() if t.device.type == "cuda" else t.detach())

    def _local_drift(self) -> float:
        """The worst excess (pp) of the current set over what this rank sent since the last check."""
        known = set(self.current.classes())
        return max((self.current.family(c).drift(counts)[0] for c, counts in self._learner.counts().items() if c in known), default=0.0)

    def _end_call(self) -> None:
        self.calls += 1
        self._learner.end_step()
        if self.calls % self.every:
            return
        self.checks += 1
        due = True
        if self.drift_pp is not None:
            worst = torch.tensor([self._local_drift()], dtype=torch.float64, device=_control_device(self.group))
            dist.all_reduce(worst, op=dist.ReduceOp.MAX, group=self.group)
            self.last_drift_pp = float(worst.item())
            due = self.last_drift_pp > self.drift_pp
        if due:
            learned = self._learner.build(f"{self.name}-call{self.calls}")
            self.current = self.current.updated_with(learned)
            self.refreshes += 1
        self._learner = SharedTrainer(self.layout, self.group)


def check_codebooks(book: CodebookSet, group: dist.ProcessGroup | None = None) -> None:
    """Raises ShuffError on every rank unless all ranks of `group` hold the same codebook set.
    The collectives do this on every call, folded into their size exchange."""
    _exchange([], book, group)


def _pack(t: torch.Tensor, book: CodebookSet, cls: str) -> tuple[torch.Tensor, int]:
    """`t` coded into a send buffer (room for the worst case, so other ranks' larger frames fit the
    same padded width) and its signed size: the frame's length, or minus the raw length when coding
    does not shrink it (the buffer then holds the raw bytes)."""
    codebook = book.family(cls)
    if dtype_name(t) != codebook.dtype:
        raise ShuffError(f"tensor is {dtype_name(t)} but class {cls!r} codes {codebook.dtype}")
    return _pack_bytes(_bytes_of(t), codebook)


def _bytes_of(t: torch.Tensor):
    """A tensor's bytes: a numpy uint8 view on the CPU, a flat uint8 tensor view on a GPU."""
    if t.device.type == "cuda":
        return t.contiguous().reshape(-1).view(torch.uint8)
    return byte_view(t)


def _pack_bytes(raw, codebook) -> tuple[torch.Tensor, int]:
    """`raw` (from `_bytes_of`) coded into a buffer on its device with room for the worst case;
    returns the buffer and the frame's length, or minus the raw length when coding does not shrink
    it (the buffer then holds the raw bytes)."""
    nbytes = raw.numel() if isinstance(raw, torch.Tensor) else raw.nbytes
    size = max(max_frame_size(codebook.dtype, codebook.layout, nbytes), nbytes)
    if isinstance(raw, torch.Tensor):  # CUDA
        from . import gpu

        buf = torch.empty(size, dtype=torch.uint8, device=raw.device)
        n = gpu.encode_tensor(raw, codebook, out=buf).numel() if nbytes else 0
        if nbytes and n < nbytes:
            return buf, n
        buf[:nbytes] = raw
        return buf, -nbytes
    buf = torch.empty(size, dtype=torch.uint8)
    n = encode_into_buffer(raw, codebook, buf.numpy())
    if n < nbytes:
        return buf, n
    buf.numpy()[:nbytes] = raw
    return buf, -nbytes


def _unpack_bytes(data: torch.Tensor, size: int, out, codebook) -> None:
    """Restores one message's bytes into `out` (from `_bytes_of`: numpy, or a CUDA uint8 tensor)."""
    if isinstance(out, torch.Tensor):  # CUDA
        from . import gpu

        if size < 0:
            out.copy_(data[:-size])
        elif out.numel():
            gpu.decode_tensor_into(data[:size], codebook, out)
        return
    if size < 0:
        out[:] = data[: -size].numpy()
    else:
        _shuff.decode_into_buffer(data[:size].numpy(), codebook, out)


def _unpack(buf: torch.Tensor, size: int, out: torch.Tensor, book: CodebookSet, cls: str) -> None:
    """Restores one message into the tensor `out`."""
    _unpack_bytes(buf, size, _bytes_of(out), book.family(cls))


def _send_buffer(packed: Sequence[tuple[torch.Tensor, int]], width: int) -> torch.Tensor:
    """The packed messages, each padded with zeros to `width` bytes, back to back (a view of the
    single message's own buffer when there is one)."""
    if len(packed) == 1 and packed[0][0].numel() >= width:
        buf, size = packed[0]
        buf[abs(size) : width] = 0
        return buf[:width]
    out = torch.empty(len(packed) * width, dtype=torch.uint8, device=packed[0][0].device)
    for i, (buf, size) in enumerate(packed):
        out[i * width : i * width + abs(size)] = buf[: abs(size)]
        out[i * width + abs(size) : (i + 1) * width] = 0
    return out


def _nbytes(tensors: Sequence[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _check_out(t: torch.Tensor, like: torch.Tensor | None = None) -> None:
    if not t.is_contiguous():
        raise ShuffError("compressed collectives need contiguous output tensors")
    if like is not None and t.device != like.device:
        raise ShuffError(f"output tensor is on {t.device}, the input on {like.device}")


class _Policy:
    """Whether to compress, per (process group, collective, size class), for `compress="auto"`.

    Compression pays only when the link is slow relative to the cores that code. The first
    2 × CALIBRATION calls of each kind alternate compressed and uncompressed; each call's time is
    max-reduced over the ranks (one 8-byte all_reduce), so every rank sees the same numbers and
    makes the same choice — a rank choosing differently would deadlock. Then the faster mode by
    median is kept, and re-checked the same way every RECHECK calls."""

    CALIBRATION = 3
    RECHECK = 1000

    def __init__(self) -> None:
        self.state: dict[tuple, dict] = {}

    def key(self, group, kind: str, nbytes: int) -> tuple:
        return (id(group), kind, max(nbytes, 1).bit_length())

    def choose(self, key: tuple) -> tuple[bool, bool]:
        """(compress?, measure this call?)"""
        st = self.state.setdefault(key, {"calls": 0, "times": {True: [], False: []}, "choice": None})
        n = st["calls"] % self.RECHECK
        st["calls"] += 1
        if n < 2 * self.CALIBRATION:
            if n == 0:
                st["times"] = {True: [], False: []}
            return n % 2 == 0, True
        if st["choice"] is None or n == 2 * self.CALIBRATION:
            med = {m: sorted(t)[len(t) // 2] for m, t in st["times"].items()}
            st["choice"] = med[True] <= med[False]
        return st["choice"], False

    def record(self, key: tuple, compressed: bool, seconds: float, group) -> None:
        t = torch.tensor([seconds], dtype=torch.float64, device=_control_device(group))
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
        self.state[key]["times"][compressed].append(float(t.item()))


_policy = _Policy()


class Traffic:
    """What this rank's collectives moved while `recording()`: `original` tensor bytes handed to
    them, `sent` bytes this rank put on the link for them (compressed frames padded to the widest
    rank's, as they travel, or the raw bytes of an uncompressed call), and the number of calls,
    compressed or not.

        traffic = shuff.distributed.Traffic()
        with traffic.recording():
            shuff.distributed.all_gather(outs, t, book=book, cls="act")
        print(traffic.ratio())
    """

    def __init__(self) -> None:
        self.original = 0
        self.sent = 0
        self.calls = 0
        self.compressed_calls = 0

    def ratio(self) -> float:
        """sent / original (1.0 before anything was recorded)."""
        return self.sent / self.original if self.original else 1.0

    @contextmanager
    def recording(self) -> Iterator["Traffic"]:
        """Records the collectives this thread calls meanwhile (per thread: the DDP hook's worker
        thread and the training thread do not count each other's calls)."""
        _recorders().append(self)
        try:
            yield self
        finally:
            _recorders().remove(self)

    def __repr__(self) -> str:
        return f"Traffic(original={self.original}, sent={self.sent}, calls={self.calls}, compressed_calls={self.compressed_calls})"


_this_thread = threading.local()


def _recorders() -> list[Traffic]:
    if not hasattr(_this_thread, "recorders"):
        _this_thread.recorders = []
    return _this_thread.recorders


def _record(original: int, sent: int, compressed: bool) -> None:
    for t in _recorders():
        t.original += original
        t.sent += sent
        t.calls += 1
        t.compressed_calls += compressed


def _run(kind: str, compress: bool | str, group, nbytes: int, book: CodebookSet | Refresh | None, compressed_fn, plain_fn, cuda: bool = False,
         key_bytes: int | None = None, cls: str = "", sent: Sequence[torch.Tensor] = ()) -> None:
    """Runs the compressed or the plain form of a collective of `nbytes` bytes from this rank
    (the policy's size class is that of `key_bytes` where given); a `Refresh` book counts what is
    `sent` as class `cls` and may switch sets after the call."""
    if book is None and compress is not False:
        raise ShuffError(f"{kind}: give a codebook set (book=...), or compress=False")
    if isinstance(book, Refresh):
        book._count(cls, sent)
    _run_once(kind, compress, group, nbytes, compressed_fn, plain_fn, cuda, key_bytes)
    if isinstance(book, Refresh):
        book._end_call()


def _run_once(kind: str, compress: bool | str, group, nbytes: int, compressed_fn, plain_fn, cuda: bool, key_bytes: int | None) -> None:
    if compress == "auto":
        key = _policy.key(group, kind, nbytes if key_bytes is None else key_bytes)
        use, measure = _policy.choose(key)
    elif isinstance(compress, bool):
        use, measure = compress, False
    else:
        raise ShuffError(f"compress must be True, False or 'auto', not {compress!r}")
    if measure and cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    if use:
        compressed_fn()
    else:
        plain_fn()
        _record(nbytes, nbytes, False)
    if measure:
        if cuda:
            torch.cuda.synchronize()
        _policy.record(key, use, time.perf_counter() - start, group)


def all_gather(tensor_list: list[torch.Tensor], tensor: torch.Tensor, group: dist.ProcessGroup | None = None, *, book: CodebookSet | None, cls: str,
               compress: bool | str = "auto") -> None:
    """Like torch.distributed.all_gather; tensor_list[r] receives rank r's tensor, bit for bit.

    Pipelined: the tensor is coded in pieces of PIECE_BYTES; while piece p is being gathered
    (asynchronously), piece p − 1 is decoded. A rank's own piece is copied, not decoded.
    compress: "auto" (default: measure both paths on the first calls, keep the faster), True, or
    False (torch's own all_gather)."""
    _run("all_gather", compress, group, tensor.numel() * tensor.element_size(), book,
         lambda: _all_gather(tensor_list, tensor, group, book, cls), lambda: dist.all_gather(tensor_list, tensor, group=group),
         cuda=tensor.device.type == "cuda", cls=cls, sent=[tensor])


def _all_gather(tensor_list: list[torch.Tensor], tensor: torch.Tensor, group, book: CodebookSet, cls: str) -> None:
    ws, me = dist.get_world_size(group), dist.get_rank(group)
    if len(tensor_list) != ws:
        raise ShuffError(f"tensor_list has {len(tensor_list)} tensors for {ws} ranks")
    for t in tensor_list:
        _check_out(t, tensor)
        if t.numel() != tensor.numel() or t.dtype != tensor.dtype:
            raise ShuffError("all_gather: every output must have the input's dtype and size")
    codebook = book.family(cls)
    if dtype_name(tensor) != codebook.dtype:
        raise ShuffError(f"tensor is {dtype_name(tensor)} but class {cls!r} codes {codebook.dtype}")
    raw = _bytes_of(tensor)
    outs = [_bytes_of(t) for t in tensor_list]
    nbytes = tensor.numel() * tensor.element_size()
    step = max(1, PIECE_BYTES // tensor.element_size()) * tensor.element_size()
    bounds = [(s, min(s + step, nbytes)) for s in range(0, nbytes, step)] or [(0, 0)]
    packed = [_pack_bytes(raw[s:e], codebook) for s, e in bounds]
    sizes = _exchange([size for _, size in packed], book, group)  # [ranks, pieces]

    def finish(p: int, recv: list[torch.Tensor]) -> None:
        s, e = bounds[p]
        for r in range(ws):
            if r == me:
                outs[r][s:e] = raw[s:e]
            else:
                _unpack_bytes(recv[r], int(sizes[r, p]), outs[r][s:e], codebook)

    widths = [int(sizes[:, p].abs().max()) for p in range(len(bounds))]
    _record(nbytes, sum(widths), True)
    pending = None
    for p, width in enumerate(widths):
        recv = [torch.empty(width, dtype=torch.uint8, device=tensor.device) for _ in range(ws)]
        work = dist.all_gather(recv, _send_buffer([packed[p]], width), group=group, async_op=True)
        if pending is not None:
            finish(*pending)
        work.wait()
        pending = (p, recv)
    finish(*pending)


def all_to_all(output_tensor_list: list[torch.Tensor], input_tensor_list: list[torch.Tensor], group: dist.ProcessGroup | None = None, *,
               book: CodebookSet | None, cls: str, compress: bool | str = "auto") -> None:
    """Like torch.distributed.all_to_all: output_tensor_list[r] receives rank r's
    input_tensor_list[me], bit for bit. compress: True, False or "auto" (as in all_gather)."""
    # Ranks may send different amounts, so the size class must not depend on this rank's: one
    # policy per group for all_to_all.
    _run("all_to_all", compress, group, _nbytes(input_tensor_list), book,
         lambda: _all_to_all(output_tensor_list, input_tensor_list, group, book, cls),
         lambda: dist.all_to_all(output_tensor_list, list(input_tensor_list), group=group),
         cuda=bool(input_tensor_list) and input_tensor_list[0].device.type == "cuda", key_bytes=0, cls=cls, sent=input_tensor_list)


def _all_to_all(output_tensor_list: list[torch.Tensor], input_tensor_list: list[torch.Tensor], group, book: CodebookSet, cls: str) -> None:
    ws = dist.get_world_size(group)
    if len(input_tensor_list) != ws or len(output_tensor_list) != ws:
        raise ShuffError(f"all_to_all needs {ws} input and output tensors")
    for t in output_tensor_list:
        _check_out(t, input_tensor_list[0])
    packed = [_pack(t, book, cls) for t in input_tensor_list]
    # Every rank learns the whole size matrix (row = sender), so all pick the same padding.
    matrix = _exchange([s for _, s in packed], book, group)
    width = int(matrix.abs().max().item())
    _record(_nbytes(input_tensor_list), ws * width, True)
    send = _send_buffer(packed, width)
    recv = torch.empty(ws * width, dtype=torch.uint8, device=send.device)
    dist.all_to_all_single(recv, send, group=group)
    me = dist.get_rank(group)
    for r in range(ws):
        _unpack(recv[r * width : (r + 1) * width], int(matrix[r, me]), output_tensor_list[r], book, cls)


def _sum_like_gloo(parts: Sequence[torch.Tensor], out: torch.Tensor) -> None:
    """out = Σ parts, added in the order gloo's reduce_scatter adds them, so that the result is
    bit-identical to torch.distributed.reduce_scatter on gloo (floating-point addition is not
    associative: the order decides the last bit).

    gloo (as shipped with torch 2.15; measured, and checked by python/tests/test_distributed.py for
    2–5 ranks, 1 to 2^20 elements, bf16/f16/f32) splits each output into `ranks` segments of
    ⌈n / 2·ranks⌉·2 elements; segment k starts from rank (k − 1) mod ranks and adds the ranks below
    it in turn, each addition rounded in the tensor's dtype. Other backends (NCCL) add in their own
    order, so there the result can differ from theirs in the last bit."""
    ws = len(parts)
    flat = [p.reshape(-1) for p in parts]
    dst = out.view(-1)
    n = dst.numel()
    seg = -(-n // (2 * ws)) * 2
    for k in range(ws):
        a, b = k * seg, min((k + 1) * seg, n)
        if a >= b:
            continue
        start = (k - 1) % ws
        acc = flat[start][a:b].clone()
        for i in range(1, ws):
            acc += flat[(start - i) % ws][a:b]
        dst[a:b] = acc


def reduce_scatter(output: torch.Tensor, input_list: list[torch.Tensor], op=dist.ReduceOp.SUM, group: dist.ProcessGroup | None = None, *,
                   book: CodebookSet | None, cls: str, compress: bool | str = "auto") -> None:
    """Like torch.distributed.reduce_scatter (SUM): compressed all_to_all of the inputs, decode,
    then sum in the tensors' own dtype, in rank order (each addition rounded as torch rounds it).

    The result is bit-identical to the uncompressed exchange reduced the same way (and with
    compress=False or "auto" the exchange is torch's all_to_all, so the sum is the same either way). gloo's own
    reduce_scatter adds in an order that changes from segment to segment of the buffer, so on
    inexact sums the two can differ in the last bit; where every sum is exact they are equal.
    """
    if op != dist.ReduceOp.SUM:
        raise ShuffError("compressed reduce_scatter supports ReduceOp.SUM")
    _check_out(output, input_list[0] if input_list else None)
    ws = dist.get_world_size(group)
    parts = [torch.empty_like(output) for _ in range(ws)]
    all_to_all(parts, list(input_list), group, book=book, cls=cls, compress=compress)
    _sum_like_gloo(parts, output)
