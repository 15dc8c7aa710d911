"""The front-end pipeline: spec text -> raw tree -> schema check -> expansion -> checked IR Graph."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from netdsl.errors import Diagnostic, Loc, SpecError, did_you_mean
from netdsl.graph.budgets import check_limits
from netdsl.graph.build import BlockDef, block_defs, build_graph
from netdsl.graph.input_sizes import input_rule
from netdsl.ir import Graph
from netdsl.lang.extends import compose
from netdsl.lang.files import read_spec
from netdsl.lang.formats import parse_tree
from netdsl.lang.imports import Library, load_libraries
from netdsl.lang.limits import written_layers_over_budget
from netdsl.lang.overrides import SetKey, setting_loc
from netdsl.lang.params import REQUIRED, declare_all
from netdsl.lang.validate import validate_tree
from netdsl.lang.yaml_tree import YMap, load_yaml
from netdsl.layers.base import Shape, parse_shape

DEFAULT_VARIABLES = {"width_mult": 1.0, "depth_mult": 1.0}  # set by --width / --depth-mult


def load_text(
    text: str,
    file: str = "<spec>",
    *,
    input_shape: str | Shape | None = None,
    variables: Mapping[str, Any] | None = None,
    library_path: Sequence[str | os.PathLike[str]] = (),
) -> Graph:
    """Parse, check and expand YAML spec text into a Graph; raise SpecError with every problem found.

    `file` names the text in messages; its folder is where `import:` paths start (and the folder they may not leave).
    """
    return load_tree(load_yaml(text, file), file, input_shape=input_shape, variables=variables, library_path=library_path)


def load_net_text(
    text: str,
    file: str = "<spec>",
    *,
    input_shape: str | Shape | None = None,
    variables: Mapping[str, Any] | None = None,
    library_path: Sequence[str | os.PathLike[str]] = (),
) -> Graph:
    """As load_text, for the text format (.net)."""
    return load_tree(parse_tree(text, file, "net"), file, input_shape=input_shape, variables=variables, library_path=library_path)


def load_tree(
    tree: Any,
    file: str,
    *,
    input_shape: str | Shape | None = None,
    variables: Mapping[str, Any] | None = None,
    library_path: Sequence[str | os.PathLike[str]] = (),
) -> Graph:
    """Check and expand a raw spec tree (from either format) into a Graph; raise SpecError with every problem found.

    `library_path`: folders, besides the spec's own and NETDSL_PATH's, that `import:` may read libraries from.
    """
    graph = load_composed(tree, file, input_shape=input_shape, variables=variables, library_path=library_path).graph
    assert graph is not None
    return graph


def load_composed(
    tree: Any,
    file: str,
    *,
    input_shape: str | Shape | None = None,
    variables: Mapping[str, Any] | None = None,
    library_path: Sequence[str | os.PathLike[str]] = (),
    over: Mapping[str, Any] | None = None,
) -> Loaded:
    """As load_tree, keeping what the front end made: the composed tree (every `extends` merged), its sources and the Graph.

    `over`: train[.SECTION].extends settings from the command line, merged over the spec's sections (netdsl.lang.extends)."""
    loaded = check_tree(tree, file, input_shape=input_shape, variables=variables, library_path=library_path, over=over)
    if loaded.problems or loaded.graph is None:
        raise SpecError(loaded.problems)
    return loaded


@dataclass
class Loaded:
    """What each stage of the front end made of a spec tree, as far as it got: the editor's view (netdsl.lsp).

    `tree` is the composed tree (netdsl.lang.extends: bases, recipes and data files merged in; the tree as given when
    composing failed) and `sources` the (path, sha256) of each file merged into it. `graph` is the checked network when
    `problems` is empty; with `partial=True` it may also be the part built before the first error (its nodes are right;
    its output is the last node built)."""

    tree: Any
    sources: list[tuple[str, str]] = field(default_factory=list)
    libraries: list[Library] = field(default_factory=list)
    blocks: dict[str, BlockDef] = field(default_factory=dict)
    graph: Graph | None = None
    problems: list[Diagnostic] = field(default_factory=list)


def check_tree(
    tree: Any,
    file: str,
    *,
    input_shape: str | Shape | None = None,
    variables: Mapping[str, Any] | None = None,
    library_path: Sequence[str | os.PathLike[str]] = (),
    partial: bool = False,
    over: Mapping[str, Any] | None = None,
) -> Loaded:
    """Run the front end's stages on a raw spec tree, stopping at the first stage with problems; never raises SpecError.

    The first stage composes the tree (netdsl.lang.extends: `extends` of the spec and of its train sections, and the
    command line's `over` files); every later stage reads the composed tree."""
    composed = compose(tree, file, over)
    tree = composed.tree
    loaded = Loaded(tree, composed.sources, problems=composed.problems)
    if composed.problems:
        return loaded
    libraries, problems = load_libraries(tree, file, library_path) if isinstance(tree, YMap) else ([], [])
    loaded.libraries, loaded.problems = libraries, problems
    if problems:  # a library that cannot be read would make every use of its blocks an "unknown layer type" too
        return loaded
    known = [name for _, blocks in libraries for name in blocks]
    if isinstance(tree, YMap) and isinstance(tree.get("blocks"), YMap):
        known += list(tree["blocks"])
    problems += written_layers_over_budget(tree) or validate_tree(tree, file, blocks=known)
    if problems:
        return loaded
    assert isinstance(tree, YMap)
    shape = parse_shape(tree["input"])
    if input_shape is not None:
        shape = parse_shape(input_shape)
        if shape is None:
            problems.append(Diagnostic(Loc.argument("--input"), f"bad input shape '{input_shape}'; write C x H x W like 3x224x224, C x L, or a feature count"))
    elif shape is None:
        problems.append(Diagnostic(tree.value_locs["input"], f"bad input shape {tree['input']!r}; write [C, H, W], 'CxHxW', [C, L] or a feature count"))
    scope: dict[str, Any] = dict(DEFAULT_VARIABLES)
    declared, found = declare_all(tree.get("params"))
    problems += found
    scope.update({key: param.default for key, param in declared.items()})
    for key, param in declared.items():
        if param.default is REQUIRED and key not in (variables or {}):
            problems.append(Diagnostic(tree["params"].key_locs[key], f"parameter '{key}' has no default; give it with --set {key}=VALUE"))
    for key, value in (variables or {}).items():
        if key not in scope:
            names = ", ".join(scope)
            problems.append(Diagnostic(setting_loc(key, value), f"the spec has no parameter '{key}'{did_you_mean(key, scope)} (parameters: {names})"))
        elif key in declared and declared[key].check(value):
            problems.append(Diagnostic(setting_loc(key, value), f"parameter '{key}': {declared[key].check(value)}"))
        scope[str(key)] = value
    blocks, block_problems = block_defs(tree, libraries)
    loaded.blocks = blocks
    problems += block_problems
    if problems or shape is None:
        return loaded
    graph, problems = build_graph(tree, file, shape, scope, blocks, partial=partial)
    loaded.graph = graph
    if problems or graph is None:
        loaded.problems = _with_size_hint(problems, tree, file, shape, scope, blocks)
        return loaded
    assert graph is not None
    loaded.problems = check_limits(tree, graph)
    return loaded


PROBE_SIZES = (32, 64, 128, 224, 299, 512, 1024)


def _with_size_hint(problems: list[Diagnostic], tree: YMap, file: str, shape: Shape, scope: dict[str, Any], blocks: dict[str, Any]) -> list[Diagnostic]:
    """If a shape error goes away at another input size, say which sizes work on the first one."""
    first = next((i for i, d in enumerate(problems) if d.kind == "shape"), None)
    if first is None or len(shape) < 2:
        return problems
    for n in sorted(PROBE_SIZES, key=lambda n: (n < max(shape[1:]), n)):
        graph, _ = build_graph(tree, file, (shape[0], *(n for _ in shape[1:])), scope, blocks)
        if graph is not None:
            rule = input_rule(graph)
            if rule is None or rule.accepts(max(shape[1:])):
                return problems
            smallest = "x".join(str(d) for d in (shape[0], *(rule.minimum for _ in shape[1:])))
            d = problems[first]
            hint = f"; the input {'x'.join(map(str, shape))} is too small: the network accepts {rule} (smallest: {smallest})"
            return [*problems[:first], Diagnostic(d.loc, d.message + hint, d.note, d.kind), *problems[first + 1 :]]
    return problems


def load(path: str | os.PathLike[str], **options: Any) -> Graph:
    """Load a spec file, YAML or .net by its suffix, into a checked Graph (see load_text for options)."""
    text, name = read_spec(path)
    return load_tree(parse_tree(text, name), name, **options)


def parse_assignment(text: str) -> tuple[str, Any]:
    """'key=value' from the command line; the value is read as a YAML scalar (0.5, true, relu). The key is a SetKey,
    so a later check reports a problem with it at this argument."""
    key, sep, raw = text.partition("=")
    where = f"--set {text}"
    if not sep or not key.strip():
        got = "no '='" if not sep else "no KEY before '='"
        message = f"expected KEY=VALUE (a spec parameter, e.g. num_classes=10, or a train setting, e.g. train.epochs=3); got {got}"
        raise SpecError([Diagnostic(Loc.argument(where), message)])
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return SetKey(key.strip(), where), value
