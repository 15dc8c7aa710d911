"""Formatting a Report: a plain-text table with a totals footer, or JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from netdsl.analysis.counts import Report, Row
from netdsl.errors import Loc, did_you_mean, input_error
from netdsl.ir import Graph
from netdsl.layers.base import Shape

COLUMNS = {
    "input": "Input shape",
    "output": "Output shape",
    "params": "Params",
    "trainable": "Trainable",
    "buffers": "Buffers",
    "macs": "MACs",
    "connected": "Connected to",
    "source": "Source",
}
"""The columns `summarize --columns` may choose, with their headings; Layer and Type always come first."""
DEFAULT_COLUMNS = ("output", "params", "macs")
NUMERIC = ("params", "trainable", "buffers", "macs")


def shape_text(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def file_text(file: str) -> str:
    """A file's name as messages show it: relative to the current folder when that is shorter."""
    if not os.path.isabs(file) and not file.startswith(".."):
        return file
    try:
        relative = os.path.relpath(file)
    except ValueError:  # another drive (Windows)
        return file
    return relative if len(relative) < len(file) else file


def loc_text(loc: Loc) -> str:
    """`file:line` (a command-line argument: itself), the file as file_text shows it."""
    return loc.file if loc.line == 0 else f"{file_text(loc.file)}:{loc.line}"


def row_sources(graph: Graph) -> dict[str, str]:
    """Each node's and group's `file:line`, by the name its summary row has (a block's layers: in its library)."""
    shown: dict[str, str] = {}

    def text(loc: Loc) -> str:
        if loc.file not in shown:
            shown[loc.file] = file_text(loc.file)
        return loc.file if loc.line == 0 else f"{shown[loc.file]}:{loc.line}"

    out = {g.path: text(g.loc) for g in graph.groups}
    out.update((n.name, text(n.loc)) for n in graph.nodes)
    return out


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


def _cell(r: Row, column: str, sources: Mapping[str, str]) -> str:
    if column == "source":
        return sources.get(r.name, "")
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


def render_table(report: Report, input_rule: object = None, columns: tuple[str, ...] = DEFAULT_COLUMNS, sources: Mapping[str, str] | None = None) -> str:
    """The summary table with the chosen columns: every numeric column sums to the Total row and the footer.

    `sources`: each row's `file:line` by its name (row_sources), for the source column."""
    headers = ("Layer", "Type", *(COLUMNS[c] for c in columns))
    body: list[tuple[str, ...]] = []
    for r in report.rows:
        indent = "  " * (r.depth - 1)
        if r.is_header:
            body.append((indent + r.name, r.type, *("" for _ in columns)))
        else:
            frozen = " (frozen)" if r.trainable < r.params else ""
            output = f" (output {r.output})" if r.output else ""
            body.append((indent + r.name, r.type + frozen + output, *(_cell(r, c, sources or {}) for c in columns)))
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


def report_dict(report: Report, input_rule: object = None, sources: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The machine-readable summary (`summarize --json`); each layer's `source` is its `file:line` (row_sources)."""
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
                "source": (sources or {}).get(r.name),
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


def render_json(report: Report, input_rule: object = None, sources: Mapping[str, str] | None = None) -> str:
    return json.dumps(report_dict(report, input_rule, sources), indent=2) + "\n"
