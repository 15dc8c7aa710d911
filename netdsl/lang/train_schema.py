"""The `train:` section's JSON Schema, with the defaults that resolve() fills in (netdsl/lang/train_section.py):
the one source of truth for the training settings. Pure data: the spec schema (schema.py) includes it. And the
recipes shipped in netdsl/recipes: train sections that `train: {extends: NAME}` names."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from netdsl.tasks import LOSS_NAMES, task_schema

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


def recipes() -> dict[str, Path]:
    """The training recipes shipped in netdsl/recipes, by name."""
    folder = Path(str(resources.files("netdsl").joinpath("recipes")))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}
