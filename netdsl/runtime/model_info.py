"""What an exported model says about itself: the ONNX metadata netdsl writes and reads back.

A string is stored as itself (`name` -> `small_cnn`); lists, dicts, numbers and null as JSON. Files written by
netdsl before that stored every value as JSON (`name` -> `"small_cnn"`); both are read.

Kept free of torch, onnx and onnxruntime so that both the exporter and the runtime share one definition.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from netdsl.ir import Graph

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
MODEL_VERSION = 1  # the ONNX model_version of this metadata layout


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: its name, shape ('batch' where dynamic) and element type."""

    name: str
    shape: list[int | str]
    dtype: str = "float32"


@dataclass(frozen=True)
class ModelInfo:
    """The metadata of a netdsl export; every field under its own key, a string as itself and anything else as JSON."""

    netdsl_version: str
    name: str
    spec: str  # the resolved flat spec (`netdsl expand`): loads to the same graph without the original files
    spec_sha256: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    precision: str = "fp32"
    exporter: str = "dynamo"
    weights: str = ""  # where the weights came from, or "random initialization (seed N)"
    classes: list[str] | None = None
    normalize: dict[str, list[float]] | None = field(default=None)  # {"mean": [...], "std": [...]} per channel
    task: dict[str, Any] | None = None  # train.task as settled: {"name": "segmentation", "ignore_index": 255}; None: classification
    # int8 only: {"samples": 256, "source": "train split of SPEC", "format": "QDQ", "activations": "uint8", "weights": "int8 (7-bit range), per channel"}
    calibration: dict[str, Any] | None = None

    def to_metadata(self) -> dict[str, str]:
        """Key -> text, for ModelProto.metadata_props: a string as itself, any other value as JSON."""
        return {key: value if isinstance(value, str) else json.dumps(value) for key, value in asdict(self).items()}

    @classmethod
    def from_metadata(cls, props: Mapping[str, str]) -> ModelInfo | None:
        """The info stored by netdsl (either layout), or None for a model that netdsl did not write."""
        strings = {"netdsl_version", "name", "spec", "spec_sha256", "precision", "exporter", "weights"}
        # a version number never starts with a quote: the earlier layout, with every value JSON-encoded
        all_json = props.get("netdsl_version", "").startswith('"')
        try:
            values: dict[str, Any] = {
                key: props[key] if key in strings and not all_json else json.loads(props[key]) for key in cls.__dataclass_fields__ if key in props
            }
            if any(not isinstance(values.get(key, ""), str) for key in strings):
                return None
            values["inputs"] = [TensorInfo(**t) for t in values["inputs"]]
            values["outputs"] = [TensorInfo(**t) for t in values["outputs"]]
            return cls(**values)
        except (KeyError, TypeError, ValueError):
            return None


def spec_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def settled_task(given: Any) -> dict[str, Any] | None:
    """`train.task` as the trainer settles it, {"name": ..., each option's default filled in}; None if it names no known task."""
    from netdsl.tasks import TASKS

    settings = {"name": given} if isinstance(given, str) else dict(given) if isinstance(given, Mapping) else {}
    name = settings.get("name")
    cls = TASKS.get(name) if isinstance(name, str) else None
    if cls is None:
        return None
    for key, schema in cls.options.items():
        if key not in settings and "default" in schema:
            settings[key] = schema["default"]
    return settings


def inferred_task(graph: Graph) -> dict[str, Any] | None:
    """The task the trainer infers from the output's shape when a spec sets none, settled; None where it cannot tell."""
    from netdsl.errors import SpecError
    from netdsl.tasks import infer_task

    try:
        name, _ = infer_task(graph)
    except SpecError:
        return None
    return settled_task(name)
