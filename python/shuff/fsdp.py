"""Compressed collectives for FSDP2 (`torch.distributed.fsdp.fully_shard`): its parameter
all-gather and gradient reduce-scatter through shuff's compressed collectives.

    comms = shuff.fsdp.Compression(warmup_steps=2)
    comms.attach(model)              # every FSDP module in the model (after fully_shard)
    for batch in data:
        model(batch).sum().backward(); opt.step(); opt.zero_grad()
        comms.step()                 # ends a step; at the end of warm-up all ranks learn the codebooks

FSDP2 offers these hook points (`FSDPModule.set_custom_all_gather` / `set_custom_reduce_scatter`);
FSDP1's `register_comm_hook` is for the older wrapper and is not covered. The all-gather sends
parameter shards (class `param.DTYPE`), the reduce-scatter gradients (`grad.DTYPE.rs`). During
warm-up both run uncompressed while every rank counts what it sends; `step()` at the end of warm-up
sums the counts over the ranks and each builds the same set (`shuff.distributed.SharedTrainer`).
Coding is lossless, so training is bit-identical to `Compression(compress=False)`, the same
collectives uncompressed (the reduce-scatter then sums in gloo's order, as `dist.reduce_scatter`).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from . import CodebookSet, ShuffError, dtype_name
from . import distributed as sd


class Compression:
    """The state both custom collectives share: codebooks (given, or learned in warm-up), the
    compression policy and a `traffic` record.

    book: a set with classes `param.DTYPE` and `grad.DTYPE.rs` for the model's dtypes, or None to
        learn it during the first `warmup_steps` steps (ended by `step()`).
    layout: the learned codebooks' layout. compress: True, False or "auto" (as shuff.distributed).
    refresh_every: rebuild the set every this many steps after the first one, from the counts of
        those steps, all ranks switching at the same `step()` (None: keep the first set).
    group: the group the counts are summed over (default: the default group).
    """

    def __init__(self, *, book: CodebookSet | None = None, warmup_steps: int = 2, layout: str = "exponent",
                 compress: bool | str = True, refresh_every: int | None = None, group: dist.ProcessGroup | None = None) -> None:
        if book is None and warmup_steps < 1:
            raise ShuffError("give a codebook set (book=...) or at least one warm-up step to learn one")
        if refresh_every is not None and refresh_every < 1:
            raise ShuffError("refresh_every must be at least 1 step (or None)")
        if compress not in (True, False, "auto"):
            raise ShuffError(f"compress must be True, False or 'auto', not {compress!r}")
        self.book = book
        self.warmup_steps = warmup_steps
        self.compress = compress
        self.steps = 0
        self.layout = layout if book is None or not len(book) else book.codebook(book.classes()[0]).layout
        self.group = group
        self.refresh_every = refresh_every
        self._first_set_step = 0 if book is not None else warmup_steps
        self.refreshes = 0
        self.learner = sd.SharedTrainer(self.layout, group) if book is None or refresh_every else None
        self.traffic = sd.Traffic()
        self.all_gather = _AllGather(self)
        self.reduce_scatter = _ReduceScatter(self)

    def attach(self, model: torch.nn.Module) -> int:
        """Sets both collectives on every FSDP module of `model`; returns how many."""
        from torch.distributed.fsdp import FSDPModule

        mods = [m for m in model.modules() if isinstance(m, FSDPModule)]
        if not mods:
            raise ShuffError("no FSDP module in the model: call fully_shard on it first")
        for m in mods:
            m.set_custom_all_gather(self.all_gather)
            m.set_custom_reduce_scatter(self.reduce_scatter)
        return len(mods)

    def step(self) -> None:
        """Ends a training step (every rank, at the same point): the last warm-up step, and every
        `refresh_every`-th after it, builds the codebooks (one all-reduce of the symbol counts)."""
        self.steps += 1
        if self.learner is not None:
            self.learner.end_step()
            warm = self.book is None and self.steps >= self.warmup_steps
            due = self.book is not None and self.refresh_every and (self.steps - self._first_set_step) % self.refresh_every == 0
            if warm or due:
                self.book = self.learner.build(f"fsdp-step{self.steps}")
                self.refreshes += bool(due)
                self.learner = sd.SharedTrainer(self.layout, self.group) if self.refresh_every else None

    def _mode(self) -> bool | str:
        return False if self.book is None else self.compress


class _Comm:
    def __init__(self, state: Compression) -> None:
        self.state = state

    def allocate(self, size, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        return torch.empty(*size, dtype=dtype, device=device)


class _AllGather(_Comm):
    """FSDP's parameter all-gather: `output_tensor` (ranks × n) receives every rank's `input_tensor`."""

    def __call__(self, output_tensor: torch.Tensor, input_tensor: torch.Tensor, group: dist.ProcessGroup, async_op: bool = False) -> None:
        st = self.state
        cls = f"param.{dtype_name(input_tensor)}"
        if st.learner is not None:
            st.learner.count(cls, input_tensor)
        with st.traffic.recording():
            sd.all_gather(list(output_tensor.chunk(dist.get_world_size(group))), input_tensor, group, book=st.book, cls=cls, compress=st._mode())
        return None  # done: FSDP waits only on a returned Work


class _ReduceScatter(_Comm):
    """FSDP's gradient reduce-scatter: `output_tensor` receives the sum (or average) over the ranks
    of their `input_tensor` pieces for this rank."""

    def __call__(self, output_tensor: torch.Tensor, input_tensor: torch.Tensor, group: dist.ProcessGroup, op=dist.ReduceOp.SUM,
                 async_op: bool = False) -> None:
        st = self.state
        average = op == dist.ReduceOp.AVG
        if not average and op != dist.ReduceOp.SUM:
            raise ShuffError(f"compressed reduce-scatter sums or averages, not {op}")
        cls = f"grad.{dtype_name(input_tensor)}.rs"
        if st.learner is not None:
            st.learner.count(cls, input_tensor)
        with st.traffic.recording():
            sd.reduce_scatter(output_tensor, list(input_tensor.chunk(dist.get_world_size(group))), group=group, book=st.book, cls=cls,
                              compress=st._mode())
        if average:
            output_tensor.div_(dist.get_world_size(group))
        return None
