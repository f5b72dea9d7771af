"""Compressed gradient averaging for DistributedDataParallel: a communication hook.

    import shuff.ddp
    state = shuff.ddp.HookState(warmup_steps=2)          # learns its codebooks from the first steps
    ddp_model.register_comm_hook(state, shuff.ddp.comm_hook)

Each gradient bucket is averaged as torch's default hook does (divided by the number of ranks, then
summed), but through shuff's compressed collectives: a reduce-scatter (each rank receives every
rank's piece of its own share, coded with a fixed codebook, and sums them in a fixed order) and an
all-gather of the summed shares. Coding is lossless, so the result is bit-identical to the same
reduce-scatter + all-gather uncompressed (`HookState(compress=False)`, the twin the tests train
against).

Codebooks: unless a set is given (`book=`, with classes named by `HookState.class_name`), the first
`warmup_steps` iterations run uncompressed while every rank counts the symbols of what it sends; at
the end of warm-up the ranks gather their counts (one all-gather of a few KiB per rank) and each builds the same
codebook set from the same numbers (the library's Trainer: average of the per-step distributions),
so no codebook ever travels. What a rank sends in the reduce-scatter (its gradient / ranks) and in
the all-gather (the summed share) are two classes per dtype, as their scales differ. With
`refresh_every=N` the ranks keep counting and rebuild the set every N steps the same way (online
refresh: gradients drift), all switching at the same step; the collectives check on every call
that all ranks hold the same set.

The hook is asynchronous like DDP's own all-reduce: buckets are averaged on one worker thread, in
the order DDP hands them over, while the backward pass goes on.
"""

# No `from __future__ import annotations`: DDP checks the hook's annotations as objects.
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.distributed as dist

from . import CodebookSet, dtype_name
from . import distributed as sd


class HookState(sd.LearnedBook):
    """What `comm_hook` keeps between calls.

    process_group: the group to average over (default: the default group).
    book: a codebook set with the classes `class_name(dtype, "rs")` and `class_name(dtype, "ag")`
        for every gradient dtype; None (default) learns it during warm-up.
    warmup_steps: iterations that run uncompressed and are counted, when no book is given.
    layout: the symbol layout of the learned codebooks (`exponent` suits float gradients).
    compress: True, False (the uncompressed twin: same reduction, nothing coded) or "auto"
        (shuff.distributed's choice: measure both on the first calls, keep the faster).
    refresh_every: after warm-up, rebuild the codebooks every this many steps from the counts of
        those steps (gradients drift with the loss scale and the learning rate), all ranks
        switching at the same step; None (default) keeps the warm-up set.
    """

    def __init__(self, process_group: dist.ProcessGroup | None = None, *, book: CodebookSet | None = None, warmup_steps: int = 2,
                 layout: str = "exponent", compress: bool | str = True, refresh_every: int | None = None) -> None:
        super().__init__(book=book, warmup_steps=warmup_steps, layout=layout, compress=compress, refresh_every=refresh_every,
                         group=process_group, name="ddp-gradients")
        self._pool: ThreadPoolExecutor | None = None

    def worker(self) -> ThreadPoolExecutor:
        """The one thread that runs this state's collectives, in order."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shuff-ddp")
        return self._pool

    @staticmethod
    def class_name(dtype: str, phase: str) -> str:
        """The codebook class of gradients of shuff dtype `dtype` in `phase` ("rs": the pieces each
        rank sends to be summed; "ag": the summed shares)."""
        return f"grad.{dtype}.{phase}"


def comm_hook(state: HookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DistributedDataParallel communication hook: averages `bucket` over the ranks through
    compressed reduce-scatter + all-gather (see the module's description).

    Asynchronous, as DDP's own all-reduce: the work goes to the state's one worker thread (so the
    buckets' collectives run in the order DDP hands them over, the same on every rank) and the
    backward pass goes on meanwhile; DDP waits for the returned future before the optimizer step."""
    buf, last = bucket.buffer(), bucket.is_last()
    fut: torch.futures.Future[torch.Tensor] = torch.futures.Future()

    def run() -> None:
        try:
            _average(state, buf, last)
        except BaseException as e:  # noqa: BLE001 - DDP re-raises it in the training thread
            fut.set_exception(e)
        else:
            fut.set_result(buf)

    state.worker().submit(run)
    return fut


def _average(state: HookState, buf: torch.Tensor, last: bool) -> None:
    """`buf` ← the average of every rank's `buf`: reduce-scatter of buf / ranks, then all-gather."""
    group = state.group
    ws = dist.get_world_size(group)
    compress = state.mode()
    rs, ag = (HookState.class_name(dtype_name(buf), phase) for phase in ("rs", "ag"))

    buf.div_(ws)
    n = buf.numel()
    share = -(-n // ws)
    if share * ws == n:
        padded = buf
    else:
        padded = torch.zeros(share * ws, dtype=buf.dtype, device=buf.device)
        padded[:n] = buf
    mine = torch.empty(share, dtype=buf.dtype, device=buf.device)
    with state.traffic.recording():
        state.count(rs, padded)
        sd.reduce_scatter(mine, list(padded.split(share)), group=group, book=state.book, cls=rs, compress=compress)
        state.count(ag, mine)
        # Gathered straight into the bucket where it splits evenly.
        sd.all_gather(list(padded.split(share)), mine, group=group, book=state.book, cls=ag, compress=compress)
    if padded is not buf:
        buf.copy_(padded[:n])

    if last:
        state.end_step()
