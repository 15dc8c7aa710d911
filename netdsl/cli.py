"""Command line: parse arguments, call the library, print. No logic lives here."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from netdsl.completion import cmd_completion
from netdsl.errors import Diagnostic, Loc, SpecError, os_error_line, render_source_line
from netdsl.runtime.cli import COMMANDS as ONNX_COMMANDS
from netdsl.runtime.cli import add_commands as add_onnx_commands
from netdsl.train.cli import COMMANDS as TRAIN_COMMANDS
from netdsl.train.cli import add_commands as add_train_commands

EXIT_USAGE = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C
ISSUES = "the netdsl issue tracker"  # pyproject.toml names no project URL


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class _SubParser(_Parser):
    """A subcommand's parser: it takes the global --debug too, so it may follow the subcommand."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # SUPPRESS: a subcommand that was not given --debug leaves the value the main parser set
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    from netdsl import __version__

    parser = _Parser(prog="netdsl", description="Declarative network definitions: check shapes and count parameters before anything is built.")
    parser.add_argument("--version", action="version", version=f"netdsl {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an internal error (before or after the subcommand)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_SubParser)

    def spec_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--input", metavar="CxHxW", help="override the spec's input shape, e.g. 3x64x64")
        p.add_argument(
            "--set",
            metavar="KEY=VALUE",
            action="append",
            default=[],
            help="a spec parameter (num_classes=10) or a train setting (train.optimizer.lr=0.01); repeatable",
        )
        p.add_argument("--width", type=float, metavar="W", help="width multiplier (sets the spec's 'width_mult' variable)")
        p.add_argument("--depth-mult", type=float, metavar="D", help="depth multiplier (sets the spec's 'depth_mult' variable)")

    p = sub.add_parser("summarize", help="per-layer shapes, parameters and MACs; no weights allocated")
    p.add_argument("spec")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--depth", type=int, default=3, metavar="N", help="nesting depth of rows (default 3; 0 = all)")
    p.add_argument("--torch", action="store_true", help="also build the PyTorch module on the meta device and cross-check counts and shapes")
    p.add_argument(
        "--columns",
        metavar="LIST",
        help="table columns in order, from input,output,params,trainable,buffers,macs,connected (default output,params,macs); --json has them all",
    )
    p.add_argument("--batch", type=int, metavar="N", help="also estimate memory for a batch of N samples (with --train default: the spec's train.batch_size)")
    p.add_argument(
        "--train", action="store_true", help="estimate training memory: activations kept for backward, parameters, gradients, the spec's optimizer's state"
    )
    spec_options(p)

    p = sub.add_parser("check", help="validate specs: exit 0, or 2 with located errors")
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec files (.yaml or .net)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per spec: ok, counts and output shape, or its errors")
    spec_options(p)

    p = sub.add_parser("expand", help="print the resolved flat spec: blocks and repeats unrolled, defaults filled in")
    p.add_argument("spec", help=SPEC_HELP)
    spec_options(p)

    p = sub.add_parser("diff", help="layers added, removed or changed between two specs; exit 1 if they differ")
    p.add_argument("a", metavar="SPEC_A", help="the spec compared from")
    p.add_argument("b", metavar="SPEC_B", help="the spec compared to")
    spec_options(p)

    p = sub.add_parser("schema", help="print the spec JSON Schema (for editors, e.g. yaml-language-server)")
    p.add_argument("--library", action="store_true", help="the block-library schema instead (netdsl/blocks/*.yaml and your own libraries)")
    p.add_argument("--path", action="store_true", help="print the shipped schema file's absolute path instead, for `# yaml-language-server: $schema=PATH`")
    add_train_commands(sub, spec_options)
    add_onnx_commands(sub, spec_options)

    p = sub.add_parser("data", help="prepare data sets: pack an image folder into WebDataset shards")
    data = p.add_subparsers(dest="data_command", required=True, parser_class=_SubParser)
    q = data.add_parser("pack", help="write WebDataset tar shards and index.json from an image folder (source: webdataset reads them)")
    q.add_argument("folder", help="one sub-folder of images per class, or train/ val/ test/ folders of those")
    q.add_argument("-o", "--out", required=True, metavar="FOLDER", help="where the shards and index.json go")
    q.add_argument("--shard-size", type=int, default=1000, metavar="N", help="samples per shard (default 1000)")

    p = sub.add_parser("draw", help="a picture of the network: SVG, a self-contained HTML page (clusters open on click), PNG or PDF")
    p.add_argument("spec", help="the spec file (.yaml or .net)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the picture; its suffix picks the format (.svg, .html, .png, .pdf)")
    p.add_argument("--format", choices=("svg", "html", "png", "pdf"), help="write this format whatever the suffix")
    p.add_argument("--depth", type=int, default=2, metavar="N", help="nesting depth of clusters shown open, like summarize's (default 2; 0 = all)")
    p.add_argument("--direction", choices=("TB", "LR"), default="TB", help="top-to-bottom (default) or left-to-right")
    p.add_argument("--only", metavar="PATH", help="draw only this group, block or repeat (its dotted path, as summarize lists it), e.g. layer2.0")
    spec_options(p)

    p = sub.add_parser("convert", help="write a spec in the other format: YAML <-> text (.net), comments kept")
    p.add_argument("spec", help=SPEC_HELP)
    p.add_argument("-o", "--output", metavar="FILE", help="write here (the format follows its suffix); default: print in the other format")

    p = sub.add_parser("fmt", help="rewrite specs (YAML or .net) in canonical layout, keeping comments")
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec files (.yaml or .net) to rewrite in place")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is not formatted")

    p = sub.add_parser("completion", help="print a shell completion script: subcommands, options, spec and model files")
    p.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell the script is for")

    p = sub.add_parser("lsp", help="run the language server for editors over stdio: diagnostics, hover, inlay hints, completion")
    p.add_argument("--stdio", action="store_true", help="talk LSP on stdin and stdout (the default and only transport; editors pass it)")
    p.add_argument("--log", metavar="FILE", help="append the server's log to this file (default: warnings to stderr)")
    _finish_help(parser, [])
    return parser


SPEC_HELP = "a spec file (.yaml or .net)"
POSITIONAL_HELP = {"spec": SPEC_HELP, "specs": "spec files (.yaml or .net)"}  # where a command gives none of its own


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions as argparse does, but keeps the `examples:` epilog's lines as written (a RawDescriptionHelpFormatter
    would leave long descriptions unwrapped too)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _finish_help(parser: argparse.ArgumentParser, path: list[str]) -> None:
    """Give every subcommand its examples epilog (netdsl/cli_examples.py), and positionals without help the common one."""
    from netdsl.cli_examples import epilog

    parser.formatter_class = _HelpFormatter
    if path:
        parser.epilog = epilog(" ".join(path))
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                _finish_help(child, [*path, name])
        elif action.help is None and not action.option_strings:
            action.help = POSITIONAL_HELP.get(action.dest)


def _load(path: str, args: argparse.Namespace) -> Any:
    from netdsl.spec.load import load, parse_assignment
    from netdsl.train.cli import multipliers

    variables = dict(parse_assignment(a) for a in args.set)
    variables.update(multipliers(args))
    return load(path, input_shape=args.input, variables=variables)


def _load_with_train(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The graph, and its train settings (the spec's, with --set train.X=V applied, every default filled in); their
    train.transfer.freeze patterns must match parameters, since summarize counts those frozen."""
    from netdsl.spec.formats import parse_tree
    from netdsl.spec.load import load_tree, read_spec
    from netdsl.spec.yaml_tree import plain
    from netdsl.train.api import apply_settings
    from netdsl.train.cli import split_settings
    from netdsl.train.config import check_freeze_patterns, resolve

    settings, variables = split_settings(args)
    text, name = read_spec(args.spec)
    tree = parse_tree(text, name)
    graph = load_tree(tree, name, input_shape=args.input, variables=variables)
    train = tree.get("train") if isinstance(tree, dict) else None
    resolved = resolve(apply_settings(plain(train or {}), settings))
    check_freeze_patterns(list((resolved.get("transfer") or {}).get("freeze", [])), [p for node in graph.nodes for p, _ in node.params()])
    return graph, resolved


def cmd_summarize(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from netdsl.analysis import analyze
    from netdsl.errors import input_error
    from netdsl.input_sizes import input_rule
    from netdsl.memory import batch_memory
    from netdsl.summary import DEFAULT_COLUMNS, parse_columns, render_json, render_table

    if args.depth < 0:
        raise SpecError([Diagnostic(Loc.argument("--depth"), f"--depth must be >= 0, got {args.depth}")])
    if args.batch is not None and args.batch < 1:
        raise input_error("--batch", f"--batch must be >= 1, got {args.batch}")
    columns = DEFAULT_COLUMNS if args.columns is None else parse_columns(args.columns)
    graph, train = _load_with_train(args)
    freeze = tuple((train.get("transfer") or {}).get("freeze", []))
    report = analyze(graph, args.depth or None, freeze)
    if args.batch is not None or args.train:
        batch = args.batch or (train.get("batch_size", 1) if args.train else 1)
        optimizer = train["optimizer"] if args.train else None
        report = replace(report, batch_memory=batch_memory(graph, report.memory, batch, report.trainable, optimizer, freeze))
    rule = input_rule(graph)
    sys.stdout.write(render_json(report, rule) if args.json else render_table(report, rule, columns))
    if args.torch:
        return torch_cross_check(graph, report)
    return 0


def torch_cross_check(graph: Any, report: Any) -> int:
    """Build the module on the meta device (no weights) and compare it with the IR."""
    from netdsl.backends.pytorch import meta_cross_check

    problems = meta_cross_check(graph)
    for problem in problems:
        print(f"PyTorch cross-check: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(
        f"PyTorch cross-check (meta device): {report.params:,} params, {report.buffers:,} buffer elements and the output shapes of {len(graph.nodes)} nodes agree with the IR"
    )
    return 0


def _load_checked(path: str, args: argparse.Namespace) -> Any:
    """As _load, and the train settings' checks that need no data and no torch (split fractions, data.path, ...)."""
    from netdsl.spec.formats import parse_tree
    from netdsl.spec.load import load_tree, read_spec
    from netdsl.train.cli import split_settings
    from netdsl.train.config import check_train_section

    settings, variables = split_settings(args)
    text, name = read_spec(path)
    tree = parse_tree(text, name)
    graph = load_tree(tree, name, input_shape=args.input, variables=variables)
    problems = check_train_section(tree, name, graph.input_shape, settings)
    if problems:
        raise SpecError(problems)
    return graph


def cmd_check(args: argparse.Namespace) -> int:
    from netdsl.analysis import analyze

    failed = False
    results: list[dict[str, Any]] = []
    for path in args.specs:
        try:
            report = analyze(_load_checked(path, args), 1)
        except SpecError as exc:
            failed = True
            if args.json:
                errors = [
                    {"file": d.loc.file, "line": d.loc.line or None, "col": d.loc.col or None, "message": d.message, "note": d.note} for d in exc.diagnostics
                ]
                results.append({"spec": path, "ok": False, "errors": errors})
            else:
                _print_errors(exc)
            continue
        if args.json:
            results.append({"spec": path, "ok": True, "params": report.params, "macs": report.macs, "output_shape": list(report.output_shape)})
        else:
            print(f"{path}: ok ({report.params:,} params, {report.macs:,} MACs, output {'x'.join(map(str, report.output_shape))})")
    if args.json:
        print(json.dumps(results, indent=1))
    return EXIT_USAGE if failed else 0


def cmd_expand(args: argparse.Namespace) -> int:
    from netdsl.analysis import analyze
    from netdsl.expand import expand_text

    graph = _load(args.spec, args)
    sys.stdout.write(expand_text(graph, analyze(graph, 1), args.spec))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from netdsl.analysis import analyze
    from netdsl.diff import diff_graphs, render_diff

    problems = []
    graphs = []
    for path in (args.a, args.b):
        try:
            graphs.append(_load(path, args))
        except SpecError as exc:
            problems += exc.diagnostics
    if problems:
        raise SpecError(problems)
    a, b = graphs
    changes = diff_graphs(a, b)
    sys.stdout.write(render_diff(analyze(a, 1), analyze(b, 1), changes, args.a, args.b))
    return 1 if changes or a.input_shape != b.input_shape else 0


def cmd_convert(args: argparse.Namespace) -> int:
    from netdsl.convert import convert_file

    if args.output is not None and not args.output.strip():
        raise SpecError([Diagnostic(Loc.argument("--output"), "-o/--output needs a file name, e.g. -o model.net")])
    text = convert_file(args.spec, args.output)
    if args.output is None:
        sys.stdout.write(text)
    else:
        print(f"{args.spec} -> {args.output}")
    return 0


def cmd_draw(args: argparse.Namespace) -> int:
    from netdsl.draw import draw, picture_format
    from netdsl.errors import input_error
    from netdsl.train.files import write_atomic

    if args.depth < 0:
        raise input_error("--depth", f"--depth must be >= 0 (0 = every cluster open), got {args.depth}")
    fmt = picture_format(args.output, args.format)
    data = draw(_load(args.spec, args), fmt, args.depth or None, args.direction, args.only)
    write_atomic(Path(args.output), data)
    print(f"{args.spec} -> {args.output}")
    return 0


def cmd_lsp(args: argparse.Namespace) -> int:
    """Serve LSP on stdio until the editor exits (needs the [lsp] group: pygls)."""
    import logging

    if args.log:
        logging.basicConfig(filename=args.log, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    else:
        logging.basicConfig(level=logging.WARNING)
    import pygls  # noqa: F401  (first, so that without the [lsp] group the one-line message names pygls, not lsprotocol)

    from netdsl.lsp.server import serve

    serve()
    return 0


def cmd_fmt(args: argparse.Namespace) -> int:
    from netdsl.fmt import fmt_files

    result = fmt_files(args.specs, check=args.check)
    for path in result.changed:
        print(f"{'would reformat' if args.check else 'reformatted'} {path}")
    verb = "would be reformatted" if args.check else "reformatted"
    print(f"{len(result.changed)} {verb}, {len(result.unchanged)} already formatted" + (f", {len(result.failed)} with errors" if result.failed else ""))
    if result.errors:
        _print_errors(SpecError(result.errors))
        return EXIT_USAGE
    return 1 if args.check and result.changed else 0


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


def cmd_schema(args: argparse.Namespace) -> int:
    from netdsl.spec.schema import library_schema, schema_path, shipped_schema

    if args.path:
        print(schema_path(args.library))
    else:
        print(json.dumps(library_schema() if args.library else shipped_schema(), indent=1))
    return 0


def _print_errors(exc: SpecError) -> None:
    tty = sys.stderr.isatty()
    sources: dict[str, str] = {}
    for diag in exc.diagnostics:
        print(diag, file=sys.stderr)
        if tty:
            if diag.loc.file not in sources:
                sources[diag.loc.file] = _excerpt_source(diag.loc.file)
            excerpt = render_source_line(diag, sources[diag.loc.file])
            if excerpt:
                print(excerpt, file=sys.stderr)


def _excerpt_source(file: str) -> str:
    """The text of a spec, for the line under an error; '' for anything that is not one (a device, a FIFO, a huge file)."""
    from netdsl.spec.files import source_text

    return source_text(file)


COMMANDS = {
    **TRAIN_COMMANDS,
    **ONNX_COMMANDS,
    "summarize": cmd_summarize,
    "check": cmd_check,
    "expand": cmd_expand,
    "diff": cmd_diff,
    "schema": cmd_schema,
    "convert": cmd_convert,
    "draw": cmd_draw,
    "fmt": cmd_fmt,
    "completion": cmd_completion,
    "lsp": cmd_lsp,
    "data": cmd_data,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every way it can end is an exit status and at most a few located lines, never a traceback
    (except an internal error under --debug)."""
    debug = False
    try:
        args = build_parser().parse_args(argv)
        debug = args.debug
        return COMMANDS[args.command](args)
    except SpecError as exc:
        _print_errors(exc)
        return EXIT_USAGE
    except BrokenPipeError:  # `netdsl check specs/*.yaml | head`: the reader has gone; say nothing
        _discard_stdout()
        return 0
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        _say("netdsl: interrupted")
        return EXIT_INTERRUPTED
    except OSError as exc:  # disk full, read-only folder, file-size limit, ... where no command gave its own message
        if debug:
            traceback.print_exc()
        _say(os_error_line(exc))
        return EXIT_USAGE
    except MemoryError:
        _say("netdsl: out of memory (MemoryError): the spec or the inputs need more memory than this machine gives the process")
        return EXIT_USAGE
    except Exception as exc:
        if debug:
            traceback.print_exc()
        if _out_of_memory(exc):  # torch's allocators raise RuntimeError (CPU) or torch.OutOfMemoryError (CUDA)
            _say(f"netdsl: out of memory: {(str(exc).strip().splitlines() or [''])[0][:300]}")
            return EXIT_USAGE
        from netdsl.extras import missing_extra_line

        if missing := missing_extra_line(exc, argv):  # an optional group (pip extra) is not installed: name it
            _say(missing)
            return EXIT_USAGE
        _say(internal_error_line(exc))
        return EXIT_INTERNAL


def _out_of_memory(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


def internal_error_line(exc: BaseException) -> str:
    """The one line for a bug of ours: what was raised, and where to report it."""
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return f"netdsl: internal error: {what} — please report it at {ISSUES}; rerun with --debug for the traceback"


def _say(line: str) -> None:
    """A last line on stderr, even if stderr is gone too."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of what is still buffered cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (pytest's capture): nothing is left to flush there
        pass


if __name__ == "__main__":
    raise SystemExit(main())
