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
gathers the counts of all ranks and each builds the same set (`shuff.distributed.SharedTrainer`).
Coding is lossless, so training is bit-identical to `Compression(compress=False)`, the same
collectives uncompressed (the reduce-scatter then sums in gloo's order, as `dist.reduce_scatter`).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from . import CodebookSet, ShuffError, dtype_name
from . import distributed as sd


class Compression(sd.LearnedBook):
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
        super().__init__(book=book, warmup_steps=warmup_steps, layout=layout, compress=compress, refresh_every=refresh_every,
                         group=group, name="fsdp")
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
        self.end_step()


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
        st.count(cls, input_tensor)
        with st.traffic.recording():
            sd.all_gather(list(output_tensor.chunk(dist.get_world_size(group))), input_tensor, group, book=st.book, cls=cls, compress=st.mode())
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
        st.count(cls, input_tensor)
        with st.traffic.recording():
            sd.reduce_scatter(output_tensor, list(input_tensor.chunk(dist.get_world_size(group))), group=group, book=st.book, cls=cls,
                              compress=st.mode())
        if average:
            output_tensor.div_(dist.get_world_size(group))
        return None
