"""Formatting a Report: a plain-text table with a totals footer, or JSON."""

from __future__ import annotations

import json
from typing import Any

from netdsl.analysis.counts import Report, Row
from netdsl.errors import did_you_mean, input_error
from netdsl.layers.base import Shape

COLUMNS = {
    "input": "Input shape",
    "output": "Output shape",
    "params": "Params",
    "trainable": "Trainable",
    "buffers": "Buffers",
    "macs": "MACs",
    "connected": "Connected to",
}
"""The columns `summarize --columns` may choose, with their headings; Layer and Type always come first."""
DEFAULT_COLUMNS = ("output", "params", "macs")
NUMERIC = ("params", "trainable", "buffers", "macs")


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


def parse_columns(text: str) -> tuple[str, ...]:
    """`--columns input,output,params`: the chosen columns in order, or a one-line error naming the bad one."""
    names = tuple(word.strip() for word in text.split(","))
    choices = ", ".join(COLUMNS)
    for name in names:
        if not name:
            raise input_error("--columns", f"an empty column name in '{text}'; give names separated by commas, from: {choices}")
        if name not in COLUMNS:
            raise input_error("--columns", f"unknown column '{name}'{did_you_mean(name, COLUMNS)} (columns: {choices})")
    repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if repeated:
        raise input_error("--columns", f"column '{repeated}' is given twice")
    return names


def _cell(r: Row, column: str) -> str:
    if column == "input":
        return ", ".join(shape_text(s) for s in r.input_shapes)
    if column == "output":
        return shape_text(r.output_shape)
    if column == "connected":
        return ", ".join(r.connected)
    return f"{getattr(r, column):,}"


def _total_cell(report: Report, column: str) -> str:
    if column == "output":
        return shape_text(report.output_shape)
    return f"{getattr(report, column):,}" if column in NUMERIC else ""


def render_table(report: Report, input_rule: object = None, columns: tuple[str, ...] = DEFAULT_COLUMNS) -> str:
    """The summary table with the chosen columns: every numeric column sums to the Total row and the footer."""
    headers = ("Layer", "Type", *(COLUMNS[c] for c in columns))
    body: list[tuple[str, ...]] = []
    for r in report.rows:
        indent = "  " * (r.depth - 1)
        if r.is_header:
            body.append((indent + r.name, r.type, *("" for _ in columns)))
        else:
            frozen = " (frozen)" if r.trainable < r.params else ""
            output = f" (output {r.output})" if r.output else ""
            body.append((indent + r.name, r.type + frozen + output, *(_cell(r, c) for c in columns)))
    total = ("Total", "", *(_total_cell(report, c) for c in columns))
    widths = [max(len(h), *(len(row[i]) for row in [*body, total])) for i, h in enumerate(headers)]
    right = (False, False, *(c in NUMERIC for c in columns))

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
    if report.batch_memory is not None:
        lines += _batch_lines(report)
    if input_rule is not None:
        lines.append(f"Accepted input sizes: {input_rule} (from the shape rules)")
    return "\n".join(lines) + "\n"


def _batch_lines(report: Report) -> list[str]:
    """Memory for a batch: inference, and the training breakdown when it was asked for."""
    b, m = report.batch_memory, report.memory
    assert b is not None
    lines = [
        f"Memory for a batch of {b.batch} (float32, inference): input {human_bytes(b.batch * m.input_bytes)}, "
        f"activations {human_bytes(b.batch * m.activation_bytes)}, params {human_bytes(m.param_bytes)}, "
        f"buffers {human_bytes(m.buffer_bytes)}, total {human_bytes(b.inference_bytes)}"
    ]
    t = b.training
    if t is not None:
        states = f"{t.state_per_param} state tensor{'s' * (t.state_per_param != 1)} per trainable parameter"
        lines.append(f"Training memory for a batch of {b.batch} (float32; optimizer {t.optimizer}, {states}): {human_bytes(t.total_bytes)}")
        lines.append(
            f"  activations kept for backward {human_bytes(t.saved_bytes)}, params {human_bytes(t.param_bytes)}, "
            f"gradients {human_bytes(t.gradient_bytes)}, optimizer state {human_bytes(t.optimizer_bytes)}, buffers {human_bytes(t.buffer_bytes)}"
        )
    return lines


def _outputs_text(report: Report) -> str:
    if len(report.outputs) <= 1:
        return f"output {shape_text(report.output_shape)}"
    return "outputs " + ", ".join(f"{o.name} {shape_text(o.shape)}" for o in report.outputs)


def report_dict(report: Report, input_rule: object = None) -> dict[str, Any]:
    """The machine-readable summary (`summarize --json`)."""
    m = report.memory
    out = {
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
                "input_shapes": [list(x) for x in r.input_shapes],
                "output_shape": list(r.output_shape),
                "connected": list(r.connected),
                "params": r.params,
                "trainable": r.trainable,
                "buffers": r.buffers,
                "macs": r.macs,
            }
            for r in report.rows
            if not r.is_header
        ],
    }
    if report.batch_memory is not None:
        out["batch_memory"] = _batch_dict(report)
    return out


def _batch_dict(report: Report) -> dict[str, Any]:
    b = report.batch_memory
    assert b is not None
    out: dict[str, Any] = {"batch": b.batch, "inference_bytes": b.inference_bytes, "training": None}
    t = b.training
    if t is not None:
        out["training"] = {
            "optimizer": t.optimizer,
            "state_per_param": t.state_per_param,
            "saved_activation_bytes": t.saved_bytes,
            "param_bytes": t.param_bytes,
            "gradient_bytes": t.gradient_bytes,
            "optimizer_bytes": t.optimizer_bytes,
            "buffer_bytes": t.buffer_bytes,
            "total_bytes": t.total_bytes,
        }
    return out


def render_json(report: Report, input_rule: object = None) -> str:
    return json.dumps(report_dict(report, input_rule), indent=2) + "\n"
