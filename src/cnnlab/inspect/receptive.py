"""Output sizes and receptive fields of convolutional networks (Handbook §2.3, §3.1.1).

The book gives only the stride-1, no-padding output size and no receptive-field formula; both
standard forms used here are reconstructions (Handbook Part E.1, items 4, 5 and 9):

    out  = floor((H + 2p - d(k - 1) - 1) / s) + 1
    r_l  = r_{l-1} + (k_eff - 1) * j_{l-1},   j_l = j_{l-1} * s_l,   k_eff = d(k - 1) + 1

with r_0 = j_0 = 1 at the input. ``FieldTracker`` applies the recurrence along the real data flow
of a forward pass: it is a ``TorchFunctionMode``, so it sees every tensor operation, including
additions and concatenations written in a model's ``forward`` (not only module calls).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

Pair = tuple[int, int]


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def conv_output_size(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output length of a convolution or pooling window along one axis (Handbook E.1 item 4).

    ``ceil_mode`` rounds up like PyTorch pooling does, dropping a last window that would start
    entirely inside the right padding.
    """
    for name, value, low in [
        ("size", size, 1), ("kernel", kernel, 1), ("stride", stride, 1),
        ("padding", padding, 0), ("dilation", dilation, 1),
    ]:  # fmt: skip
        _check_int(name, value, low)
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if span < 0:
        raise ValueError(
            f"kernel {kernel} (dilation {dilation}, effective {dilation * (kernel - 1) + 1}) "
            f"does not fit an input of size {size} with padding {padding}"
        )
    if not ceil_mode:
        return span // stride + 1
    out = math.ceil(span / stride) + 1
    if (out - 1) * stride >= size + padding:  # last window would start in the padding
        out -= 1
    return out


def receptive_field_of(layers: Sequence[Sequence[int]]) -> tuple[int, int]:
    """Receptive field and jump after a chain of ``(kernel, stride[, dilation])`` layers.

    Handbook §3.1.1 (recurrence reconstructed in Part E.1 item 9); the input has r = j = 1.
    """
    rf, jump = 1, 1
    for i, layer in enumerate(layers):
        if len(layer) not in (2, 3):
            raise ValueError(f"layer {i}: expected (kernel, stride[, dilation]), got {layer!r}")
        kernel = _check_int(f"layer {i} kernel", layer[0], 1)
        stride = _check_int(f"layer {i} stride", layer[1], 1)
        dilation = _check_int(f"layer {i} dilation", layer[2] if len(layer) == 3 else 1, 1)
        rf += dilation * (kernel - 1) * jump
        jump *= stride
    return rf, jump


@dataclass(frozen=True)
class Field:
    """Receptive field and jump (rows, cols) of one tensor, in input pixels.

    ``is_global`` marks tensors without a spatial layout any more (after global pooling,
    flattening or a fully connected layer): every unit sees the whole input, and ``rf`` and
    ``jump`` are both the input's size (one unit per image).
    """

    rf: Pair
    jump: Pair
    is_global: bool = False


def _pair(value: Any) -> Pair:
    """The last two entries of an int-or-sequence hyperparameter (the H and W axes)."""
    if isinstance(value, int):
        return value, value
    seq = [int(v) for v in value]
    return (seq[0], seq[0]) if len(seq) == 1 else (seq[-2], seq[-1])


def apply_window(field: Field, kernel: Any, stride: Any, dilation: Any = 1) -> Field:
    """One step of the receptive-field recurrence for a sliding-window layer."""
    if field.is_global:
        return field
    k, s, d = _pair(kernel), _pair(stride), _pair(dilation)
    rf = tuple(r + d[a] * (k[a] - 1) * field.jump[a] for a, r in enumerate(field.rf))
    jump = tuple(j * s[a] for a, j in enumerate(field.jump))
    return Field(rf, jump)  # type: ignore[arg-type]


def iter_tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Tensors inside (possibly nested) lists, tuples and dicts."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from iter_tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from iter_tensors(item)


def _window_names() -> dict[str, tuple[str, ...]]:
    conv = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    maxp = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    avgp = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
    lpp = ("input", "norm_type", "kernel_size", "stride", "ceil_mode")
    names: dict[str, tuple[str, ...]] = {}
    for nd in ("1d", "2d", "3d"):
        names |= {f"conv{nd}": conv, f"max_pool{nd}": maxp, f"avg_pool{nd}": avgp}
        names |= {f"lp_pool{nd}": lpp, f"max_pool{nd}_with_indices": maxp}
    return names


_WINDOW_ARGS = _window_names()
_ADAPTIVE = {f"adaptive_{kind}_pool{nd}" for kind in ("avg", "max") for nd in ("1d", "2d", "3d")}
_GLOBAL = {"linear", "bilinear"}  # mix every feature: nothing spatial survives
_PASS = {"pad"}  # padding shifts positions but changes neither rf nor jump
_AXIS_OPS = {"permute", "transpose", "transpose_", "movedim", "moveaxis", "swapaxes", "swapdims"}


class FieldTracker(TorchFunctionMode):
    """Propagates a ``Field`` through every torch call of a forward pass (Handbook §3.1.1).

    Residual additions and concatenations take the largest receptive field of their inputs;
    when merged tensors have different jumps the larger is kept and a note is recorded.
    """

    def __init__(self, input_hw: Pair) -> None:
        super().__init__()
        self.fields: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.full = Field(input_hw, input_hw, True)
        self.notes: dict[str, None] = {}  # ordered set of messages
        self.scope = ""  # qualified name of the module running now (for notes)
        self.unmodelled = 0  # how many ops so far the rules could not model exactly

    def note(self, message: str, *, unmodelled: bool = True) -> None:
        self.notes[f"{self.scope or '(root)'}: {message}"] = None
        self.unmodelled += unmodelled

    def drop_notes_since(self, count: int) -> None:
        """Forget the notes added after the first ``count`` (superseded by a module rule)."""
        for key in list(self.notes)[count:]:
            del self.notes[key]

    def mark_input(self, x: torch.Tensor) -> None:
        self.fields[x] = Field((1, 1), (1, 1))

    def field_of(self, obj: Any) -> Field | None:
        """Field of the first tracked tensor in ``obj``."""
        return next((f for t in iter_tensors(obj) if (f := self.fields.get(t)) is not None), None)

    def set_field(self, obj: Any, field: Field) -> None:
        for t in iter_tensors(obj):
            self.fields[t] = field

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outs = list(iter_tensors(out))
        if outs:
            ins = [
                (t, f)
                for t in iter_tensors((args, kwargs))
                if (f := self.fields.get(t)) is not None
            ]
            if ins:
                name = getattr(func, "__name__", str(func))
                try:
                    field = self._rule(name, args, kwargs, ins, outs[0])
                except Exception as err:  # a bookkeeping bug must never break the forward pass
                    self.note(f"receptive field not tracked through {name} ({err})")
                    field = self._merge(name, [f for _, f in ins])
                self.set_field(outs, field)
        return out

    def _rule(self, name, args, kwargs, ins, out: torch.Tensor) -> Field:
        x, fx = ins[0]
        if name in _WINDOW_ARGS:
            bound = dict(zip(_WINDOW_ARGS[name], args, strict=False)) | kwargs
            if name.startswith("conv"):
                kernel = tuple(bound["weight"].shape[2:])
                return apply_window(fx, kernel, bound.get("stride", 1), bound.get("dilation", 1))
            kernel = bound["kernel_size"]
            stride = bound.get("stride") or kernel  # None or [] means "same as the kernel"
            return apply_window(fx, kernel, stride, bound.get("dilation", 1))
        if name in _ADAPTIVE and x.dim() >= 4:
            return self._adaptive(fx, tuple(x.shape[-2:]), tuple(out.shape[-2:]))
        if name in _GLOBAL:
            return self.full
        if name in _PASS:
            return self._merge(name, [f for _, f in ins])
        if name == "__getitem__" and x.dim() >= 4 and out.dim() == x.dim():
            steps = _slice_steps(x.dim(), args[1])
            if steps is not None:
                return replace(fx, jump=(fx.jump[0] * steps[0], fx.jump[1] * steps[1]))
        if name in _AXIS_OPS and x.dim() >= 4 and out.stride()[-2:] != x.stride()[-2:]:
            self.note(f"{name} moves the spatial axes; receptive fields after it are approximate")
        return self._generic(name, ins, out)

    def _adaptive(self, field: Field, in_hw: Pair, out_hw: Pair) -> Field:
        if field.is_global or in_hw == out_hw:
            return field
        if out_hw == (1, 1):
            return self.full
        kernel, stride = [], []
        for i, o in zip(in_hw, out_hw, strict=True):
            # PyTorch's window t covers [floor(t*i/o), ceil((t+1)*i/o)): take the widest one.
            kernel.append(max(-((-(t + 1) * i) // o) - (t * i) // o for t in range(o)))
            stride.append(max(i // o, 1))
            if i % o:
                self.note(f"adaptive pooling {i}->{o} has uneven windows; rf/jump approximate")
        return apply_window(field, kernel, stride)

    def _generic(self, name: str, ins, out: torch.Tensor) -> Field:
        """Shape-based rule for every other op (elementwise, channel-wise, views, reductions)."""
        fields = [f for _, f in ins]
        if out.dim() < 4:  # flattened, pooled over space or otherwise without a spatial layout
            return self.full
        out_hw = tuple(out.shape[-2:])
        same = all(t.dim() < 4 or tuple(t.shape[-2:]) in (out_hw, (1, 1)) for t, _ in ins)
        if same:
            return self._merge(name, fields)
        if out_hw == (1, 1):  # an unknown reduction over all positions
            return self.full
        self.note(f"{name} changes the spatial size in a way not modelled; rf carried through")
        return self._merge(name, fields)

    def _merge(self, name: str, fields: list[Field]) -> Field:
        """Merge the fields of inputs combined position by position (add, cat, mul, ...)."""
        spatial = [f for f in fields if not f.is_global]
        if not spatial:
            return self.full
        rf = (max(f.rf[0] for f in fields), max(f.rf[1] for f in fields))
        jumps = sorted({f.jump for f in spatial})
        if len(jumps) > 1:
            msg = f"{name} merges tensors with jumps {jumps}; the larger jump is reported"
            self.note(msg, unmodelled=False)
        return Field(rf, (max(j[0] for j in jumps), max(j[1] for j in jumps)))


def _slice_steps(ndim: int, index: Any) -> Pair | None:
    """Steps of a basic slicing index on the last two axes, or None for other indices."""
    idx = index if isinstance(index, tuple) else (index,)
    if not all(isinstance(i, slice) or i is Ellipsis for i in idx) or idx.count(Ellipsis) > 1:
        return None
    if Ellipsis in idx:
        e = idx.index(Ellipsis)
        fill = (slice(None),) * (ndim - len(idx) + 1)
        idx = idx[:e] + fill + idx[e + 1 :]
    idx = idx + (slice(None),) * (ndim - len(idx))
    steps = [s.step if s.step is not None else 1 for s in idx[-2:]]
    if any(not isinstance(s, int) or s < 1 for s in steps):
        return None
    return steps[0], steps[1]
