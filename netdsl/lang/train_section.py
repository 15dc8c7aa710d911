"""The `train:` section's settings: resolved with every default from its schema (train_schema.py), so the run's
resolved.yaml shows every setting that was in force; --set train.* applied; freeze patterns; and the checks that need
no data and no torch. Torch-free."""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable, Mapping
from typing import Any

from netdsl.errors import Diagnostic, Loc, SpecError, did_you_mean
from netdsl.lang.overrides import covering, setting_loc, settings_diagnostics, show_value
from netdsl.lang.train_schema import PATH_SOURCES, PATH_SPLIT_SOURCES, TRAIN_SCHEMA
from netdsl.lang.yaml_tree import loc_of, plain


def resolve(raw: dict[str, Any] | None, schema: dict[str, Any] = TRAIN_SCHEMA) -> dict[str, Any]:
    """The settings with every default filled in from the schema (a plain, JSON-able dict)."""
    value = copy.deepcopy(dict(raw or {}))
    for key, sub in schema.get("properties", {}).items():
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if key in value and isinstance(value[key], dict) and sub.get("type") == "object" and "properties" in sub:
            value[key] = resolve(value[key], sub)
        elif key in value and "anyOf" in sub:
            branch = next((b for b in sub["anyOf"] if b.get("type") == "object" and "properties" in b), None)
            if branch and isinstance(value[key], (int, float)) and not isinstance(value[key], bool) and "p" in branch["properties"]:
                value[key] = {"p": value[key]}  # an augmentation given as its probability alone
            if branch and isinstance(value[key], dict):
                value[key] = resolve(value[key], branch)
    return value


def apply_settings(train: dict[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """`--set train.optimizer.lr=0.01` and `--epochs 3`: dotted keys under train; a problem is located at its --set."""
    out = copy.deepcopy(train)
    for dotted, value in settings.items():
        keys = dotted.split(".")[1:]
        if not keys or not all(keys):
            raise SpecError([Diagnostic(setting_loc(dotted, value), "name a setting under train, e.g. train.epochs=3 or train.optimizer.lr=0.01")])
        node = out
        for i, key in enumerate(keys[:-1]):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                section = ".".join(["train", *keys[: i + 1]])
                raise SpecError([Diagnostic(setting_loc(dotted, value), f"{section} is a value ({show_value(node)}), not a section of settings")])
        node[keys[-1]] = value
    problems = settings_diagnostics(out, settings, TRAIN_SCHEMA) if settings else []
    if problems:
        raise SpecError(problems)
    return out


def freeze_matches(name: str, pattern: str) -> bool:
    """A parameter path matches a freeze pattern by itself or by its module path ('features.*', 'fc', 'layer4.1.bn2')."""
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name.rsplit(".", 1)[0], pattern)


def check_freeze_patterns(patterns: list[str], names: list[str]) -> None:
    """A freeze pattern that matches no parameter path is an error (a typo would otherwise train everything)."""
    for i, pattern in enumerate(patterns):
        if any(freeze_matches(n, pattern) for n in names):
            continue
        tops = sorted({n.split(".", 1)[0] for n in names})
        hint = did_you_mean(pattern, sorted({n.rsplit(".", 1)[0] for n in names}) + [t + ".*" for t in tops])
        message = f"pattern '{pattern}' matches no parameter of the network{hint} (top-level modules: {', '.join(tops)})"
        raise SpecError([Diagnostic(Loc(f"train.transfer.freeze[{i}]", 1, 1), message)])


def setting_locator(tree: Any, settings: Mapping[str, Any], file: str) -> Callable[[str], Loc]:
    """Where a train setting was written, for a dotted key such as 'data.split': '--set' when the command line set it
    (or a part of it), else the key's position in the spec, else the nearest enclosing key's, else the file's start."""

    def locate(key: str) -> Loc:
        given = covering(settings, f"train.{key}".split("."))
        if given is not None:
            return setting_loc(given, settings[given])
        keys = key.split(".")
        for n in range(len(keys), 0, -1):
            loc = loc_of(tree, ("train", *keys[:n]), key=True) if _has_path(tree, ("train", *keys[:n])) else None
            if loc is not None:
                return loc
        return (loc_of(tree, ("train",), key=True) if _has_path(tree, ("train",)) else None) or Loc(file, 1, 1)

    return locate


def _has_path(tree: Any, path: tuple[str, ...]) -> bool:
    node = tree
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return False
        node = node[key]
    return True


def settings_problems(cfg: dict[str, Any], input_shape: tuple[int, ...], locate: Callable[[str], Loc]) -> list[Diagnostic]:
    """The checks of the resolved train settings that need no data and no torch, so `netdsl check` makes them too
    (the data sources repeat them when a run opens its data, for callers of the Python API)."""
    problems: list[Diagnostic] = []
    data = cfg.get("data", {})
    fractions = data.get("split", {})
    if sum(fractions.values()) > 1 + 1e-9:
        listed = ", ".join(f"{k} {v:g}" for k, v in fractions.items())
        problems.append(Diagnostic(locate("data.split"), f"the fractions ({listed}) add up to {sum(fractions.values()):g}, more than the whole data set"))
    source = data.get("source")
    if source is not None and ("test_path" in data or "val_path" in data) and source not in PATH_SPLIT_SOURCES:
        key = "data.test_path" if "test_path" in data else "data.val_path"
        problems.append(Diagnostic(locate(key), f"val_path/test_path need source image_folder, npz, npy or csv, not '{source}'"))
    if source in PATH_SOURCES and "path" not in data:
        problems.append(Diagnostic(locate("data.source"), f"source '{source}' needs data.path"))
    if source == "webdataset" and "urls" not in data:
        example = "'shards/train-{000000..000019}.tar' (netdsl data pack writes them)"
        problems.append(Diagnostic(locate("data.source"), f"source webdataset needs train.data.urls, the training shards, e.g. {example}"))
    if not input_shape:  # not known without building the graph
        return problems
    shape = "x".join(map(str, input_shape))
    if source in ("image_folder", "webdataset") and len(input_shape) != 3:
        problems.append(Diagnostic(locate("data.source"), f"{source} needs an image input (C x H x W); the spec's input is {shape}"))
    if source == "shapes" and (len(input_shape) != 3 or min(input_shape[1:]) < 8):
        problems.append(Diagnostic(locate("data.source"), f"source shapes draws images of at least 8 x 8 (C x H x W); the spec's input is {shape}"))
    channels = input_shape[0] if len(input_shape) in (2, 3) else 1
    setting = data.get("normalize")
    if setting == "imagenet" and channels != 3:
        problems.append(Diagnostic(locate("data.normalize"), f"imagenet statistics are for 3-channel images; the spec's input has {channels}"))
    if isinstance(setting, dict) and (len(setting.get("mean", [])) != channels or len(setting.get("std", [])) != channels):
        problems.append(Diagnostic(locate("data.normalize"), f"mean and std need {channels} value(s), one per input channel"))
    return problems


def check_train_section(tree: Any, file: str, input_shape: tuple[int, ...] | None, settings: Mapping[str, Any] | None = None) -> list[Diagnostic]:
    """settings_problems() for a spec's raw tree and its --set train.* settings, located in the spec (or at --set).

    A section the schema refuses gives nothing here: loading the spec reports that, with its location."""
    import jsonschema

    settings = settings or {}
    raw = tree.get("train") if isinstance(tree, Mapping) else None
    if raw is None and not settings:
        return []
    train = apply_settings(plain(raw) if isinstance(raw, Mapping) else {}, settings)
    if not jsonschema.Draft202012Validator(TRAIN_SCHEMA).is_valid(train):
        return []
    cfg = resolve(train)
    return settings_problems(cfg, input_shape or (), setting_locator(tree, settings, file))
