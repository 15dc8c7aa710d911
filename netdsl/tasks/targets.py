"""What a task needs as y from a source, and the located error when data does not fit. Torch-free: tasks and `netdsl
infer` import it without torch."""

from __future__ import annotations

from dataclasses import dataclass

from netdsl.errors import Diagnostic, SpecError, given_loc

TARGET_KINDS = ("class", "mask", "input", "values", "multihot")


@dataclass(frozen=True)
class Targets:
    """What a task needs as y from a source (the task decides; the source reads it).

    | kind | y per batch |
    |---|---|
    | class | int64 N (class indices) |
    | mask | int64 N x H x W (a class index per pixel; `ignore_index` marks pixels left out), H x W = the input's |
    | input | whatever labels the source has (int64 N, zeros when it has none): the target is the input itself |
    | values | float32 N x `shape` (regression targets) |
    | multihot | float32 N x classes, 0 or 1 (multilabel) |
    """

    kind: str = "class"
    shape: tuple[int, ...] = ()  # the per-sample target shape the network's output asks for (values, multihot)
    classes: int | None = None  # mask / multihot: the number of classes the network outputs
    ignore_index: int | None = None  # mask: the value of pixels that count for nothing (e.g. 255)
    output_at: str = ""  # where the network's last layer is written (`spec.yaml:12:5 conv2d 'head'`), for errors about the shapes


class DataError(SpecError):
    """Data cannot be read or does not fit the spec (a one-line located error, like a spec error)."""


def fail(where: str, message: str) -> DataError:
    """A data problem located at a file (`path:1:1`), a setting, or an option as itself (`--shard-size: ...`)."""
    return DataError([Diagnostic(given_loc(where), message)])
