"""int8 export: onnxruntime's static quantization (QDQ, per-channel weights), calibrated on a run's training data.

The fp32 model goes through `quant_pre_process` (symbolic shape inference, onnxruntime's graph optimizations:
BatchNorm folded into Conv, etc.), then `quantize_static` inserts QuantizeLinear/DequantizeLinear pairs with
activation ranges from N training samples, read and normalized by netdsl's own data pipeline as training reads
them. Verification runs the fp32 and int8 files on onnxruntime (CPU) over the test split: a classifier's top-1
agreement, any other task's largest error relative to the largest fp32 value.

Types: U8S8 (uint8 activations, int8 weights). onnxruntime's docs suggest S8S8 first for QDQ on CPU, but on this
AVX2 CPU (bench/bench_int8.py, 2 threads, best latencies) S8S8 ran no faster than fp32 (0.91x to 1.06x) where U8S8
ran 1.5x to 2.05x faster (ResNet-18 and MobileNetV2 at 224x224, batch 1 and 32), with the same top-1 agreement. Weights use 7 bits of range (reduce_range): x86 CPUs without VNNI (AVX2 only)
multiply u8 x s8 pairs with VPMADDUBSW, whose 16-bit sums saturate with full-range weights; measured on LeNet-5
(digits, this AVX2 CPU): full range 97.5% top-1 agreement with fp32 (max relative error 0.16), 7-bit 100% (0.008).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netdsl.errors import input_error
from netdsl.ir import Graph

DEFAULT_CALIBRATION = 256  # training samples whose activation ranges set the scales
VERIFY_SAMPLES = 1000  # test samples compared between fp32 and int8 at most
MIN_AGREEMENT = 0.98  # top-1 agreement below this fails verification
INT8_TOLERANCE = 0.1  # non-classification tasks: max |int8 - fp32| / max |fp32|
CALIBRATION_BATCH = 32
FORMAT = "QDQ"
NO_DATA = "calibration needs data: the spec has no train.data; give a run folder or a spec with train.data"


@dataclass(frozen=True)
class Calibration:
    """Normalized input samples: `inputs` to calibrate on, `test` to verify on, and where each came from."""

    inputs: np.ndarray
    test: np.ndarray
    source: str  # e.g. "train split of runs/x/resolved.yaml"
    test_source: str  # "test split", or "val split" where the spec keeps no test split
    task: str = "classification"

    def describe(self) -> dict[str, Any]:
        """The `calibration` metadata of an int8 export."""
        return {"samples": len(self.inputs), "source": self.source, "format": FORMAT, "activations": "uint8", "weights": "int8 (7-bit range), per channel"}


@dataclass(frozen=True)
class Agreement:
    """int8 against fp32 on onnxruntime: top-1 agreement (classification) or the largest relative error."""

    samples: int
    split: str
    top1: float | None = None  # fraction of samples with the same top-1 class
    max_rel: float | None = None

    @property
    def ok(self) -> bool:
        return self.top1 >= MIN_AGREEMENT if self.top1 is not None else self.max_rel is not None and self.max_rel <= INT8_TOLERANCE

    def __str__(self) -> str:
        if self.top1 is not None:
            return f"int8 agrees with fp32 on {100 * self.top1:.1f}% of {self.samples} {self.split} samples (top-1)"
        return f"int8 vs fp32 on {self.samples} {self.split} samples: max relative error {self.max_rel:.1e} (tolerance {INT8_TOLERANCE:.0e})"

    def failure(self) -> str:
        bound = f"below {100 * MIN_AGREEMENT:.0f}%" if self.top1 is not None else f"above {INT8_TOLERANCE:.0e}"
        return f"verification failed: {self}, {bound}; nothing written (--no-verify writes it anyway)"


def calibration_data(spec: str | os.PathLike[str], graph: Graph, samples: int = DEFAULT_CALIBRATION, **options: Any) -> Calibration:
    """`samples` training inputs (a seeded choice) and up to VERIFY_SAMPLES test inputs of `spec`'s train.data, normalized as training does."""
    import torch

    from netdsl.tasks import make_task
    from netdsl.train.api import prepare
    from netdsl.train.sources import load_splits
    from netdsl.train.splits import Reading

    if samples < 1:
        raise input_error("--calibration", f"--calibration must be >= 1 samples; got {samples}")
    prep = prepare(spec, **options)  # input_shape, variables: as the graph was loaded
    if "source" not in prep.cfg["data"]:
        raise input_error("--int8", NO_DATA)
    task = make_task(prep.cfg, graph, [])
    reading = Reading(batch_size=256)
    data = load_splits(prep.cfg["data"], graph.input_shape, prep.base, reading, targets=task.targets())
    try:
        shape = (1, -1, *([1] * (len(graph.input_shape) - 1)))
        mean, std = torch.tensor(data.mean).view(shape), torch.tensor(data.std).view(shape)

        def normalized(batches: Iterator[torch.Tensor], count: int) -> np.ndarray:
            parts, seen = [], 0
            for x in batches:
                parts.append(((x.float() - mean) / std)[: count - seen])
                seen += len(parts[-1])
                if seen >= count:
                    break
            return torch.cat(parts).numpy() if parts else np.zeros((0, *graph.input_shape), np.float32)

        inputs = normalized(data.train.sample(samples, prep.cfg["seed"], reading), samples)
        split_name, split = ("test", data.test) if len(data.test) else ("val", data.val)
        test = normalized((x for x, _, _ in split.batches(reading, epoch=0, seed=0, shuffle=False)), VERIFY_SAMPLES)
    finally:
        data.close()
    if not len(inputs):
        raise input_error("--int8", f"calibration needs data: the training split of {spec} is empty")
    return Calibration(inputs, test, f"train split of {spec}", f"{split_name} split", task.name)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's quantizer logs and prints advice on every call; a failure still raises."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def quantize(fp32: Path, int8: Path, calibration: Calibration, batch: int | None, activations: str = "uint8") -> None:
    """Write `fp32` (an ONNX file) as a static-quantized QDQ model at `int8`, per-channel weights; `activations` int8 or uint8."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from netdsl.runtime.model_info import INPUT_NAME

    inputs = calibration.inputs
    size = batch or CALIBRATION_BATCH
    if batch is not None and len(inputs) < batch:  # a fixed batch: repeat samples to fill one
        inputs = np.resize(inputs, (batch, *inputs.shape[1:]))
    chunks = [inputs[i : i + size] for i in range(0, len(inputs) - (len(inputs) % size if batch else 0), size)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(chunks)

        def get_next(self) -> dict[str, np.ndarray] | None:
            chunk = next(self.left, None)
            return None if chunk is None else {INPUT_NAME: np.ascontiguousarray(chunk, dtype=np.float32)}

    prepared = int8.with_name(f"{int8.stem}.pre.onnx")
    with _quiet():
        quant_pre_process(str(fp32), str(prepared))
        quantize_static(
            str(prepared),
            str(int8),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8 if activations == "int8" else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=True,  # see the module's docstring: no saturation on CPUs without VNNI
        )
    prepared.unlink(missing_ok=True)


def agreement(fp32: Path, int8: Path, calibration: Calibration, output: str) -> Agreement:
    """Run both files on onnxruntime (CPU) over the verification samples and compare their main outputs."""
    import onnxruntime as ort

    from netdsl.runtime.model_info import INPUT_NAME

    x = calibration.test if len(calibration.test) else calibration.inputs
    split = calibration.test_source.removesuffix(" split") if len(calibration.test) else "calibration"
    outputs = []
    for path in (fp32, int8):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        fixed = session.get_inputs()[0].shape[0]
        size = fixed if isinstance(fixed, int) else 64
        runs = [session.run([output], {INPUT_NAME: _filled(x[i : i + size], size if isinstance(fixed, int) else None)})[0] for i in range(0, len(x), size)]
        outputs.append(np.concatenate(runs)[: len(x)].astype(np.float64))
    want, got = outputs
    if calibration.task == "classification" and want.ndim == 2:
        return Agreement(len(x), split, top1=float(np.mean(want.argmax(1) == got.argmax(1))))
    scale = float(np.abs(want).max()) or 1.0
    error = float(np.abs(got - want).max()) if np.isfinite(got).all() else float("inf")
    return Agreement(len(x), split, max_rel=error / scale)


def _filled(chunk: np.ndarray, batch: int | None) -> np.ndarray:
    """A last, short chunk padded to a fixed batch with its own samples (their results are dropped)."""
    if batch is None or len(chunk) == batch:
        return chunk
    return np.resize(chunk, (batch, *chunk.shape[1:]))


def check_int8_options(int8: bool, fp16: bool, calibration: int) -> None:
    """`--int8 --fp16` together, or a calibration count below 1: one line each."""
    if int8 and fp16:
        raise input_error("--int8", "--int8 and --fp16 exclude each other: choose one precision")
    if calibration < 1:
        raise input_error("--calibration", f"--calibration must be >= 1 samples; got {calibration}")


__all__ = ["DEFAULT_CALIBRATION", "Agreement", "Calibration", "agreement", "calibration_data", "check_int8_options", "quantize"]
