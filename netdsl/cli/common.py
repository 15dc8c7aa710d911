"""What every command group shares: the parser classes, the spec options (--input, --set, --width, --depth-mult) and
the training shortcuts (--lr, --batch-size, ...), loading a spec as the options say, and printing located errors."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, NoReturn

from netdsl.errors import Diagnostic, Loc, SpecError, render_source_line

EXIT_USAGE = 2
SPEC_HELP = "a spec file (.yaml or .net)"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class SubParser(Parser):
    """A subcommand's parser: it takes the global --debug too, so it may follow the subcommand."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # SUPPRESS: a subcommand that was not given --debug leaves the value the main parser set
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def spec_options(p: argparse.ArgumentParser) -> None:
    """--input, --set, --width and --depth-mult: how a command may change the spec it reads."""
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


SHORTCUTS = {  # flag: (the train setting it stands for, its help)
    "--lr": ("train.optimizer.lr", "learning rate: short for --set train.optimizer.lr=LR"),
    "--batch-size": ("train.batch_size", "samples per step: short for --set train.batch_size=N"),
    "--device": ("train.device", "auto, cpu or cuda: short for --set train.device=D"),
    "--workers": ("train.workers", "data-loading processes (a number or auto): short for --set train.workers=N"),
}
EVAL_HELP = {  # the same flags on eval and predict, where they mean how the network runs rather than a train setting
    "--batch-size": "samples per forward pass (default 256)",
    "--device": "where the network runs: cpu (default), cuda or auto",
    "--workers": "data-loading processes for the test split: short for --set train.workers=N",
}


def shortcut_options(p: argparse.ArgumentParser, flags: tuple[str, ...]) -> None:
    """The common training flags as shortcuts for `--set train.KEY=VALUE` (checked against the same schema)."""
    train = p.prog.split()[-1] == "train"
    for flag in flags:
        metavar = {"--lr": "LR", "--batch-size": "N", "--device": "D", "--workers": "N"}[flag]
        p.add_argument(flag, metavar=metavar, help=SHORTCUTS[flag][1] if train else EVAL_HELP[flag])


def shortcut_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The shortcut flags given, as train settings, checked at once against the settings' schema as --set is and
    located at the flag: `--lr: train.optimizer.lr must be a number > 0; got -1`."""
    from netdsl.lang.overrides import SetKey, settings_diagnostics
    from netdsl.lang.train_schema import TRAIN_SCHEMA

    out: dict[str, Any] = {}
    for flag, (key, _) in SHORTCUTS.items():
        text = getattr(args, flag[2:].replace("-", "_"), None)
        if text is None:
            continue
        value = command_value(text)
        section: dict[str, Any] = {}
        node = section
        *parents, last = key.split(".")[1:]
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        problems = settings_diagnostics(section, {SetKey(key, flag): value}, TRAIN_SCHEMA)
        if problems:
            raise SpecError(problems[:1])
        out[key] = value
    return out


def command_value(text: str) -> Any:
    """A flag's value: an integer, a number (1e-3 too, which YAML 1.1 would leave a string), else the text."""
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        return value if math.isfinite(value) else text
    return text


def split_settings(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """--set train.X=V goes to the training settings, any other --set to the spec's params."""
    from netdsl.graph.load import parse_assignment

    settings: dict[str, Any] = {}
    variables: dict[str, Any] = {}
    for text in args.set:
        key, value = parse_assignment(text)
        (settings if key.startswith("train.") else variables)[key] = value
    variables.update(multipliers(args))
    if getattr(args, "epochs", None) is not None:
        if args.epochs < 1:
            raise SpecError([Diagnostic(Loc.argument("--epochs"), f"--epochs must be >= 1, got {args.epochs}")])
        settings["train.epochs"] = args.epochs
    settings.update(shortcut_settings(args))
    return settings, variables


def multipliers(args: argparse.Namespace) -> dict[str, float]:
    """--width and --depth-mult as the spec variables they set; each must be a finite number > 0."""
    out: dict[str, float] = {}
    for flag, value, variable in (("--width", args.width, "width_mult"), ("--depth-mult", args.depth_mult, "depth_mult")):
        if value is None:
            continue
        if not math.isfinite(value) or value <= 0:
            raise SpecError([Diagnostic(Loc.argument(flag), f"{flag} must be a finite number > 0, got {value:g}")])
        out[variable] = value
    return out


def check_weights_path(path: str | None) -> None:
    """--weights names a file or a run folder, never a FIFO or a device, which torch.load would wait on or read forever."""
    from netdsl.lang.files import special_kind

    kind = special_kind(path) if path is not None else None
    if path is not None and kind:
        raise SpecError([Diagnostic(Loc(path, 1, 1), f"is {kind}, not a weights file")])


def load_spec(path: str, args: argparse.Namespace) -> Any:
    """The spec as a Graph, with the params that --set, --width and --depth-mult give."""
    return load_composed_spec(path, args)[1].graph


def load_composed_spec(path: str, args: argparse.Namespace) -> tuple[Any, Any]:
    """As load_spec, keeping the spec's tree as written and what the front end made of it (the composed tree, the
    files merged into it, the graph: netdsl.graph.load.Loaded)."""
    from netdsl.graph.load import load_composed, parse_assignment
    from netdsl.lang.files import read_spec
    from netdsl.lang.formats import parse_tree

    variables = dict(parse_assignment(a) for a in args.set)
    variables.update(multipliers(args))
    text, name = read_spec(path)
    raw = parse_tree(text, name)
    return raw, load_composed(raw, name, input_shape=args.input, variables=variables)


def _load_tree(path: str, args: argparse.Namespace) -> tuple[Any, str, Any, dict[str, Any]]:
    """The spec's composed tree (every `extends` merged: netdsl.lang.extends), display name and graph (its params from
    --set, --width, --depth-mult), and the --set train.* settings (train...extends ones merged over its sections)."""
    from netdsl.graph.load import load_composed
    from netdsl.lang.extends import split_extends
    from netdsl.lang.files import read_spec
    from netdsl.lang.formats import parse_tree

    settings, variables = split_settings(args)
    extends, settings = split_extends(settings)
    text, name = read_spec(path)
    loaded = load_composed(parse_tree(text, name), name, input_shape=args.input, variables=variables, over=extends)
    return loaded.tree, name, loaded.graph, settings


def load_with_train(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The graph, and its train settings (the spec's, with --set train.X=V applied, every default filled in); their
    train.transfer.freeze patterns must match parameters, since summarize counts those frozen."""
    from netdsl.lang.train_section import apply_settings, check_freeze_patterns, resolve
    from netdsl.lang.yaml_tree import plain

    tree, _, graph, settings = _load_tree(args.spec, args)
    train = tree.get("train") if isinstance(tree, dict) else None
    resolved = resolve(apply_settings(plain(train or {}), settings))
    check_freeze_patterns(list((resolved.get("transfer") or {}).get("freeze", [])), [p for node in graph.nodes for p, _ in node.params()])
    return graph, resolved


def load_checked(path: str, args: argparse.Namespace) -> Any:
    """As load_spec, and the train settings' checks that need no data and no torch (split fractions, data.path, ...)."""
    from netdsl.lang.train_section import check_train_section

    tree, name, graph, settings = _load_tree(path, args)
    problems = check_train_section(tree, name, graph.input_shape, settings)
    if problems:
        raise SpecError(problems)
    return graph


def print_errors(exc: SpecError) -> None:
    tty = sys.stderr.isatty()
    sources: dict[str, str] = {}
    for diag in exc.diagnostics:
        print(diag, file=sys.stderr)
        if tty:
            if diag.loc.file not in sources:
                sources[diag.loc.file] = excerpt_source(diag.loc.file)
            excerpt = render_source_line(diag, sources[diag.loc.file])
            if excerpt:
                print(excerpt, file=sys.stderr)


def excerpt_source(file: str) -> str:
    """The text of a spec, for the line under an error; '' for anything that is not one (a device, a FIFO, a huge file)."""
    from netdsl.lang.files import source_text

    return source_text(file)
