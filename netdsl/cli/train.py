"""The training commands (train, eval, predict, data pack): argument parsing and printing; torch is imported when they run."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from netdsl.cli.common import SubParser, check_weights_path, shortcut_options, spec_options, split_settings
from netdsl.errors import Diagnostic, Loc, SpecError


def add_commands(sub: Any) -> None:
    """train, eval, predict, data pack."""
    p = sub.add_parser("train", help="train a spec with its train: settings; writes runs/<name>-<time>/")
    p.add_argument("spec", help="a spec file (.yaml or .net) with a train: section")
    p.add_argument("--out", default="runs", help="where run directories go (default runs/)")
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly where its last checkpoint left it")
    p.add_argument("--allow-changes", action="store_true", help="resume although the spec differs from the run's (e.g. more epochs)")
    p.add_argument(
        "--nproc", type=int, default=1, help="train with N processes on this machine (DistributedDataParallel through torchrun; one per GPU on CUDA)"
    )
    p.add_argument("--nnodes", type=int, default=1, help="machines taking part (each runs this command with its own --node-rank)")
    p.add_argument("--node-rank", type=int, default=0, help="this machine's rank, 0 .. nnodes-1; machine 0 writes the run directory")
    p.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="machine 0's address and a free port there, where the processes meet (with --nnodes > 1)")
    p.add_argument("--run-dir", help=argparse.SUPPRESS)  # set by --nproc for its worker processes
    p.add_argument("--json", action="store_true", help="print the run's results as JSON on stdout (progress lines go to stderr)")
    shortcut_options(p, ("--lr", "--batch-size", "--device", "--workers"))
    file_options(p, recipe=True)
    spec_options(p)

    p = sub.add_parser(
        "eval", help="test-split loss and metrics for trained weights, with a picture: confusion matrix, or example predictions (segmentation, reconstruction)"
    )
    p.add_argument("spec", help="a spec file, or a training run folder (its resolved.yaml and best.pt)")
    p.add_argument("--weights", help="best.pt, last.pt, .safetensors or a run folder (default: the run folder given as SPEC)")
    p.add_argument("--out", help="the PNG (default: confusion.png or examples.png beside the weights)")
    p.add_argument("--report", metavar="FILE", help="where the results go as JSON (default: eval.json beside the PNG)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    shortcut_options(p, ("--batch-size", "--device", "--workers"))
    file_options(p, recipe=False)
    spec_options(p)

    p = sub.add_parser(
        "predict", help="what trained weights make of images (or .npy arrays): top-k classes, masks, reconstructions, values or labels, by the task"
    )
    p.add_argument("spec", help="a spec file, or a training run folder (its resolved.yaml and best.pt)")
    p.add_argument("inputs", nargs="+", help="image or .npy files, folders (every image and .npy inside) or quoted globs ('imgs/*.png')")
    p.add_argument("--weights", help="best.pt, last.pt, .safetensors or a run folder (default: the run folder given as SPEC)")
    p.add_argument("--top", type=int, default=3, help="classification: how many classes to show")
    p.add_argument("--out", help="segmentation/reconstruction: folder for the output PNGs (default: predictions/ beside the weights)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per input")
    shortcut_options(p, ("--batch-size", "--device"))
    spec_options(p)

    p = sub.add_parser("data", help="prepare data sets: pack an image folder into WebDataset shards")
    data = p.add_subparsers(dest="data_command", required=True, parser_class=SubParser)
    q = data.add_parser("pack", help="write WebDataset tar shards and index.json from an image folder (source: webdataset reads them)")
    q.add_argument("folder", help="one sub-folder of images per class, or train/ val/ test/ folders of those")
    q.add_argument("-o", "--out", required=True, metavar="FOLDER", help="where the shards and index.json go")
    q.add_argument("--shard-size", type=int, default=1000, metavar="N", help="samples per shard (default 1000)")


def file_options(p: argparse.ArgumentParser, recipe: bool) -> None:
    """--data FILE (and on train --recipe NAME_OR_FILE): short for train.data.extends and train.extends."""
    p.add_argument("--data", metavar="FILE", help="a .yaml file of train.data settings, merged over the spec's own: short for --set train.data.extends=FILE")
    if recipe:
        p.add_argument(
            "--recipe",
            metavar="NAME|FILE",
            help="a training recipe (sgd_step, sgd_cosine, adam, finetune_resnet) or a .yaml file: merged over the spec's train settings (short for --set train.extends=...)",
        )


def file_settings(args: argparse.Namespace) -> dict[str, Any]:
    """--data and --recipe as the train settings they stand for, located at the flag when wrong."""
    from netdsl.lang.overrides import SetKey

    out: dict[str, Any] = {}
    for flag, key in (("--data", "train.data.extends"), ("--recipe", "train.extends")):
        value = getattr(args, flag[2:], None)
        if value is not None:
            out[SetKey(key, flag)] = value
    return out


def cmd_train(args: argparse.Namespace) -> int:
    if args.nproc < 1:
        raise SpecError([Diagnostic(Loc.argument("--nproc"), f"--nproc must be >= 1, got {args.nproc}")])
    if args.nnodes < 1:
        raise SpecError([Diagnostic(Loc.argument("--nnodes"), f"--nnodes must be >= 1, got {args.nnodes}")])
    if not 0 <= args.node_rank < args.nnodes:
        raise SpecError(
            [Diagnostic(Loc.argument("--node-rank"), f"--node-rank must be 0 .. {args.nnodes - 1} with --nnodes {args.nnodes}, got {args.node_rank}")]
        )
    if (args.nproc > 1 or args.nnodes > 1) and "WORLD_SIZE" not in os.environ:
        return launch(args)
    from netdsl.train.api import train

    settings, variables = split_settings(args)
    settings.update(file_settings(args))
    check_settings(args.spec, args.input, settings)
    run = train(
        args.spec,
        out=args.out,
        settings=settings,
        variables=variables,
        input_shape=args.input,
        resume=args.resume,
        allow_changes=args.allow_changes,
        run_dir=args.run_dir,
        log=(lambda line: print(line, file=sys.stderr, flush=True)) if args.json else None,
    )
    status = json.loads((run / "status.json").read_text()) if (run / "status.json").exists() else {"state": "finished"}
    if args.json and os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the run
        print(json.dumps(run_summary(run, status), indent=2))
    return 0 if status["state"] == "finished" else 130


def run_summary(run: Any, status: dict[str, Any]) -> dict[str, Any]:
    """`train --json`: the run folder, how it ended, its results.json and where its files are."""
    results = json.loads((run / "results.json").read_text()) if (run / "results.json").exists() else {}
    files = {name: str(run / name) for name in ("best.pt", "best.safetensors", "last.pt", "curves.png", "metrics.csv") if (run / name).exists()}
    return {"run": str(run), "state": status["state"], "reason": status.get("reason", "")} | results | {"files": files}


def check_settings(spec: str, input_shape: str | None, settings: dict[str, Any]) -> None:
    """The train settings' checks that need no data (split fractions, data.path, ...), located in the spec (or in the
    file a value came from: a base spec, a recipe, a data file) as `netdsl check` locates them, before a run directory
    is made or data is read."""
    from netdsl.lang.extends import compose, split_extends
    from netdsl.lang.files import read_spec
    from netdsl.lang.formats import parse_tree
    from netdsl.lang.train_section import check_train_section
    from netdsl.layers.base import parse_shape

    text, name = read_spec(spec)
    extends, settings = split_extends(settings)
    composed = compose(parse_tree(text, name), name, extends)
    if composed.problems:
        raise SpecError(composed.problems)
    tree = composed.tree
    given = input_shape if input_shape is not None else (tree.get("input") if isinstance(tree, dict) else None)
    problems = check_train_section(tree, name, parse_shape(given), settings)
    if problems:
        raise SpecError(problems)


def check_processes(nproc: int) -> None:
    """One process per GPU on CUDA, at most one per CPU core on the CPU."""
    import torch

    from netdsl.train.engine import usable_cpus

    if torch.cuda.is_available():
        if nproc > torch.cuda.device_count():
            raise SpecError([Diagnostic(Loc.argument("--nproc"), f"--nproc {nproc}: this machine has {torch.cuda.device_count()} GPU(s); one process per GPU")])
        return
    cpus = usable_cpus()
    if nproc > cpus:
        raise SpecError([Diagnostic(Loc.argument("--nproc"), f"--nproc {nproc}: this machine has {cpus} CPU core(s) and no GPU; use at most {cpus} processes")])


def rendezvous(args: argparse.Namespace) -> list[str]:
    """torchrun's options: a free local port for one machine; for several, machine 0's endpoint, checked free on machine 0."""
    if args.nnodes < 1 or not 0 <= args.node_rank < args.nnodes:
        raise SpecError(
            [Diagnostic(Loc.argument("--node-rank"), f"--node-rank must be 0 .. {args.nnodes - 1} with --nnodes {args.nnodes}, got {args.node_rank}")]
        )
    if args.nnodes == 1:
        return ["--standalone"]
    host, _, port = (args.rdzv_endpoint or "").rpartition(":")
    if not host or not port.isdigit():
        raise SpecError(
            [
                Diagnostic(
                    Loc.argument("--rdzv-endpoint"),
                    f"--nnodes {args.nnodes} needs --rdzv-endpoint HOST:PORT (machine 0's address), got '{args.rdzv_endpoint or ''}'",
                )
            ]
        )
    if args.node_rank == 0:
        import socket

        with socket.socket() as probe:
            try:
                probe.bind((host, int(port)))
            except OSError as exc:
                raise SpecError(
                    [Diagnostic(Loc.argument("--rdzv-endpoint"), f"cannot listen on {host}:{port} for the rendezvous: {exc.strerror}; choose another port")]
                ) from None
    return ["--nnodes", str(args.nnodes), "--node-rank", str(args.node_rank), "--master-addr", host, "--master-port", port]


def launch(args: argparse.Namespace) -> int:
    """Re-run this command under torchrun with N local processes (and M machines), all training into one run directory."""
    from pathlib import Path

    from netdsl.graph.load import load
    from netdsl.train.run import new_run_dir

    check_processes(args.nproc)
    options = rendezvous(args)
    argv, skip = [], False
    for a in sys.argv[1:]:  # drop the launcher's own options; the workers get the rest
        if skip:
            skip = False
            continue
        flag = a.split("=", 1)[0]
        if flag in ("--nproc", "--nnodes", "--node-rank", "--rdzv-endpoint"):
            skip = "=" not in a
            continue
        argv.append(a)
    if not args.resume and args.node_rank == 0:
        run = Path(args.run_dir) if args.run_dir else new_run_dir(Path(args.out), load(args.spec).name)
        argv += ["--run-dir", str(run)]
    command = [sys.executable, "-m", "torch.distributed.run", *options, f"--nproc-per-node={args.nproc}", "-m", "netdsl", *argv]
    return subprocess.call(command)


def run_options(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """eval's and predict's spec and weights (a run folder stands for either or both), settings, variables, and how
    the network runs (batch size, device: the shortcut flags, which here are not train settings)."""
    from netdsl.train.files import trained_sources

    check_weights_path(args.weights)
    spec, weights = trained_sources(args.spec, args.weights)
    settings, variables = split_settings(args)
    settings.update(file_settings(args))
    running = {"batch_size": settings.pop("train.batch_size", 256), "device": settings.pop("train.device", "cpu")}
    return spec, weights, settings, variables, running


def cmd_eval(args: argparse.Namespace) -> int:
    from netdsl.train.api import per_class_lines
    from netdsl.train.evaluation import evaluate, report_lines

    spec, weights, settings, variables, running = run_options(args)
    check_settings(str(spec), args.input, settings)
    result = evaluate(spec, weights, args.out, report=args.report, settings=settings, variables=variables, input_shape=args.input, **running)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    figures = " ".join(f"{k[5:]} {v:.4f}" for k, v in result.items() if k.startswith("test_") and isinstance(v, float))
    print(f"{result['task']}: test {figures} on {result['test_samples']} samples")
    for line in report_lines(result) or per_class_lines(result.get("test_per_class", [])):
        print(line)
    picture = result.get("confusion_png") or result.get("examples_png")
    if picture:
        print(f"{'confusion matrix' if 'confusion_png' in result else 'examples'}: {picture}")
    print(f"report: {result['report_json']}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from netdsl.train.evaluation import predict

    spec, weights, settings, variables, running = run_options(args)
    results = predict(spec, weights, args.inputs, args.top, args.out, settings=settings, variables=variables, input_shape=args.input, **running)
    for note in results.notes:  # how many files a folder or glob gave, apart from the results
        print(note, file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:  # as `netdsl infer` prints
            print(f"{r['input']}: {results.task.line(r)}" + (f" -> {r['output_png']}" if "output_png" in r else ""))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from netdsl.train.pack import pack
    from netdsl.train.progress import task

    with task(f"packing {args.folder}", None) as bar:
        result = pack(Path(args.folder), Path(args.out), args.shard_size, lambda done, total: bar.advance(done - bar.count))  # `data` has one subcommand
    counts = [(name, s["samples"], len(s["shards"])) for name, s in result["splits"].items()]
    splits = [f"{name} {n:,} samples in {k} shard{'s' * (k != 1)}" if i == 0 else f"{name} {n:,} in {k}" for i, (name, n, k) in enumerate(counts)]
    print(f"{args.out}: {', '.join(splits)}; classes: {', '.join(result['classes'])}; index.json")
    keys = {"train": "urls", "val": "val_urls", "test": "test_urls"}
    urls = ", ".join(f"{keys[name]}: '{Path(args.out) / pattern}'" for name, pattern in result["urls"].items())
    print(f"train.data: {{source: webdataset, {urls}}}")
    if result["ignored"]:
        print(f"left out {len(result['ignored'])} file(s) that are not images by their suffix (first: {result['ignored'][0]})")
    if result["stale"]:
        print(f"note: {len(result['stale'])} shard(s) of an earlier pack are still in {args.out} and not in index.json (first: {result['stale'][0]})")
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "data": cmd_data}
