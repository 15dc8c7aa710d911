"""The commands that read specs (summarize, check, expand, diff, draw, convert, fmt, schema) and the language server:
argument parsing and printing; the work is in netdsl.analysis, netdsl.lang and netdsl.lsp."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from netdsl.cli.common import EXIT_USAGE, SPEC_HELP, load_checked, load_composed_spec, load_spec, load_with_train, print_errors, spec_options
from netdsl.errors import Diagnostic, Loc, SpecError


def add_commands(sub: Any) -> None:
    """summarize, check, expand, diff, draw, convert, fmt, schema, lsp."""
    p = sub.add_parser("summarize", help="per-layer shapes, parameters and MACs; no weights allocated")
    p.add_argument("spec")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--depth", type=int, default=3, metavar="N", help="nesting depth of rows (default 3; 0 = all)")
    p.add_argument("--torch", action="store_true", help="also build the PyTorch module on the meta device and cross-check counts and shapes")
    p.add_argument(
        "--columns",
        metavar="LIST",
        help="table columns in order, from input,output,params,trainable,buffers,macs,connected,source (default output,params,macs); --json has them all",
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

    p = sub.add_parser("lsp", help="run the language server for editors over stdio: diagnostics, hover, inlay hints, completion")
    p.add_argument("--stdio", action="store_true", help="talk LSP on stdin and stdout (the default and only transport; editors pass it)")
    p.add_argument("--log", metavar="FILE", help="append the server's log to this file (default: warnings to stderr)")


def cmd_summarize(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from netdsl.analysis.counts import analyze
    from netdsl.analysis.memory import batch_memory
    from netdsl.analysis.summary import DEFAULT_COLUMNS, parse_columns, render_json, render_table, row_sources
    from netdsl.errors import input_error
    from netdsl.graph.input_sizes import input_rule

    if args.depth < 0:
        raise SpecError([Diagnostic(Loc.argument("--depth"), f"--depth must be >= 0, got {args.depth}")])
    if args.batch is not None and args.batch < 1:
        raise input_error("--batch", f"--batch must be >= 1, got {args.batch}")
    columns = DEFAULT_COLUMNS if args.columns is None else parse_columns(args.columns)
    graph, train = load_with_train(args)
    freeze = tuple((train.get("transfer") or {}).get("freeze", []))
    report = analyze(graph, args.depth or None, freeze)
    if args.batch is not None or args.train:
        batch = args.batch or (train.get("batch_size", 1) if args.train else 1)
        optimizer = train["optimizer"] if args.train else None
        report = replace(report, batch_memory=batch_memory(graph, report.memory, batch, report.trainable, optimizer, freeze))
    rule = input_rule(graph)
    sources = row_sources(graph) if args.json or "source" in columns else None
    sys.stdout.write(render_json(report, rule, sources) if args.json else render_table(report, rule, columns, sources))
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


def cmd_check(args: argparse.Namespace) -> int:
    from netdsl.analysis.counts import analyze

    failed = False
    results: list[dict[str, Any]] = []
    for path in args.specs:
        try:
            report = analyze(load_checked(path, args), 1)
        except SpecError as exc:
            failed = True
            if args.json:
                errors = [
                    {"file": d.loc.file, "line": d.loc.line or None, "col": d.loc.col or None, "message": d.message, "note": d.note} for d in exc.diagnostics
                ]
                results.append({"spec": path, "ok": False, "errors": errors})
            else:
                print_errors(exc)
            continue
        if args.json:
            results.append({"spec": path, "ok": True, "params": report.params, "macs": report.macs, "output_shape": list(report.output_shape)})
        else:
            print(f"{path}: ok ({report.params:,} params, {report.macs:,} MACs, output {'x'.join(map(str, report.output_shape))})")
    if args.json:
        print(json.dumps(results, indent=1))
    return EXIT_USAGE if failed else 0


def cmd_expand(args: argparse.Namespace) -> int:
    from netdsl.analysis.counts import analyze
    from netdsl.analysis.expand import expand_text, spec_origins

    raw, loaded = load_composed_spec(args.spec, args)
    origins = spec_origins(raw, loaded.tree, args.spec, loaded.sources)
    sys.stdout.write(expand_text(loaded.graph, analyze(loaded.graph, 1), args.spec, origins))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from netdsl.analysis.counts import analyze
    from netdsl.analysis.diff import diff_graphs, diff_settings, located_changes, render_diff
    from netdsl.analysis.summary import loc_text

    problems = []
    loaded = []
    for path in (args.a, args.b):
        try:
            loaded.append(load_composed_spec(path, args)[1])
        except SpecError as exc:
            problems += exc.diagnostics
    if problems:
        raise SpecError(problems)
    old, new = loaded
    a, b = old.graph, new.graph
    located = bool(old.sources or new.sources)  # specs from one file each: no file:line noise
    changes = diff_graphs(a, b)
    settings = diff_settings(a, b, old.tree, new.tree, located)
    if located:
        changes = located_changes(changes, b, new.tree)
    input_where = loc_text(new.tree.value_locs["input"]) if located and not args.input else ""
    sys.stdout.write(render_diff(analyze(a, 1), analyze(b, 1), changes, args.a, args.b, settings, input_where))
    return 1 if changes or settings or a.input_shape != b.input_shape else 0


def cmd_convert(args: argparse.Namespace) -> int:
    from netdsl.lang.convert import convert_file

    if args.output is not None and not args.output.strip():
        raise SpecError([Diagnostic(Loc.argument("--output"), "-o/--output needs a file name, e.g. -o model.net")])
    text = convert_file(args.spec, args.output)
    if args.output is None:
        sys.stdout.write(text)
    else:
        print(f"{args.spec} -> {args.output}")
    return 0


def cmd_draw(args: argparse.Namespace) -> int:
    from netdsl.analysis.draw import draw, picture_format
    from netdsl.atomic import write_atomic
    from netdsl.errors import input_error

    if args.depth < 0:
        raise input_error("--depth", f"--depth must be >= 0 (0 = every cluster open), got {args.depth}")
    fmt = picture_format(args.output, args.format)
    data = draw(load_spec(args.spec, args), fmt, args.depth or None, args.direction, args.only)
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
    from netdsl.lang.fmt import fmt_files

    result = fmt_files(args.specs, check=args.check)
    for path in result.changed:
        print(f"{'would reformat' if args.check else 'reformatted'} {path}")
    verb = "would be reformatted" if args.check else "reformatted"
    print(f"{len(result.changed)} {verb}, {len(result.unchanged)} already formatted" + (f", {len(result.failed)} with errors" if result.failed else ""))
    if result.errors:
        print_errors(SpecError(result.errors))
        return EXIT_USAGE
    return 1 if args.check and result.changed else 0


def cmd_schema(args: argparse.Namespace) -> int:
    from netdsl.lang.schema import library_schema, schema_path, shipped_schema

    if args.path:
        print(schema_path(args.library))
    else:
        print(json.dumps(library_schema() if args.library else shipped_schema(), indent=1))
    return 0


COMMANDS = {
    "summarize": cmd_summarize,
    "check": cmd_check,
    "expand": cmd_expand,
    "diff": cmd_diff,
    "draw": cmd_draw,
    "convert": cmd_convert,
    "fmt": cmd_fmt,
    "schema": cmd_schema,
    "lsp": cmd_lsp,
}
