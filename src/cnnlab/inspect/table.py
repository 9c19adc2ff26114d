"""Text rendering of a model summary: an aligned per-layer table plus totals (Handbook §3.2)."""

from __future__ import annotations

from typing import Any

# ``s`` below is a cnnlab.inspect.summary.ModelSummary (rows + totals); not imported, since the
# summary module imports this one to render itself.
ModelSummary = Any

_UNITS = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")]
_HEADER = ("#", "Layer", "Type", "Output shape", "Params", "MACs", "RF", "Jump")
_RIGHT = {0, 4, 5, 6, 7}  # right-aligned (numeric) columns


def human(n: int | float) -> str:
    """Compact count with a unit suffix: 1199882 -> '1.20M', 11992448 -> '11.99M'."""
    if abs(n) < 1000:
        return f"{n:g}" if isinstance(n, float) else str(n)
    for i, (scale, unit) in enumerate(reversed(_UNITS)):
        value = round(abs(n) / scale, 2)
        if value < 1000 or i == len(_UNITS) - 1:  # 999,999 rounds to 1.00M, not 1000.00K
            return f"{'-' if n < 0 else ''}{value:.2f}{unit}"
    raise AssertionError("unreachable")


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) if shape else "-"


def _size(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value[0]}x{value[1]}" if isinstance(value, tuple) else str(value)


def _rows(s: ModelSummary) -> list[tuple[str, ...]]:
    rows = []
    for i, layer in enumerate(s.layers, 1):
        name = layer.name or "(root)"
        if layer.call_index > 1:  # the same module object running again
            name += f" (call {layer.call_index})"
        rows.append(
            (
                str(i),
                name,
                layer.type,
                _shape(layer.output_shape),
                human(layer.params) if layer.params else "-",
                human(layer.macs) if layer.macs else "-",
                _size(layer.receptive_field),
                _size(layer.jump),
            )
        )
    return rows


def format_summary_table(s: ModelSummary) -> str:
    """The table, totals and notes of ``s`` as one string (no trailing newline)."""
    rows = [_HEADER, *_rows(s)]
    widths = [max(len(r[c]) for r in rows) for c in range(len(_HEADER))]

    def line(row: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(w) if c in _RIGHT else cell.ljust(w)
            for c, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "-" * len(line(tuple("x" * w for w in widths)))
    frozen = s.params - s.trainable_params
    out = [rule, line(rows[0]), rule, *(line(r) for r in rows[1:]), rule]
    out += [
        f"Total params:       {human(s.params)} ({s.params:,})",
        f"Trainable params:   {human(s.trainable_params)} ({s.trainable_params:,})",
        f"Non-trainable:      {human(frozen)} ({frozen:,})",
        f"MACs per image:     {human(s.macs)} ({s.macs:,}; {human(2 * s.macs)} FLOPs)",
        f"Input: {_shape(s.input_size)}   Output: {_shape(s.output_shape)}   "
        f"Output RF: {_size(s.receptive_field)} (jump {_size(s.jump)})",
    ]
    if s.notes:
        out += ["Notes:", *(f"  - {n}" for n in s.notes)]
    return "\n".join(out)
