"""The `train:` section: its JSON Schema (with defaults) and the resolved settings. Torch-free.

The schema is the one source of truth: validation uses it, and `resolve()` fills every default from it,
so the run's resolved.yaml shows every setting that was in force.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable, Mapping
from typing import Any

from netdsl.errors import Diagnostic, Loc
from netdsl.train.tasks import LOSS_NAMES, task_schema

NUM = {"type": "number"}
PROB = {"type": "number", "minimum": 0, "maximum": 1}
POS = {"type": "number", "exclusiveMinimum": 0}
COUNT = {"type": "integer", "minimum": 1}
PAIR = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
STR_LIST = {"type": "array", "items": {"type": "string"}}
MONITOR = {
    "type": "string",
    "pattern": "^(train|val)_[a-z][a-z0-9_]*$",
    "description": "val_ or train_ and a reported metric (loss or one of train.metrics); default val_loss",
}
MODE = {"enum": ["min", "max"], "description": "default: max for metrics where higher is better (accuracy, miou, psnr, f1, ...), else min"}


def obj(properties: dict[str, Any], required: tuple[str, ...] = (), description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        out["required"] = list(required)
    if description:
        out["description"] = description
    return out


def d(schema: dict[str, Any], default: Any, description: str = "") -> dict[str, Any]:
    out = {**schema, "default": default}
    if description:
        out["description"] = description
    return out


def aug(description: str, p: float = 0.5, **extra: Any) -> dict[str, Any]:
    """An augmentation: a probability alone, or its options mapping."""
    return {"description": description, "anyOf": [PROB, obj({"p": d(PROB, p, "probability per sample"), **extra})]}


SOURCES = ["digits", "synthetic", "shapes", "image_folder", "npz", "npy", "csv", "mnist_idx", "cifar10_bin", "webdataset"]
PATH_SOURCES = ("image_folder", "npz", "npy", "csv", "mnist_idx", "cifar10_bin")  # need train.data.path
PATH_SPLIT_SOURCES = ("image_folder", "npz", "npy", "csv")  # take val_path / test_path

DATA = obj(
    {
        "source": {"enum": SOURCES, "description": "where the samples come from (required: no data set is assumed)"},
        "path": {"type": "string", "description": "file or folder for image_folder, npz, npy, csv, mnist_idx, cifar10_bin (relative to the spec)"},
        "val_path": {"type": "string", "description": "a separate validation set (same format), instead of a split"},
        "test_path": {"type": "string", "description": "a separate test set (same format), instead of a split"},
        "urls": {"type": "string", "description": "webdataset: training shards, brace notation: 'shards/train-{000000..000127}.tar'"},
        "val_urls": {"type": "string", "description": "webdataset: validation shards"},
        "test_urls": {"type": "string", "description": "webdataset: test shards"},
        "split": d(obj({"train": PROB, "val": PROB, "test": PROB}), {"train": 0.7, "val": 0.1, "test": 0.2}, "fractions of one data set"),
        "shuffle": d({"type": "boolean"}, True, "shuffle before splitting"),
        "seed": d({"type": "integer", "minimum": 0}, 0, "seed of the split (and of the synthetic and shapes data)"),
        "normalize": d(
            {
                "anyOf": [
                    {"type": "boolean"},
                    {"enum": ["imagenet"]},
                    obj({"mean": {"type": "array", "items": NUM}, "std": {"type": "array", "items": POS}}, ("mean", "std")),
                ]
            },
            True,
            "true: per-channel mean/std of a sample of the training split (stats_samples); imagenet: the ImageNet statistics "
            "that pretrained backbones expect; or given {mean, std}; false: none",
        ),
        "stats_samples": d(COUNT, 1000, "training samples (a seeded random choice) that normalize: true computes its statistics from"),
        "skip_corrupt": d(
            {"type": "boolean"}, False, "image_folder/webdataset: skip images that cannot be decoded (listed in skipped_files.txt) instead of stopping"
        ),
        "classes": {"type": "array", "items": {"type": "string"}, "description": "class names (default: from the source)"},
        "samples": d(COUNT, 512, "synthetic, shapes: number of samples"),
        "label_column": d({"type": "string"}, "label", "csv: the column holding the targets (every other column is a feature, in file order)"),
        "num_classes": d(COUNT, 10, "synthetic: number of classes"),
        "shuffle_buffer": d({"type": "integer", "minimum": 0}, 1000, "webdataset: samples shuffled within each worker's stream (0: shard order only)"),
    },
    description="data source, split, normalization",
)

AUGMENTATION = obj(
    {
        "hflip": aug("random horizontal flip"),
        "vflip": aug("random vertical flip"),
        "crop": aug("random crop after zero padding (CIFAR style)", 1.0, padding=d(COUNT, 4)),
        "resized_crop": aug("random resized crop back to the input size", 1.0, scale=d(PAIR, [0.08, 1.0]), ratio=d(PAIR, [0.75, 1.3333])),
        "rotation": aug("random rotation", degrees=d(POS, 15.0)),
        "perspective": aug("random perspective warp", distortion=d(PROB, 0.5)),
        "color_jitter": aug(
            "random brightness/contrast/saturation/hue",
            brightness=d(PROB, 0.2),
            contrast=d(PROB, 0.2),
            saturation=d(PROB, 0.2),
            hue=d({"type": "number", "minimum": 0, "maximum": 0.5}, 0.0),
        ),
        "erasing": aug("random erasing of a rectangle", scale=d(PAIR, [0.02, 0.33]), ratio=d(PAIR, [0.3, 3.3])),
    },
    description="training-only augmentation, batched on the training device (kornia)",
)

OPTIMIZER = obj(
    {
        "name": d({"enum": ["sgd", "adam", "adamw", "rmsprop"]}, "adam"),
        "lr": d(POS, 0.001, "learning rate"),
        "momentum": d(PROB, 0.9, "sgd and rmsprop"),
        "nesterov": d({"type": "boolean"}, False, "sgd"),
        "betas": d(PAIR, [0.9, 0.999], "adam and adamw"),
        "weight_decay": d({"type": "number", "minimum": 0}, 0.0, "L2 penalty (decoupled for adamw)"),
        "l1": d({"type": "number", "minimum": 0}, 0.0, "L1 penalty added to the loss: l1 * sum(|w|)"),
        "groups": d(
            {"type": "array", "items": obj({"params": {"type": "string"}, "lr": POS, "weight_decay": {"type": "number", "minimum": 0}}, ("params",))},
            [],
            "per-layer-group settings, first match wins: [{params: 'features.*', lr: 1e-4}]",
        ),
        "clip_grad_norm": {"type": "number", "exclusiveMinimum": 0, "description": "clip the global gradient norm"},
        "accumulate": d(COUNT, 1, "gradient accumulation steps"),
    }
)

SCHEDULE = obj(
    {
        "name": d({"enum": ["none", "step", "multistep", "cosine", "onecycle", "plateau"]}, "none"),
        "step_size": d(COUNT, 10, "step: epochs between decays"),
        "gamma": d(POS, 0.1, "step/multistep: decay factor"),
        "milestones": d({"type": "array", "items": COUNT}, [], "multistep: epochs"),
        "warmup_epochs": d({"type": "integer", "minimum": 0}, 0, "cosine: linear warmup"),
        "min_lr": d({"type": "number", "minimum": 0}, 0.0, "cosine: final learning rate"),
        "max_lr": {"type": "number", "exclusiveMinimum": 0, "description": "onecycle: peak (default: optimizer lr)"},
        "patience": d({"type": "integer", "minimum": 0}, 3, "plateau"),
        "factor": d(PROB, 0.1, "plateau"),
    }
)

LOSS = obj(
    {
        "name": {"enum": list(LOSS_NAMES), "description": "default: the task's (cross_entropy, mse or bce_with_logits); dice and ce_dice for segmentation"},
        "label_smoothing": d({"type": "number", "minimum": 0, "maximum": 1}, 0.0),
        "class_weights": {"type": "array", "items": {"type": "number", "minimum": 0}, "description": "one weight per class (multilabel: positive weights)"},
        "output_weights": {
            "type": "array",
            "items": {"type": "number", "minimum": 0},
            "minItems": 1,
            "description": "multi-output networks: the weight of each output's loss, in the order of `outputs:` (default 1 for the main one, 0.3 for the others)",
        },
    }
)

TRANSFER = obj(
    {
        "weights": {"type": "string", "description": ".pt (state dict or checkpoint) or .safetensors, relative to the spec"},
        "strict": d({"type": "boolean"}, True, "every key must match (false: load what fits, report the rest)"),
        "key_map": d({"type": "object", "additionalProperties": {"type": "string"}}, {}, "rename key prefixes: {old.: new.}"),
        "freeze": d(STR_LIST, [], "module-path patterns to freeze, e.g. 'features.*'; a pattern that matches nothing is an error"),
        "freeze_bn_stats": d({"type": "boolean"}, True, "frozen layers' BatchNorm keeps its running statistics (eval mode), as Keras does"),
        "unfreeze_at": {"type": "integer", "minimum": 1, "description": "epoch (1-based) from which frozen layers train again"},
        "replace_head": d({"type": "boolean"}, True, "when the weights' head has another number of classes, keep the new head"),
    },
    description="transfer learning: start from weights, freeze, fine-tune",
)

TRAIN_SCHEMA = obj(
    {
        "data": d(DATA, {}),
        "augmentation": d(AUGMENTATION, {}),
        "optimizer": d(OPTIMIZER, {}),
        "schedule": d(SCHEDULE, {}),
        "task": task_schema(),
        "loss": d(LOSS, {}),
        "metrics": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
            "description": "metrics reported besides the loss (default: the task's); classification: accuracy, topK, mse, mae; segmentation: miou, "
            "pixel_accuracy, dice; reconstruction: psnr, mae, mse, input_psnr; regression: mae, mse, rmse; multilabel: f1, precision, recall, exact_match",
        },
        "epochs": d(COUNT, 10),
        "batch_size": d(COUNT, 64),
        "early_stopping": obj(
            {
                "monitor": MONITOR,
                "mode": MODE,
                "patience": d(COUNT, 5),
                "min_delta": d({"type": "number", "minimum": 0}, 0.0),
            }
        ),
        "checkpoint": d(
            obj({"monitor": MONITOR, "mode": MODE, "every_steps": {"type": "integer", "minimum": 1}}),
            {},
            "last.pt every epoch (and every_steps), best.pt by the monitored metric",
        ),
        "device": d({"enum": ["auto", "cpu", "cuda"]}, "auto"),
        "precision": d({"enum": ["fp32", "bf16", "fp16"]}, "fp32", "mixed precision: bf16 on CPU or CUDA, fp16 (with loss scaling) on CUDA"),
        "seed": d({"type": "integer", "minimum": 0}, 0),
        "deterministic": d({"type": "boolean"}, True, "deterministic algorithms: identical runs give identical weights"),
        "workers": {
            "anyOf": [{"type": "integer", "minimum": 0}, {"enum": ["auto"]}],
            "default": "auto",
            "description": "DataLoader worker processes that read and decode samples (0: the main process; auto: min(8, CPUs per process - 1))",
        },
        "log": d(
            {"type": "array", "items": {"enum": ["csv", "tensorboard", "mlflow"]}, "uniqueItems": True},
            ["csv"],
            "where per-epoch metrics go besides metrics.csv/jsonl (always written): tensorboard event files in the run directory, mlflow runs",
        ),
        "mlflow": d(
            obj(
                {
                    "tracking_uri": {"type": "string", "description": "an MLflow server (http://host:port) or store URI; default: sqlite:///<out>/mlflow.db"},
                    "experiment": {"type": "string", "description": "experiment name (default: the spec's name)"},
                }
            ),
            {},
            "MLflow settings (with log: [mlflow])",
        ),
        "transfer": TRANSFER,
    },
    description="training settings (netdsl train)",
)


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


def freeze_matches(name: str, pattern: str) -> bool:
    """A parameter path matches a freeze pattern by itself or by its module path ('features.*', 'fc', 'layer4.1.bn2')."""
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name.rsplit(".", 1)[0], pattern)


def check_freeze_patterns(patterns: list[str], names: list[str]) -> None:
    """A freeze pattern that matches no parameter path is an error (a typo would otherwise train everything)."""
    from netdsl.errors import SpecError, did_you_mean

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
    from netdsl.overrides import covering, setting_loc
    from netdsl.spec.yaml_tree import loc_of

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

    from netdsl.spec.yaml_tree import plain
    from netdsl.train.api import apply_settings

    settings = settings or {}
    raw = tree.get("train") if isinstance(tree, Mapping) else None
    if raw is None and not settings:
        return []
    train = apply_settings(plain(raw) if isinstance(raw, Mapping) else {}, settings)
    if not jsonschema.Draft202012Validator(TRAIN_SCHEMA).is_valid(train):
        return []
    cfg = resolve(train)
    return settings_problems(cfg, input_shape or (), setting_locator(tree, settings, file))
