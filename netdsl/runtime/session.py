"""onnxruntime sessions that say which execution provider really runs them.

onnxruntime-gpu lists TensorRT and CUDA among its available providers even on a machine without a GPU, and a
session that asked for one it could not start quietly runs on the CPU. So the provider is read back from
the session after it is created: `auto` reports what it got, an explicit request that did not stick is an error.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netdsl.errors import input_error
from netdsl.runtime.model_info import ModelInfo

PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
CHOICES = ("auto", *PROVIDERS)  # `auto` tries them in this order: fastest first
ORT_LOG_WARNING, ORT_LOG_FATAL = 2, 4


@dataclass
class Model:
    """A loaded model: its session, the provider that runs it, and its netdsl metadata (None if foreign)."""

    path: str
    session: Any  # onnxruntime.InferenceSession
    provider: str  # the short name of the provider that runs it: tensorrt, cuda or cpu
    note: str  # for `auto`: which faster providers could not start
    info: ModelInfo | None
    input_name: str
    input_shape: list[int | str]  # as the graph declares it; a str (or None in onnxruntime) is a dynamic dim
    output_name: str

    @property
    def device(self) -> str:
        return "cpu" if self.provider == "cpu" else "cuda"

    @property
    def fixed_batch(self) -> int | None:
        first = self.input_shape[0] if self.input_shape else None
        return first if isinstance(first, int) else None


def short_name(provider: str) -> str:
    return next((k for k, v in PROVIDERS.items() if v == provider), provider)


@contextlib.contextmanager
def _quiet_ort() -> Iterator[None]:
    """onnxruntime logs an error (and prints a banner) for each provider it cannot start; we report that ourselves."""
    import onnxruntime as ort

    ort.set_default_logger_severity(ORT_LOG_FATAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        ort.set_default_logger_severity(ORT_LOG_WARNING)


def open_model(path: str | os.PathLike[str], provider: str = "auto", threads: int | None = None) -> Model:
    """A session for an ONNX file on `provider` (auto: TensorRT > CUDA > CPU among those that start)."""
    import onnxruntime as ort

    where = str(path)
    if provider not in CHOICES:
        raise input_error("--provider", f"unknown provider '{provider}'; choose one of {', '.join(CHOICES)}")
    if not Path(path).is_file():
        raise input_error(where, "no such file" if not Path(path).exists() else "is not a file")
    available = ort.get_available_providers()
    if provider == "auto":
        wanted = [PROVIDERS[p] for p in PROVIDERS if PROVIDERS[p] in available]
    else:
        name = PROVIDERS[provider]
        if name not in available:
            listed = ", ".join(short_name(p) for p in available)
            raise input_error("--provider", f"{provider}: {name} is not in this onnxruntime build (it has: {listed})")
        faster_fallbacks = [PROVIDERS["cuda"]] if provider == "tensorrt" and PROVIDERS["cuda"] in available else []
        wanted = [name, *faster_fallbacks, PROVIDERS["cpu"]] if provider != "cpu" else [name]
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        with _quiet_ort():
            session = ort.InferenceSession(where, options, providers=wanted)
    except Exception as exc:  # onnxruntime raises InvalidProtobuf, InvalidGraph, Fail, ... for a bad file
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise input_error(where, f"not a usable ONNX model ({type(exc).__name__}: {_without_prefix(message)})") from None
    ran = session.get_providers()[0]
    if provider != "auto" and ran != PROVIDERS[provider]:
        raise input_error(
            "--provider",
            f"{provider}: onnxruntime lists {PROVIDERS[provider]} but could not start it here (no usable GPU, or its CUDA/TensorRT libraries are missing); "
            f"it would have run on {ran} (use --provider auto to accept the fastest that starts)",
        )
    skipped = [short_name(p) for p in wanted[: wanted.index(ran)]] if ran in wanted else []
    note = f"{' and '.join(skipped)} could not start here" if skipped else ""
    meta = session.get_modelmeta().custom_metadata_map
    first_in, first_out = session.get_inputs()[0], session.get_outputs()[0]
    shape = [d if isinstance(d, int) else str(d) for d in first_in.shape]
    return Model(where, session, short_name(ran), note, ModelInfo.from_metadata(meta), first_in.name, shape, first_out.name)


def _without_prefix(message: str) -> str:
    """'[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from x failed:Protobuf parsing failed.' -> the last part."""
    return message.rsplit("failed:", 1)[-1].strip() if "failed:" in message else message.split(" : ")[-1].strip()
