"""`source: csv`: a table with a header row and one sample per row, for features and short sequences.

`label_column` (default "label") holds the targets; every other column is a feature, in file order. A row's
features are reshaped to the spec's input: F columns for an F input, C * L columns for a C x L input (channel-major:
the first L columns are channel 0), C * H * W for an image input. Labels: with a classification task, integers
are class indices (classes "0" .. the highest) and any other text is a class name (classes sorted by name); with
a regression task they are numbers; when the input is the target, the label column is optional.

The whole table is read once, row by row, into float32: tables are small. Files over 1 GB are refused with a
pointer to x.npy and y.npy, which source npy memory-maps.
"""

from __future__ import annotations

import csv
import math
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netdsl.errors import did_you_mean
from netdsl.tasks.targets import Targets
from netdsl.train.fitting import shape_text
from netdsl.train.splits import fail

CSV_LIMIT = 1 << 30  # bytes read into memory at most


@dataclass
class Table:
    """A CSV's features (float32 N x features) and its label column as text (None without one)."""

    x: np.ndarray
    labels: list[str] | None


def read_table(path: Path, label_column: str, required: bool) -> Table:
    """The features and labels of a CSV file; a one-line error for a missing label column or a cell that is not a number."""
    size = path.stat().st_size
    if size > CSV_LIMIT:
        raise fail(
            str(path),
            f"{size / 1e9:.1f} GB is too much for source csv, which reads the whole table into memory (it is meant for small tables): "
            "save larger data as x.npy and y.npy in a folder and use source: npy (memory-mapped)",
        )
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return parse_table(path, csv.reader(f), label_column, required)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise fail(str(path), f"not a readable CSV file (UTF-8 text, comma-separated): {exc}") from None


def parse_table(path: Path, rows: Any, label_column: str, required: bool) -> Table:
    """A csv.reader's rows (the header first) as a Table, converted row by row."""
    header = [h.strip() for h in next(rows, [])]
    if not header:
        raise fail(str(path), "the file is empty; expected a header row naming the columns, then one sample per row")
    if label_column not in header and required:
        columns = ", ".join(header[:8]) + (", ..." if len(header) > 8 else "")
        hint = did_you_mean(label_column, header) or "; name the label column in train.data.label_column"
        raise fail(str(path), f"no label column '{label_column}' (columns: {columns}){hint}")
    at = header.index(label_column) if label_column in header else None
    names = [h for i, h in enumerate(header) if i != at]
    if not names:
        raise fail(str(path), f"no feature columns besides the label column '{label_column}'")
    features = array("f")
    labels: list[str] = []
    for row in rows:
        if not row:
            continue
        if len(row) != len(header):
            raise fail(str(path), f"line {rows.line_num}: {len(row)} values, but the header names {len(header)} columns")
        if at is not None:
            labels.append(row.pop(at).strip())
        try:
            features.extend(float(v) for v in row)
        except ValueError:
            column, value = next((n, v) for n, v in zip(names, row) if not is_number(v))
            raise fail(str(path), f"line {rows.line_num}, column '{column}': {value.strip()!r} is not a number") from None
    x = np.frombuffer(features, dtype=np.float32).reshape(-1, len(names))
    return Table(x, labels if at is not None else None)


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def features_as_input(where: str, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """N x features reshaped to N x the spec's input (channel-major for C x L)."""
    if x.shape[1] != math.prod(shape):
        layout = " (C x L: C * L columns, the first L are channel 0)" if len(shape) == 2 else ""
        raise fail(where, f"{x.shape[1]} feature columns, but the spec's input {shape_text(shape)} needs {math.prod(shape)}{layout}")
    return x.reshape(len(x), *shape)


def class_labels(where: str, labels: list[str], classes: list[str] | None) -> tuple[np.ndarray, list[str]]:
    """Class indices and names: integers as indices, other text as names (sorted); `classes` (the training split's) fixes them."""
    if classes is None:
        if all(v.isdigit() for v in labels):
            y = np.array([int(v) for v in labels], dtype=np.int64)
            return y, [str(c) for c in range(int(y.max()) + 1 if len(y) else 0)]
        classes = sorted(set(labels))
    index = {c: i for i, c in enumerate(classes)}
    unknown = next((v for v in labels if v not in index), None)
    if unknown is not None:
        raise fail(where, f"label '{unknown}' is not a class of the training data ({', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''})")
    return np.array([index[v] for v in labels], dtype=np.int64), classes


def value_labels(where: str, labels: list[str], targets: Targets) -> np.ndarray:
    """Regression targets from the label column: one number per sample."""
    if targets.shape not in ((), (1,)):
        raise fail(where, f"the label column gives 1 value per sample, but the network outputs {shape_text(targets.shape)} per sample")
    bad = next((v for v in labels if not is_number(v)), None)
    if bad is not None:
        raise fail(where, f"label {bad!r} is not a number (a regression task needs numbers)")
    return np.array([float(v) for v in labels], dtype=np.float32).reshape(len(labels), *targets.shape)


def read_csv(path: Path, shape: tuple[int, ...], targets: Targets, label_column: str, classes: list[str] | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(x at the input's shape, y for the task, class names) of one CSV file; `classes` are the training file's."""
    table = read_table(path, label_column, required=targets.kind != "input")
    x = features_as_input(str(path), table.x, shape)
    if table.labels is None:
        return x, np.zeros(len(x), np.int64), []
    if targets.kind == "values":
        return x, value_labels(str(path), table.labels, targets), []
    y, names = class_labels(str(path), table.labels, classes)
    return x, y, names
