"""Learning codebooks from a PyTorch model: the paper's profiling step.

    prof = shuff.torch.Profiler(model, classes={"ffn1": r"intermediate\\.dense$", "ffn2": r"output\\.dense$"})
    for batch in warmup:            # a few ordinary training steps
        loss = model(**batch).loss
        loss.backward(); opt.step(); opt.zero_grad()
        prof.step()                 # one batch ends
    book = prof.codebooks(layout="exponent")   # shuff.CodebookSet, average-of-batches rule
    prof.remove()

For every module a class selects, four kinds of tensors are counted, each its own codebook class:
`CLASS.act` (the module's output), `CLASS.act_grad` (the gradient flowing into that output),
`CLASS.weight` and `CLASS.weight_grad`. Histograms are counted in Rust on the tensors' memory.
"""

from __future__ import annotations

import warnings
from typing import Callable, Iterable

import torch

from . import ClassSelector, CodebookSet, Trainer, byte_view, dtype_name

KINDS = ("act", "act_grad", "weight", "weight_grad")


def default_class(module_name: str) -> str:
    """The default class of a module: its name with numbers that are followed by more of the name
    replaced by `#` (block numbers), a number that ends it kept (distinct layers of a Sequential)."""
    parts = module_name.split(".")
    return ".".join("#" if p.isdigit() and i + 1 < len(parts) else p for i, p in enumerate(parts))


class Profiler:
    """Forward/backward hooks that histogram activations, activation gradients, weights and weight
    gradients per class during warm-up steps.

    classes: {class name: regex over module names (Rust `regex` syntax)}, tried in the order given:
        a module goes to the first class whose regex matches its name, as in `shuff train`
        (`shuff.ClassSelector`, the library's one policy); default: every nn.Linear, classed by its name
        with the block numbers inside it replaced by `#` (`encoder.layer.3.attention.self.query` →
        `encoder.layer.#.attention.self.query`: one codebook per kind of layer, shared across
        blocks). A number that ends the name stays (`net.0` and `net.2` of a Sequential are
        different layers, not repeats of one). A class whose regex matches no module is an error
        that lists the model's module names.
    layouts: which layouts to histogram (a codebook can then be built in any of them).
    cast: dtype to count tensors in (what the collective will send), e.g. torch.bfloat16; default:
        each tensor's own dtype.
    kinds: which of act, act_grad, weight, weight_grad to record.
    sink: also called as sink("CLASS.KIND", tensor) with each tensor (after the cast), e.g. to keep
        the tensors of later steps for measurement.
    count: False to only feed `sink` (no histograms).
    family: codebook families, as `shuff train --family`: `auto` (members where they pay on held-out
        messages), `shift`, `cluster` or `none` (one codebook per class).
    """

    def __init__(self, model: torch.nn.Module, classes: dict[str, str] | None = None, *, layouts: Iterable[str] = ("bytes", "exponent"),
                 cast: torch.dtype | None = None, kinds: Iterable[str] = KINDS, max_len: int | None = None,
                 sink: Callable[[str, torch.Tensor], None] | None = None, count: bool = True, family: str = "auto"):
        self.layouts = tuple(layouts) if count else ()
        self.sink = sink
        self.cast = cast
        self.kinds = set(kinds)
        unknown = self.kinds - set(KINDS)
        if unknown:
            raise ValueError(f"unknown kinds {sorted(unknown)} (expected {KINDS})")
        self._trainers = {layout: Trainer(max_len, family=family) for layout in self.layouts}
        self._batch = 0
        self._handles: list = []
        # The library's policy, as `shuff train` applies it: the first class, in the order given,
        # whose regex (Rust syntax) matches the module's name.
        selector = ClassSelector(list((classes or {}).items())) if classes else None
        self.modules: dict[str, str] = {}
        names = [name for name, _ in model.named_modules() if name]
        for name, module in model.named_modules():
            if selector is not None:
                cls = selector.class_of(name)
            else:
                cls = default_class(name) if isinstance(module, torch.nn.Linear) else None
            if cls is None:
                continue
            self.modules[name] = cls
            self._hook(module, cls)
        unmatched = [c for c in (classes or {}) if c not in self.modules.values()]
        if unmatched or not self.modules:
            shown = ", ".join(names[:12]) + (f", … ({len(names)} modules)" if len(names) > 12 else "")
            what = f"classes {unmatched} match no module" if unmatched else "the model has no nn.Linear module"
            raise ValueError(f"{what}; the model's modules: {shown}")

    def _record(self, cls: str, kind: str, t: torch.Tensor | None) -> None:
        if t is None or kind not in self.kinds or not t.is_floating_point():
            return
        t = t.detach()
        if self.cast is not None:
            t = t.to(self.cast)
        if self.sink is not None:
            self.sink(f"{cls}.{kind}", t)
        if not self._trainers:
            return
        data = byte_view(t)
        dtype = dtype_name(t)
        for layout, trainer in self._trainers.items():
            trainer.add(f"{cls}.{kind}", dtype, layout, self._batch, data, "")

    def _hook(self, module: torch.nn.Module, cls: str) -> None:
        def forward(mod, inputs, output):
            if isinstance(output, torch.Tensor):
                self._record(cls, "act", output)
            weight = getattr(mod, "weight", None)
            if isinstance(weight, torch.Tensor):
                self._record(cls, "weight", weight)

        def backward(mod, grad_input, grad_output):
            if grad_output and isinstance(grad_output[0], torch.Tensor):
                self._record(cls, "act_grad", grad_output[0])

        self._handles.append(module.register_forward_hook(forward))
        self._handles.append(module.register_full_backward_hook(backward))
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.nn.Parameter) and weight.requires_grad:
            self._handles.append(weight.register_hook(lambda g: self._record(cls, "weight_grad", g)))

    def step(self) -> None:
        """Ends one warm-up batch: later tensors count towards the next batch."""
        self._batch += 1

    def codebooks(self, layout: str = "exponent", name: str = "profiled") -> CodebookSet:
        """One codebook family per (class, kind): the codebook from the average of the per-batch
        distributions, and the members the profiler's `family` adds."""
        if layout not in self._trainers:
            raise ValueError(f"layout {layout!r} was not profiled (profiled: {self.layouts})")
        trainer = self._trainers[layout]
        if not trainer.classes():
            raise ValueError("no tensor was recorded: run forward and backward passes (and prof.step() after each) first")
        if self._batch == 0:
            warnings.warn("prof.step() was never called: every tensor counted as one batch", stacklevel=2)
        return trainer.build(name)

    def remove(self) -> None:
        """Removes every hook."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
