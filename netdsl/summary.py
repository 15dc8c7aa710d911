"""Formatting a Report: a plain-text table with a totals footer, or JSON."""

from __future__ import annotations

import json
from typing import Any

from netdsl.analysis import Report
from netdsl.layers.base import Shape


def shape_text(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23 M'."""
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {suffix}{unit}"
    return f"{n:g} {unit}".rstrip()


def human_bytes(n: int) -> str:
    for factor, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= factor:
            return f"{n / factor:.2f} {suffix}"
    return f"{n} B"


def render_table(report: Report, input_rule: object = None) -> str:
    """The summary table: every numeric column sums to the Total row and the footer."""
    headers = ("Layer", "Type", "Output shape", "Params", "MACs")
    body: list[tuple[str, ...]] = []
    for r in report.rows:
        indent = "  " * (r.depth - 1)
        if r.is_header:
            body.append((indent + r.name, r.type, "", "", ""))
        else:
            frozen = " (frozen)" if r.trainable < r.params else ""
            output = f" (output {r.output})" if r.output else ""
            body.append((indent + r.name, r.type + frozen + output, shape_text(r.output_shape), f"{r.params:,}", f"{r.macs:,}"))
    total = ("Total", "", shape_text(report.output_shape), f"{report.params:,}", f"{report.macs:,}")
    widths = [max(len(h), *(len(row[i]) for row in [*body, total])) for i, h in enumerate(headers)]
    right = (False, False, False, True, True)

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    m = report.memory
    lines = [
        f"{report.name}: input {shape_text(report.input_shape)} -> {_outputs_text(report)} (per sample; batch N)",
        line(headers),
        rule,
        *(line(row) for row in body),
        rule,
        line(total),
        "",
        f"Params: {report.params:,} total, {report.trainable:,} trainable, {report.frozen:,} frozen",
        f"Buffers: {report.buffers:,} elements (not parameters: BatchNorm running statistics)",
        f"MACs per sample: {report.macs:,} ({human(report.macs)}); conv, linear and attention products, as torchvision counts them",
        (
            f"Memory per sample (float32): input {human_bytes(m.input_bytes)}, activations {human_bytes(m.activation_bytes)}, "
            f"params {human_bytes(m.param_bytes)}, buffers {human_bytes(m.buffer_bytes)}, total {human_bytes(m.total_bytes)}"
        ),
    ]
    if input_rule is not None:
        lines.append(f"Accepted input sizes: {input_rule} (from the shape rules)")
    return "\n".join(lines) + "\n"


def _outputs_text(report: Report) -> str:
    if len(report.outputs) <= 1:
        return f"output {shape_text(report.output_shape)}"
    return "outputs " + ", ".join(f"{o.name} {shape_text(o.shape)}" for o in report.outputs)


def report_dict(report: Report, input_rule: object = None) -> dict[str, Any]:
    """The machine-readable summary (`summarize --json`)."""
    m = report.memory
    return {
        "name": report.name,
        "input_shape": list(report.input_shape),
        "output_shape": list(report.output_shape),
        "outputs": [{"name": o.name, "layer": o.layer, "shape": list(o.shape)} for o in report.outputs],
        "params": {"total": report.params, "trainable": report.trainable, "frozen": report.frozen},
        "buffers": report.buffers,
        "macs": report.macs,
        "memory": {
            "input_bytes": m.input_bytes,
            "activation_bytes": m.activation_bytes,
            "param_bytes": m.param_bytes,
            "buffer_bytes": m.buffer_bytes,
            "total_bytes": m.total_bytes,
        },
        "accepted_input": None if input_rule is None else str(input_rule),
        "layers": [
            {
                "name": r.name,
                "type": r.type,
                "output_shape": list(r.output_shape),
                "params": r.params,
                "trainable": r.trainable,
                "buffers": r.buffers,
                "macs": r.macs,
            }
            for r in report.rows
            if not r.is_header
        ],
    }


def render_json(report: Report, input_rule: object = None) -> str:
    return json.dumps(report_dict(report, input_rule), indent=2) + "\n"
