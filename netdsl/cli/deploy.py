"""The ONNX commands of the CLI (export, infer, bench): argument parsing and printing only; torch, onnx and
onnxruntime are imported when a command runs."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from netdsl.cli.common import check_weights_path, load_spec, multipliers, spec_options
from netdsl.errors import input_error

PROVIDER_CHOICES = ("auto", "tensorrt", "cuda", "cpu")  # netdsl.runtime.session.CHOICES, without importing it here


def add_commands(sub: Any) -> None:
    """export, infer, bench."""
    p = sub.add_parser("export", help="write the network as an ONNX file, checked and verified against PyTorch")
    p.add_argument("spec", help="a spec file, or a training run folder (its resolved.yaml and best.pt)")
    p.add_argument("--weights", metavar="FILE|RUN_DIR", help=".pt (state dict or checkpoint), .safetensors, or a training run folder; default: random, seed 0")
    p.add_argument("-o", "--output", metavar="FILE", help="the .onnx file to write (default: NAME.onnx)")
    p.add_argument("--opset", type=int, default=18, metavar="N", help="ONNX opset, 18 to 23 (default 18)")
    p.add_argument("--batch", default="dynamic", metavar="dynamic|N", help="a dynamic batch axis (default) or a fixed batch size")
    p.add_argument("--fp16", action="store_true", help="float16 weights and compute; inputs and outputs stay float32")
    p.add_argument(
        "--int8",
        action="store_true",
        help="int8 weights and activations (onnxruntime static quantization, QDQ, per-channel weights), calibrated on the training data "
        "of the run (or the spec's train.data) and verified by top-1 agreement with fp32 on the test split",
    )
    p.add_argument("--calibration", type=int, default=256, metavar="N", help="--int8: training samples that set the activation ranges (default 256)")
    p.add_argument("--no-verify", action="store_true", help="skip onnx.checker and the onnxruntime-vs-PyTorch comparison (and the int8 agreement check)")
    p.add_argument("--all-outputs", action="store_true", help="every output the spec's `outputs:` lists, named as there (default: the main one, as logits)")
    spec_options(p)

    p = sub.add_parser(
        "infer",
        help="what an exported ONNX model makes of images or .npy arrays, by the task it records: top-k classes, mask PNGs and "
        "class pixel fractions, output images, values or labels (onnxruntime)",
        description="Run an exported model on images or .npy arrays and show each input's result as its task (recorded at export) "
        "reads it: classification prints the top-k classes; segmentation prints each class's share of the pixels and writes a "
        "palette PNG mask (pixel value = class index) per input; reconstruction writes the output image; regression prints "
        "the values; multilabel prints the classes that are on. An output the task cannot read, or NaN/infinite values, "
        "is an error (exit 2).",
    )
    p.add_argument("model", metavar="MODEL.onnx", help="an ONNX file written by netdsl export (its metadata gives the task, classes, normalization)")
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files (normalized as the model records), .npy arrays, folders of them, or quoted globs ('imgs/*.png')"
    )
    p.add_argument("--provider", choices=PROVIDER_CHOICES, default="auto", help="auto: TensorRT, else CUDA, else CPU, whichever starts")
    p.add_argument("--batch", type=int, metavar="N", help="samples per run (default: the model's fixed batch, else 32)")
    p.add_argument("--top", type=int, default=5, metavar="K", help="classification: classes shown per input (default 5)")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="segmentation and reconstruction: the folder for the PNGs, one per input named after it (a.png, x_3.png for x.npy[3]), "
        "replacing files of the same name (default: predictions/ beside MODEL.onnx)",
    )
    p.add_argument("--json", action="store_true", help="print only a JSON list, one object per input: input, the task's figures, output_png where written")

    p = sub.add_parser("bench", help="latency and throughput: onnxruntime vs PyTorch eager and torch.compile, same device")
    p.add_argument("target", metavar="MODEL.onnx|SPEC", help="an ONNX file, or a spec (exported on the fly, random weights)")
    p.add_argument("--provider", choices=PROVIDER_CHOICES, default="auto", help="auto: TensorRT, else CUDA, else CPU, whichever starts")
    p.add_argument("--batch", default="1,8,32", metavar="N,N,...", help="batch sizes (default 1,8,32)")
    p.add_argument("--fp16", action="store_true", help="float16 on both sides (as --precisions fp16)")
    p.add_argument(
        "--precisions",
        metavar="P,P,...",
        help="precisions to compare, of fp32, fp16, int8 (default: the model's own): fp16 runs on a GPU only; int8 (onnxruntime) "
        "needs an int8 .onnx, or a SPEC with train.data to calibrate on; e.g. --precisions fp32,int8",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (its compilation takes a while)")
    p.add_argument("--time", type=float, default=1.0, metavar="SECONDS", help="minimum timed seconds per engine and batch size (default 1)")
    spec_options(p)


def _batch(text: str) -> int | None:
    if text == "dynamic":
        return None
    if not text.isdigit() or int(text) < 1:
        raise input_error("--batch", f"--batch must be 'dynamic' or an integer >= 1; got '{text}'")
    return int(text)


def _precisions(text: str | None, fp16: bool) -> tuple[str, ...] | None:
    """--precisions fp32,int8 as a tuple, each known and none twice; None: the model's own (or fp16 with --fp16)."""
    from netdsl.errors import did_you_mean

    if text is None:
        return None
    if fp16:
        raise input_error("--precisions", "--precisions and --fp16 exclude each other: add fp16 to --precisions instead")
    chosen = tuple(p.strip() for p in text.split(","))
    known = ("fp32", "fp16", "int8")
    for p in chosen:
        if p not in known:
            raise input_error("--precisions", f"unknown precision '{p}'; choose from {', '.join(known)}{did_you_mean(p, list(known))}")
    if len(set(chosen)) != len(chosen):
        raise input_error("--precisions", f"--precisions names a precision twice: '{text}'")
    return chosen


def _batches(text: str) -> tuple[int, ...]:
    parts = text.split(",")
    if not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        raise input_error("--batch", f"--batch takes sizes >= 1 separated by commas, e.g. 1,8,32; got '{text}'")
    return tuple(int(p) for p in parts)


def cmd_export(args: argparse.Namespace) -> int:
    from netdsl.analysis.summary import human_bytes
    from netdsl.deploy.export_guard import check_batch_bytes
    from netdsl.deploy.onnx import VerificationError, export, sources, training_spec
    from netdsl.deploy.quantize import calibration_data, check_int8_options
    from netdsl.graph.load import parse_assignment

    batch = _batch(args.batch)
    check_int8_options(args.int8, args.fp16, args.calibration)
    check_weights_path(args.weights)
    spec, weights, labels = sources(args.spec, args.weights)
    graph = load_spec(str(spec), args)
    if batch is not None:
        check_batch_bytes(batch, graph.input_shape)
    output = args.output or f"{graph.name}.onnx"
    calibration = None
    if args.int8:
        variables = dict(parse_assignment(a) for a in args.set) | multipliers(args)
        calibration = calibration_data(training_spec(args.spec, args.weights), graph, args.calibration, input_shape=args.input, variables=variables)
    try:
        result = export(
            graph,
            output,
            weights=weights,
            labels=labels,
            opset=args.opset,
            batch=batch,
            fp16=args.fp16,
            verify=not args.no_verify,
            log=print,
            all_outputs=args.all_outputs,
            int8=calibration,
        )
    except VerificationError as exc:
        print(exc, file=sys.stderr)
        return 1
    info = result.info
    where = f", weights in {result.path}.data (over 2 GB)" if result.external_data else ""
    task = f"; task: {info.task['name']}" if info.task else ""
    print(
        f"wrote {result.path}: {info.name}, input {'x'.join(map(str, graph.input_shape))}, batch {result.batch or 'dynamic'}, "
        f"opset {result.opset}, {info.precision}, {info.exporter} exporter, {human_bytes(result.size)}{where}{task}"
    )
    print(f"weights: {info.weights}" + (f"; classes: {len(info.classes)}" if info.classes else "") + ("; normalization recorded" if info.normalize else ""))
    if info.calibration:
        print(f"calibration: {info.calibration['samples']} samples of the {info.calibration['source']}, {info.calibration['format']}, per-channel weights")
    return 0


def cmd_infer(args: argparse.Namespace) -> int:
    import json

    from netdsl.runtime.infer import infer

    model, predictions = infer(args.model, args.inputs, provider=args.provider, batch=args.batch, top=args.top, out=args.out)
    if args.json:
        print(json.dumps([p.json() for p in predictions], indent=2))
        return 0
    chosen = f"; auto: {model.note or 'the fastest available'}" if args.provider == "auto" else ""
    print(f"provider: {model.provider} ({model.session.get_providers()[0]}{chosen})")
    for prediction in predictions:
        print(prediction)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from netdsl.deploy.bench import bench

    batches = _batches(args.batch)
    precisions = _precisions(args.precisions, args.fp16)
    if not math.isfinite(args.time) or args.time <= 0:
        raise input_error("--time", f"--time must be a finite number of seconds > 0; got {args.time:g}")
    graph = None if Path(args.target).suffix == ".onnx" else load_spec(args.target, args)
    report = bench(
        args.target,
        graph,
        provider=args.provider,
        batches=batches,
        fp16=args.fp16,
        compile=not args.no_compile,
        min_time=args.time,
        precisions=precisions,
        calibration_spec=None if graph is None else args.target,
    )
    sys.stdout.write(report.json() + "\n" if args.json else report.table())
    return 0


COMMANDS = {"export": cmd_export, "infer": cmd_infer, "bench": cmd_bench}
