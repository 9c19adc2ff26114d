"""Per-layer model summary: output shapes, parameters, MACs and receptive fields.

Handbook §2.3 (conv arithmetic), §3.1.1 (receptive field), §3.2 (layer tables of Alex-Net and
VGG-16). One forward pass under ``torch.no_grad()`` in eval mode collects everything at once:

- module hooks give the rows, in execution order: one per call of a module that did work of its
  own (every leaf module, parameter-free ones included; a container only if it has direct
  parameters or runs a matmul-like op in its own forward code). A module called twice gives
  two rows (``call_index`` 1 and 2);
- ``torch.utils.flop_counter.FlopCounterMode`` counts the multiply-adds of the matmul-like ops
  (convolutions, linear layers, matmuls, attention; not elementwise ops, BN or pooling). A row's
  MACs are the FLOPs counted while its module ran, minus its child modules', / 2 / batch size;
- ``FieldTracker`` follows the data flow op by op for receptive fields and jumps, so additions
  and concatenations in ``forward`` code take the largest field of their inputs, and models that
  ``torch.fx`` cannot trace (data-dependent control flow) need no fallback. Once a tensor loses
  its spatial layout (global pooling to 1x1, flatten, linear) its rf and jump are the input size.

Tip: build a very large model under ``with torch.device("meta"):``; the summary then only
propagates shapes (no weight initialisation, no arithmetic) and gives the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.inspect.receptive import Field, FieldTracker, apply_window, iter_tensors
from cnnlab.inspect.table import format_summary_table

Pair = tuple[int, int]
Size = int | Pair


@dataclass
class LayerInfo:
    """One row of a summary: one call of a module that did work of its own."""

    name: str  # qualified module name, e.g. "layer1.0.conv1" ("" for the model itself)
    type: str  # class name
    output_shape: tuple[int, ...]  # without the batch dimension
    params: int  # the module's own direct parameters (not its children's)
    macs: int  # multiply-adds per image
    receptive_field: Size | None  # side of the input region one output unit sees, in pixels
    jump: Size | None  # input pixels between adjacent output units (product of strides)
    call_index: int = 1  # > 1 when the same module runs again (shared / reused module)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict with the keys name, type, output_shape, params, macs, rf, jump."""
        return {
            "name": self.name,
            "type": self.type,
            "output_shape": list(self.output_shape),
            "params": self.params,
            "macs": self.macs,
            "receptive_field": _jsonable(self.receptive_field),
            "jump": _jsonable(self.jump),
        }


@dataclass
class ModelSummary:
    """Per-layer table and totals returned by :func:`summary`."""

    layers: list[LayerInfo]
    params: int  # all parameters, shared ones counted once
    trainable_params: int
    macs: int  # multiply-adds per image
    input_size: tuple[int, int, int]
    output_shape: tuple[int, ...] = ()
    receptive_field: Size | None = None  # of the model's output
    jump: Size | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: params, macs, layers, input_size, trainable_params, output_shape."""
        return {
            "params": self.params,
            "macs": self.macs,
            "layers": [layer.to_dict() for layer in self.layers],
            "input_size": list(self.input_size),
            "trainable_params": self.trainable_params,
            "output_shape": list(self.output_shape),
        }

    def format_table(self) -> str:
        """Aligned text table with one row per layer, a totals block and any notes."""
        return format_summary_table(self)

    def __str__(self) -> str:
        return self.format_table()


def _jsonable(value: Size | None) -> int | list[int] | None:
    return list(value) if isinstance(value, tuple) else value


def _size(pair: Pair) -> Size:
    return pair[0] if pair[0] == pair[1] else pair


@dataclass
class _Frame:
    name: str
    start_flops: int
    in_field: Field | None
    in_hw: tuple[int, ...] | None  # spatial size of the first input (rank >= 4 only)
    unmodelled: int  # tracker counters when the call started
    notes: int
    child_flops: int = 0
    had_child: bool = False


class _Recorder:
    """Forward hooks on every module; turns module calls into ``LayerInfo`` rows."""

    def __init__(self, model: nn.Module, tracker: FieldTracker, counter: FlopCounterMode) -> None:
        self.tracker, self.counter = tracker, counter
        self.stack: list[_Frame] = []
        self.rows: list[tuple[LayerInfo, int]] = []  # (row, own FLOPs for the whole batch)
        self.calls: dict[int, int] = {}
        self.handles = []
        for name, module in model.named_modules():
            self.handles.append(module.register_forward_pre_hook(partial(self._pre, name)))
            self.handles.append(module.register_forward_hook(partial(self._post, name)))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def _pre(self, name: str, module: nn.Module, args: tuple) -> None:
        first = next(iter_tensors(args), None)
        in_hw = tuple(first.shape[-2:]) if first is not None and first.dim() >= 4 else None
        t = self.tracker
        flops = self.counter.get_total_flops()
        self.stack.append(_Frame(name, flops, t.field_of(args), in_hw, t.unmodelled, len(t.notes)))
        t.scope = name

    def _post(self, name: str, module: nn.Module, args: tuple, output: Any) -> None:
        frame = self.stack.pop()
        spent = self.counter.get_total_flops() - frame.start_flops
        own_flops = spent - frame.child_flops
        own_params = sum(p.numel() for p in module.parameters(recurse=False))
        is_row = not frame.had_child or own_flops > 0 or own_params > 0
        out_field = self._output_field(module, frame, output) if is_row else None
        if self.stack:
            parent = self.stack[-1]
            parent.child_flops += spent
            parent.had_child = True
            self.tracker.scope = parent.name
        if not is_row:
            return  # a pure container: its children are the rows
        self.calls[id(module)] = self.calls.get(id(module), 0) + 1
        row = LayerInfo(
            name=name,
            type=type(module).__name__,
            output_shape=next((tuple(t.shape[1:]) for t in iter_tensors(output)), ()),
            params=own_params,
            macs=0,  # set once divided by the batch size
            receptive_field=_size(out_field.rf) if out_field else None,
            jump=_size(out_field.jump) if out_field else None,
            call_index=self.calls[id(module)],
        )
        self.rows.append((row, own_flops))

    def _output_field(self, module: nn.Module, frame: _Frame, output: Any) -> Field | None:
        """Output field; a leaf module's own rule wins when its inner ops cannot be followed.

        A custom leaf with ``kernel_size`` (e.g. an unfold-based pooling) is a window layer; a
        leaf whose inner reshapes were not modelled (e.g. a channel LRN that pools over a
        reshaped tensor) but keeps the spatial size is treated as per-position.
        """
        t = self.tracker
        if next(module.children(), None) is not None or frame.in_field is None:
            return t.field_of(output)
        out = next(iter_tensors(output), None)
        out_hw = tuple(out.shape[-2:]) if out is not None and out.dim() >= 4 else None
        kernel = getattr(module, "kernel_size", None)
        if kernel is not None and not type(module).__module__.startswith("torch."):
            stride = getattr(module, "stride", None) or kernel
            result = apply_window(frame.in_field, kernel, stride, getattr(module, "dilation", 1))
            why = "rf and jump from its kernel_size/stride"
        elif t.unmodelled > frame.unmodelled and out_hw is not None and out_hw == frame.in_hw:
            result = frame.in_field
            why = "same spatial size in and out, so rf and jump pass through"
        else:
            return t.field_of(output)
        if t.unmodelled > frame.unmodelled:  # replace the inner notes by one for the module
            t.drop_notes_since(frame.notes)
            t.note(f"{type(module).__name__}: inner reshapes not followed; {why}", unmodelled=False)
        t.set_field(output, result)
        return result


def _check_args(model: Any, input_size: Any, batch_size: Any) -> tuple[int, int, int]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"summary: model must be a torch.nn.Module, got {type(model).__name__}")
    ok = isinstance(input_size, (tuple, list)) and len(input_size) == 3
    if not ok or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_size
    ):
        raise ValueError(
            f"summary: input_size must be (channels, height, width) of positive ints, "
            f"got {input_size!r}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"summary: batch_size must be a positive int, got {batch_size!r}")
    return tuple(input_size)  # type: ignore[return-value]


def _placement(model: nn.Module, device: Any) -> tuple[torch.device, torch.dtype]:
    tensors = [*model.parameters(), *model.buffers()]
    floats = [t for t in tensors if t.is_floating_point()]
    dtype = floats[0].dtype if floats else torch.float32
    if device is None:
        device = tensors[0].device if tensors else torch.device("cpu")
    return torch.device(device), dtype


def summary(
    model: nn.Module,
    input_size: tuple[int, int, int],
    *,
    batch_size: int = 1,
    device: torch.device | str | None = None,
) -> ModelSummary:
    """Summarise ``model`` on a random input of shape ``(batch_size, *input_size)``.

    Handbook §2.3 and §3.1.1. The model is left as it was: it runs once in eval mode under
    ``torch.no_grad()``, every module's train/eval flag is restored and all hooks are removed.
    ``device`` is where the input is created (default: where the model's parameters are); the
    model itself is never moved. MACs are per image whatever ``batch_size`` is.
    """
    input_size = _check_args(model, input_size, batch_size)
    device, dtype = _placement(model, device)
    gen = torch.Generator().manual_seed(0)  # leaves the global RNG alone
    x = torch.randn((batch_size, *input_size), generator=gen, dtype=dtype).to(device)
    tracker = FieldTracker((input_size[1], input_size[2]))
    counter = FlopCounterMode(display=False)
    recorder = _Recorder(model, tracker, counter)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad(), counter, tracker:
            tracker.mark_input(x)
            output = model(x)
            out_field = tracker.field_of(output)
    except Exception as err:
        raise ValueError(
            f"summary: forward pass of {type(model).__name__} failed on an input of shape "
            f"{tuple(x.shape)} (batch, channels, height, width): {err}"
        ) from err
    finally:
        recorder.remove()
        for module, training in modes.items():
            module.training = training
    return _build(model, input_size, batch_size, recorder, counter, tracker, output, out_field)


def _build(model, input_size, batch_size, recorder, counter, tracker, output, out_field):
    """Assemble the ``ModelSummary`` from what the hooks, counter and tracker recorded."""
    notes = list(tracker.notes)
    per_image = 2 * batch_size  # FLOPs -> multiply-adds, batch -> one image
    for row, flops in recorder.rows:
        row.macs = flops // per_image
    total_flops = counter.get_total_flops()
    if total_flops % per_image:
        notes.append(f"FLOPs {total_flops} not divisible by 2 x batch {batch_size}; rounded down")
    params = list(model.parameters())  # shared parameters appear once
    return ModelSummary(
        layers=[row for row, _ in recorder.rows],
        params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        macs=total_flops // per_image,
        input_size=input_size,
        output_shape=next((tuple(t.shape[1:]) for t in iter_tensors(output)), ()),
        receptive_field=_size(out_field.rf) if out_field else None,
        jump=_size(out_field.jump) if out_field else None,
        notes=notes,
    )
