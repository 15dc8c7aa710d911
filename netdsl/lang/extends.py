"""`extends:`: a spec, or a section of its `train:`, built on another file and merged with it key by key.

`extends: resnet18` (a zoo spec) or `extends: ../base.yaml` (relative to the file that wrote it) starts a spec as that
spec; the file's own keys then override it: mappings merge recursively, lists and scalars replace, a mapping with
`_replace_: true` replaces the base's whole and a value `_delete_` removes the key. `params` over a declaration
{default, choices, doc} replace only its default; `import` lists join; a top-level `layers` mapping is a list of named
edits (replace, insert, remove) on the base's layers. Any mapping of `train` may extend a file holding that section
(`train: {extends: sgd_step}` names a shipped recipe). Every merged value keeps the position it was written at, so
later errors point into the file it came from. compose() is the front end's first stage; torch-free.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from netdsl.errors import Diagnostic, Loc, SpecError, did_you_mean
from netdsl.lang.files import FileProblem, printable, read_text
from netdsl.lang.formats import parse_tree
from netdsl.lang.layer_edits import edit_layers
from netdsl.lang.overrides import setting_loc
from netdsl.lang.train_schema import TRAIN_SCHEMA, recipes
from netdsl.lang.yaml_tree import YList, YMap, copy_map, new_map

MAX_DEPTH = 16  # files extending one another in one chain
DELETE = "_delete_"
REPLACE = "_replace_"
SPEC_SUFFIXES = (".yaml", ".yml", ".net")
DATA_PATHS = ("path", "val_path", "test_path", "urls", "val_urls", "test_urls")
PATH_SETTINGS: tuple[tuple[str, str], ...] = (*(("data", key) for key in DATA_PATHS), ("transfer", "weights"))  # relative to the file that wrote them


def zoo_folder() -> Path:
    """The zoo: specs/ beside the package in a checkout (a wheel install has none)."""
    return Path(__file__).resolve().parents[2] / "specs"


def zoo_specs() -> dict[str, Path]:
    """The zoo's YAML specs by name (resnet18: specs/resnet18.yaml)."""
    folder = zoo_folder()
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


@dataclass
class Composed:
    """A spec tree with every `extends` merged in; `sources`: (path, sha256) of each file merged, in the order read."""

    tree: Any
    sources: list[tuple[str, str]] = field(default_factory=list)
    problems: list[Diagnostic] = field(default_factory=list)


def compose(tree: Any, file: str, over: Mapping[str, Any] | None = None) -> Composed:
    """The spec with its bases, recipes and data files merged in; with problems, the tree as given and the problems.

    `over`: settings `train[.SECTION].extends` from the command line (--recipe, --data, --set train.data.extends=FILE):
    each file is merged over that section of the composed spec, as the command line wins over the spec's own keys."""
    composer = _Composer()
    if not isinstance(tree, YMap):
        return Composed(tree)
    top = (_Link(_real(file), file),)
    try:
        out = composer.spec(tree, top)
        for key, value in sorted((over or {}).items(), key=lambda kv: kv[0].count(".")):  # a recipe first, then the data file over it
            out = composer.overlay(out, key.split(".")[:-1], value, setting_loc(key, value), top)
    except _Failed:
        out = tree
    if composer.problems:
        return Composed(tree, composer.sources, composer.problems)
    return Composed(_paths_from_their_files(out, file), composer.sources)


def split_extends(settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(`train[.SECTION].extends` settings, the other settings): --recipe, --data and --set train.data.extends=FILE."""
    extends = {k: v for k, v in settings.items() if k.startswith("train.") and k.split(".")[-1] == "extends"}
    return extends, {k: v for k, v in settings.items() if k not in extends}


# ---- the composer ----------------------------------------------------------------------------------------------------


_ABSENT = object()  # a key the base does not have


class _Failed(Exception):
    """A problem that stops composing (recorded in problems)."""


class _Link(NamedTuple):
    real: str  # the file's real path, for cycles
    shown: str  # its name in messages
    via: Loc | None = None  # the `extends` it follows to the next link


_PARSED: OrderedDict[tuple[str, str, int, int, int], tuple[Any, str]] = OrderedDict()  # (name, path, inode, size, mtime) -> (tree, sha256)
PARSED_KEPT = 64  # a language server composes on every edit; merging never changes a parsed tree


class _Composer:
    def __init__(self) -> None:
        self.sources: list[tuple[str, str]] = []
        self.problems: list[Diagnostic] = []

    def fail(self, loc: Loc, message: str) -> _Failed:
        self.problems.append(Diagnostic(loc, message))
        return _Failed()

    # -- specs ---------------------------------------------------------------------------------------------------------
    def spec(self, tree: YMap, chain: tuple[_Link, ...]) -> YMap:
        """A spec's tree with its train sections' extends resolved, merged over its base (if it extends one)."""
        own = tree
        train = tree.get("train")
        if isinstance(train, YMap):
            own = copy_map(tree)
            own["train"] = self.section(train, TRAIN_SCHEMA, "train", chain)
        if "extends" not in own:
            if isinstance(own.get("layers"), YMap):
                edits = "layers: a mapping of edits (replace, insert, remove) needs `extends:` naming a base spec; without one, write the layers as a list"
                raise self.fail(own.value_locs["layers"], edits)
            return own
        value, loc = own["extends"], own.value_locs["extends"]
        path, shown = self.locate_spec(value, loc)
        base_tree, longer = self.read(path, shown, value, loc, chain)
        if not isinstance(base_tree, YMap):
            raise self.fail(_root_loc(base_tree, shown), f"a spec that is extended must be a mapping of spec keys; got {_kind(base_tree)}")
        base = self.spec(base_tree, longer)
        return self.merge_spec(base, _without(own, "extends"))

    def locate_spec(self, value: Any, loc: Loc) -> tuple[Path, str]:
        prefix = _prefix(loc)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(loc, f"{prefix}must be a zoo spec name such as resnet18, or a .yaml or .net path; got {value!r}")
        if _is_path(value):
            return self.relative(value, loc)
        zoo = zoo_specs()
        if value in zoo:
            return zoo[value], _shown(zoo[value])
        if not zoo:
            raise self.fail(
                loc, f"{prefix}no zoo spec named '{printable(value)}': this install has no zoo (specs/ comes with a netdsl checkout); give a .yaml or .net path"
            )
        where = "the current folder" if loc.line == 0 else "this file"
        message = f"no zoo spec named '{printable(value)}'{did_you_mean(value, zoo)} (a name from the zoo's specs/ folder, or a .yaml or .net path relative to {where})"
        raise self.fail(loc, prefix + message)

    def relative(self, value: str, loc: Loc) -> tuple[Path, str]:
        """A path written at `loc`: relative to the folder of the file that wrote it (the current folder for an argument)."""
        folder = os.path.dirname(loc.file) if loc.line > 0 else ""
        shown = os.path.normpath(os.path.join(folder, value))
        return Path(shown), shown

    def read(self, path: Path, shown: str, value: str, loc: Loc, chain: tuple[_Link, ...]) -> tuple[Any, tuple[_Link, ...]]:
        """A file's raw tree, after checking that following it makes no cycle and no chain too deep; the chain grown by it."""
        here = (*chain[:-1], chain[-1]._replace(via=loc))
        real = _real(str(path))
        reals = [link.real for link in here]
        if real in reals:
            i = reals.index(real)
            names = " -> ".join([*(link.shown for link in here[i:]), here[i].shown])
            raise self.fail(here[i].via or loc, f"{_prefix(here[i].via or loc)}a cycle: {names}")
        if len(here) > MAX_DEPTH:
            raise self.fail(loc, f"{_prefix(loc)}more than {MAX_DEPTH} levels of extends ({here[0].shown} -> ... -> {shown}); a chain may be at most that deep")
        try:
            st = os.stat(path)
            key: tuple[str, str, int, int, int] | None = (shown, real, st.st_ino, st.st_size, st.st_mtime_ns)  # its positions name it as shown
        except (OSError, ValueError):
            key = None
        if key is not None and key in _PARSED:
            _PARSED.move_to_end(key)
            tree, digest = _PARSED[key]
        else:
            tree, digest = self.parse(path, shown, value, loc)
            if key is not None:
                _PARSED[key] = (tree, digest)
                while len(_PARSED) > PARSED_KEPT:
                    _PARSED.popitem(last=False)
        if all(s != shown for s, _ in self.sources):
            self.sources.append((shown, digest))
        return tree, (*here, _Link(real, shown))

    def parse(self, path: Path, shown: str, value: str, loc: Loc) -> tuple[Any, str]:
        try:
            text = read_text(path)
        except FileProblem as exc:
            if exc.in_text:
                raise self.fail(Loc(shown, exc.line, exc.col), exc.message) from None
            reason = exc.message.removeprefix("cannot read: ")
            hint = _file_hint(path, value) if reason == "no such file" else ""
            raise self.fail(loc, f"{_prefix(loc)}cannot read '{printable(value)}': {reason}{hint}") from None
        try:
            tree = parse_tree(text, shown)
        except SpecError as exc:
            self.problems.extend(exc.diagnostics)
            raise _Failed() from None
        return tree, hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def overlay(self, tree: YMap, path: list[str], value: Any, loc: Loc, chain: tuple[_Link, ...]) -> YMap:
        """The tree with the file `value` names merged over its section at `path` (train, train.data, ...)."""
        schema: dict[str, Any] | None = TRAIN_SCHEMA
        for key in path[1:]:
            schema = _section_schema(schema.get("properties", {}).get(key)) if schema is not None else None
        name = ".".join(path)
        if schema is None:
            raise self.fail(loc, f"{name} is not a section of train settings that a file can give")
        path_to, shown = self.locate_section(value, loc, name)
        file_tree, longer = self.read(path_to, shown, value, loc, chain)
        if not isinstance(file_tree, YMap):
            raise self.fail(_root_loc(file_tree, shown), f"a {name} file must be a mapping of {name} settings; got {_kind(file_tree)}")
        return self.put(tree, path, self.section(file_tree, schema, name, longer), loc)

    def put(self, node: YMap, path: list[str], given: YMap, loc: Loc) -> YMap:
        out = copy_map(node)
        old = node.get(path[0], _ABSENT)
        if len(path) == 1:
            out[path[0]] = self.merge_value(path[0], old, given, loc)
        else:
            out[path[0]] = self.put(old if isinstance(old, YMap) else new_map(loc), path[1:], given, loc)
        if old is _ABSENT:
            out.key_locs[path[0]] = out.value_locs[path[0]] = loc
        return out

    # -- train sections ------------------------------------------------------------------------------------------------
    def section(self, node: YMap, schema: dict[str, Any], name: str, chain: tuple[_Link, ...]) -> YMap:
        """A train section with the extends of its sub-sections resolved, merged over the file it extends (if any)."""
        out = node
        for key, value in node.items():
            sub = _section_schema(schema.get("properties", {}).get(key))
            if isinstance(value, YMap) and sub is not None:
                resolved = self.section(value, sub, f"{name}.{key}", chain)
                if resolved is not value:
                    out = copy_map(out) if out is node else out
                    out[key] = resolved
        if "extends" not in out:
            return out
        value, loc = out["extends"], out.value_locs["extends"]
        path, shown = self.locate_section(value, loc, name)
        base_tree, longer = self.read(path, shown, value, loc, chain)
        if not isinstance(base_tree, YMap):
            raise self.fail(_root_loc(base_tree, shown), f"a {name} file must be a mapping of {name} settings; got {_kind(base_tree)}")
        base = self.section(base_tree, schema, name, longer)
        return self.merge(base, _without(out, "extends"))

    def locate_section(self, value: Any, loc: Loc, name: str) -> tuple[Path, str]:
        prefix = _prefix(loc)
        recipe = name == "train"
        if not isinstance(value, str) or not value.strip():
            what = "a recipe name such as sgd_step, or a .yaml path" if recipe else f"the path of a .yaml file of {name} settings"
            raise self.fail(loc, f"{prefix}must be {what}; got {value!r}")
        if not recipe or _is_path(value):
            return self.relative(value, loc)
        shipped = recipes()
        if value in shipped:
            return shipped[value], _shown(shipped[value])
        where = "the current folder" if loc.line == 0 else "this file"
        message = f"no recipe named '{printable(value)}'{did_you_mean(value, shipped)} (recipes: {', '.join(shipped)}; or a .yaml path relative to {where})"
        raise self.fail(loc, prefix + message)

    # -- merging -------------------------------------------------------------------------------------------------------
    def merge(self, base: Any, child: Any) -> Any:
        """The child over the base: mappings key by key (unless `_replace_: true`), anything else replaced."""
        if isinstance(child, YMap) and isinstance(base, YMap) and not self.replaces(child):
            return self.merge_keys(base, child, self.merge_value)
        return self.clean(child)

    def merge_value(self, key: str, old: Any, new: Any, loc: Loc) -> Any:
        return self.clean(new) if old is _ABSENT else self.merge(old, new)

    def merge_keys(self, base: YMap, child: YMap, merge_value: Callable[[str, Any, Any, Loc], Any]) -> YMap:
        """The base's keys in their order, then the child's new ones; each of the child's merged by merge_value (or deleted)."""
        out = copy_map(base)
        out.loc = child.loc
        for key, value in child.items():
            if key == REPLACE:
                continue
            loc = child.value_locs[key]
            if value == DELETE:
                if key not in out:
                    hint = did_you_mean(key, [k for k in out if isinstance(k, str)])
                    self.problems.append(Diagnostic(loc, f"'{key}: {DELETE}': the base has no '{key}' to delete{hint}"))
                    continue
                del out[key], out.key_locs[key], out.value_locs[key]
                continue
            out[key] = merge_value(key, out.get(key, _ABSENT), value, loc)
            out.key_locs[key], out.value_locs[key] = child.key_locs[key], loc
        return out

    def replaces(self, child: YMap) -> bool:
        flag = child.get(REPLACE, False)
        if not isinstance(flag, bool):
            self.problems.append(Diagnostic(child.value_locs[REPLACE], f"'{REPLACE}' must be true or false; got {flag!r}"))
        return flag is True

    def clean(self, value: Any) -> Any:
        """A value with nothing under it to merge with: `_replace_` flags dropped, a `_delete_` an error."""
        if not isinstance(value, YMap) or not any(k == REPLACE or v == DELETE or isinstance(v, YMap) for k, v in value.items()):
            return value
        self.replaces(value)
        out = new_map(value.loc)
        for key, inner in value.items():
            if key == REPLACE:
                continue
            if inner == DELETE:
                self.problems.append(Diagnostic(value.value_locs[key], f"'{key}: {DELETE}': the base has no '{key}' to delete"))
                continue
            out[key], out.key_locs[key], out.value_locs[key] = self.clean(inner), value.key_locs[key], value.value_locs[key]
        return out

    def merge_spec(self, base: YMap, child: YMap) -> YMap:
        """A spec over its base: as merge(), with `params` defaults, joined `import` lists and `layers` edits."""
        if self.replaces(child):
            return self.clean(child)
        return self.merge_keys(base, child, self.merge_top)

    def merge_top(self, key: str, old: Any, new: Any, loc: Loc) -> Any:
        if key == "layers" and isinstance(new, YMap):
            if not isinstance(old, YList):
                raise self.fail(loc, "layers: edits (replace, insert, remove) need a base spec with a layer list")
            return edit_layers(old, new, loc, self.problems)
        if key == "import" and isinstance(old, YList) and isinstance(new, YList):
            return _joined(old, new)
        if key == "params" and isinstance(old, YMap) and isinstance(new, YMap) and not self.replaces(new):
            return self.merge_keys(old, new, self.merge_param)
        return self.merge_value(key, old, new, loc)

    def merge_param(self, key: str, old: Any, new: Any, loc: Loc) -> Any:
        """A plain value over a declaration {default, choices, doc} replaces its default only (its choices still hold)."""
        if isinstance(old, YMap) and not isinstance(new, YMap):
            out = copy_map(old)
            out["default"] = new
            out.key_locs["default"] = out.value_locs["default"] = loc
            return out
        return self.merge_value(key, old, new, loc)


# ---- helpers -----------------------------------------------------------------------------------------------------------


def _without(node: YMap, key: str) -> YMap:
    out = copy_map(node)
    del out[key], out.key_locs[key], out.value_locs[key]
    return out


def _real(file: str) -> str:
    try:
        return os.path.realpath(file)
    except (OSError, ValueError):
        return file


def _shown(path: Path) -> str:
    """A shipped file's name in messages: relative to the current folder when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _prefix(loc: Loc) -> str:
    return "" if loc.line == 0 else "extends: "  # an argument (--recipe) names itself


def _is_path(value: str) -> bool:
    return "/" in value or os.sep in value or value.endswith(SPEC_SUFFIXES) or value.startswith(".")


def _file_hint(path: Path, value: str) -> str:
    """Did you mean a spec file beside the one named, or a zoo spec?"""
    try:
        siblings = sorted(p.name for p in path.parent.iterdir() if p.name.endswith(SPEC_SUFFIXES)) if path.parent.is_dir() else []
    except OSError:
        siblings = []
    folder = os.path.dirname(value)
    return did_you_mean(value, [os.path.join(folder, name) for name in siblings]) or did_you_mean(Path(value).stem, zoo_specs())


def _kind(value: Any) -> str:
    return (
        "an empty document"
        if value is None
        else {YList: "a list", str: "a string", bool: "a boolean", int: "an integer", float: "a number"}.get(type(value), "a scalar")
    )


def _root_loc(tree: Any, shown: str) -> Loc:
    return getattr(tree, "loc", None) or Loc(shown, 1, 1)


def _section_schema(schema: Any) -> dict[str, Any] | None:
    """The object schema (with named properties) a train setting has, if it is a section of settings."""
    if not isinstance(schema, dict):
        return None
    if "properties" in schema and schema.get("type") == "object":
        return schema
    return next((b for b in schema.get("anyOf", []) if isinstance(b, dict) and b.get("type") == "object" and "properties" in b), None)


def _joined(base: YList, child: YList) -> YList:
    """Both import lists, the base's first, each library once (a path compared by the file it names)."""
    out = YList()
    out.loc, out.item_locs = child.loc, []
    seen: set[str] = set()
    for items in (base, child):
        for name, loc in zip(items, items.item_locs):
            key = name
            if isinstance(name, str) and name.endswith(SPEC_SUFFIXES):
                key = _real(os.path.join(os.path.dirname(loc.file) if loc.line > 0 else "", name))
            if isinstance(key, str) and key in seen:
                continue
            if isinstance(key, str):
                seen.add(key)
            out.append(name)
            out.item_locs.append(loc)
    return out


def _paths_from_their_files(tree: YMap, file: str) -> YMap:
    """Relative data paths and weights written in another file (a base, a recipe, a data file) made absolute from that file's
    folder, as `import` and `extends` paths are read; those the spec itself writes stay relative to it."""
    train = tree.get("train")
    if not isinstance(train, YMap):
        return tree
    new_train = train
    home = os.path.dirname(_real(file))
    for section, key in PATH_SETTINGS:
        node = new_train.get(section)
        if not isinstance(node, YMap) or not isinstance(node.get(key), str):
            continue
        value, loc = node[key], node.value_locs[key]
        if loc.line == 0 or "://" in value or os.path.isabs(value) or os.path.dirname(_real(loc.file)) == home:
            continue
        node = copy_map(node)
        node[key] = os.path.abspath(os.path.join(os.path.dirname(loc.file), value))
        new_train = copy_map(new_train) if new_train is train else new_train
        new_train[section] = node
    if new_train is train:
        return tree
    out = copy_map(tree)
    out["train"] = new_train
    return out
