"""y as the task asks for it (`targets.Targets`), made from what a source read, and checked a batch at a time.

| kind | stored (npz/npy array `y`; files) | y per batch |
|---|---|---|
| class | N integers (or N x 1) | int64 N |
| mask | N x H x W (or N x 1 x H x W) integers; palette or greyscale mask images | int64 N x H x W at the input's H x W |
| input | N labels, or nothing | int64 N (zeros without labels) |
| values | N x *shape numbers (N alone for one value per sample) | float32 N x shape |
| multihot | N x classes of 0 and 1 | float32 N x classes |

Shapes are checked when a source is opened (from the arrays' headers); values (a mask pixel >= the class count,
a multilabel target that is not 0 or 1) where a batch is read, in the DataLoader workers, so no source scans the
whole data set up front.
"""

from __future__ import annotations

import numpy as np
import torch

from netdsl.tasks.targets import Targets
from netdsl.train.fitting import fit_mask, shape_text
from netdsl.train.splits import DataError, fail

#: the default: one class index per sample
CLASS_TARGETS = Targets()

#: what each kind of target is called in messages
KIND_WORDS = {
    "class": "class labels",
    "mask": "masks",
    "input": "inputs as targets",
    "values": "values (regression targets)",
    "multihot": "0/1 label vectors (multilabel targets)",
}


class BadTarget(Exception):
    """A sample's target that the task cannot use; `index` is the sample's position in its batch."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def mask_problem(value: int, targets: Targets) -> str:
    """Why a mask value is not a class index, with the class count and ignore_index the task has."""
    if targets.classes is not None:
        allowed = f"the network outputs {targets.classes} classes, 0 .. {targets.classes - 1}"
    else:
        allowed = "class indices are 0 or more"
    ignore = f"; ignore_index is {targets.ignore_index}" if targets.ignore_index is not None else "; train.task.ignore_index marks pixels to leave out"
    return f"mask value {value} is not a class index ({allowed}{ignore})"


def check_masks(masks: torch.Tensor, targets: Targets) -> None:
    """Raise BadTarget for the first sample with a pixel that is neither a class index nor ignore_index."""
    bad = masks < 0
    if targets.classes is not None:
        bad |= masks >= targets.classes
    if targets.ignore_index is not None:
        bad &= masks != targets.ignore_index
    if not bool(bad.any()):
        return
    i = int(bad.flatten(1).any(1).nonzero()[0, 0])
    raise BadTarget(i, mask_problem(int(masks[i][bad[i]][0]), targets))


def masks_from_rows(rows: np.ndarray, size: tuple[int, ...], targets: Targets) -> torch.Tensor:
    """Stored masks (N x h x w or N x 1 x h x w, any integer type) checked and fitted to the input's H x W (nearest)."""
    if rows.ndim == 4:
        rows = rows[:, 0]
    if rows.dtype.kind == "f":
        whole = np.isfinite(rows) & (np.mod(rows, 1) == 0)
        if not whole.all():
            i = int(np.flatnonzero(~whole.reshape(len(rows), -1).all(1))[0])
            raise BadTarget(i, f"mask value {rows[i][~whole[i]][0]:g} is not a class index (masks hold integers)")
    masks = torch.from_numpy(rows.astype(np.int64))
    check_masks(masks, targets)
    return fit_mask(masks, size)


def multihot_from_rows(rows: np.ndarray) -> torch.Tensor:
    """Stored 0/1 label vectors as float32, checked."""
    y = torch.from_numpy(rows.astype(np.float32))
    bad = (y != 0) & (y != 1)
    if bool(bad.any()):
        i = int(bad.any(1).nonzero()[0, 0])
        raise BadTarget(i, f"multilabel target {float(y[i][bad[i]][0]):g} is not 0 or 1")
    return y


def last_layer(targets: Targets) -> str:
    return f" (its last layer: {targets.output_at})" if targets.output_at else ""


def check_target_array(where: str, y_shape: tuple[int, ...], dtype: np.dtype, input_shape: tuple[int, ...], targets: Targets) -> tuple[int, ...]:
    """The per-sample shape of y's batches for a mask, values or multihot task, from y's header; a one-line error when
    the array cannot give those targets."""
    per_sample = y_shape[1:]
    if dtype.kind not in "iubf":
        raise fail(where, f"y holds {dtype} values; {KIND_WORDS[targets.kind]} are numbers")
    if targets.kind == "mask":
        if len(input_shape) != 3:
            raise fail("train.data", f"masks need an image input (C x H x W); the spec's input is {shape_text(input_shape)}")
        if len(per_sample) == 3 and per_sample[0] == 1:
            per_sample = per_sample[1:]
        if len(per_sample) != 2:
            raise fail(where, f"y is {shape_text(y_shape)}; masks are N x H x W (or N x 1 x H x W) class indices")
        return per_sample
    if targets.kind == "values":
        want = targets.shape
        if not want or per_sample == want or (not per_sample and want == (1,)):
            return want or per_sample
        got = shape_text(per_sample) if per_sample else "1"
        raise fail(where, f"y is {shape_text(y_shape)}, {got} per sample, but the network outputs {shape_text(want)} per sample{last_layer(targets)}")
    classes = targets.classes or (targets.shape[0] if targets.shape else None)
    if len(per_sample) != 1 or (classes is not None and per_sample[0] != classes):
        need = f"N x {classes}" if classes is not None else "N x classes"
        raise fail(where, f"y is {shape_text(y_shape)}, but multilabel targets are {need} (0 or 1 for each class the network outputs){last_layer(targets)}")
    return per_sample


def read_labels(where: str, y: np.ndarray) -> np.ndarray:
    """Class labels as int64 N: one integer per sample (N or N x 1), never flattened across samples."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise fail(
            where,
            f"y is {shape_text(y.shape)}, {shape_text(y.shape[1:]) or 'a scalar'} per sample; class labels are one integer per sample "
            "(per-pixel labels are masks: train.task segmentation)",
        )
    if y.dtype.kind not in "iub":
        if y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0):
            return y.astype(np.int64)
        raise fail(where, f"y holds {y.dtype} values; class labels are integers 0 .. classes - 1")
    return y.astype(np.int64)


def input_labels(where: str, y: np.ndarray | None) -> tuple[np.ndarray | None, list[str]]:
    """Labels kept beside the input when the input is the target: y's class labels where it holds them, else None
    (with a note saying y was not used)."""
    if y is None:
        return None, []
    try:
        return read_labels(where, y), []
    except DataError as exc:  # y is not class labels, and the task does not need it
        why = exc.diagnostics[0].message.split(";")[0]
        return None, [f"{where}: y is not used ({why}); the target is the input"]
