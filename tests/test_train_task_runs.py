"""Training every task end to end (tiny networks, tiny data): segmentation, reconstruction, regression, multilabel,
1-D signals and multi-output networks -- run directory, results, eval pictures, predict outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from netdsl.errors import SpecError
from netdsl.train.api import train
from netdsl.train.checkpoint import load_checkpoint
from netdsl.train.evaluation import evaluate, predict

SEG = """netdsl: 1
name: seg
input: 3x16x16
layers:
  - conv: {name: c1, out: 8, k: 3, p: 1}
  - relu
  - maxpool: 2
  - conv: {name: c2, out: 8, k: 3, p: 1}
  - relu
  - deconv: {name: up, out: 8, k: 2, s: 2}
  - relu
  - conv: {name: head, out: 4, k: 1}
train:
  task: segmentation
  data: {source: shapes, samples: 96}
  augmentation: {hflip: 0.5}
  batch_size: 16
  epochs: 2
  checkpoint: {monitor: val_miou}
"""

AUTO = """netdsl: 1
name: denoise
input: 1x8x8
layers:
  - conv: {name: enc, out: 8, k: 3, p: 1}
  - relu
  - conv: {name: dec, out: 1, k: 3, p: 1}
  - sigmoid
train:
  task: {name: reconstruction, noise: {gaussian: 0.3}}
  data: {source: digits, normalize: false}
  metrics: [psnr, input_psnr, mae]
  batch_size: 64
  epochs: 2
"""


def quiet(*_: object) -> None:
    return None


def write(tmp_path, text: str, name: str = "s.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_segmentation_trains_evaluates_and_predicts_masks(tmp_path):
    lines: list[str] = []
    run = train(write(tmp_path, SEG), out=tmp_path / "runs", log=lines.append)
    assert lines[0] == "task: segmentation"
    results = json.loads((run / "results.json").read_text())
    assert 0 <= results["test_miou"] <= 1 and 0 <= results["test_pixel_accuracy"] <= 1
    assert [r["class"] for r in results["test_per_class"]] == ["background", "circle", "square", "triangle"]
    assert any(line.strip().startswith("background  IoU") for line in lines)
    metrics = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train_miou", "val_miou", "val_pixel_accuracy"} <= set(metrics)
    result = evaluate(write(tmp_path, SEG), run / "best.pt", tmp_path / "examples.png")
    assert result["task"] == "segmentation" and result["test_samples"] == results["test_samples"]
    assert result["test_miou"] == pytest.approx(results["test_miou"], abs=1e-6)  # the same best weights, the same test split
    assert Image.open(tmp_path / "examples.png").size[0] > 300
    image = tmp_path / "in.png"
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(image)
    [p] = predict(write(tmp_path, SEG), run / "best.pt", [str(image)], out=tmp_path / "masks")
    assert sum(p["pixels"].values()) == pytest.approx(1.0, abs=1e-5)
    mask = Image.open(p["output_png"])
    assert mask.mode == "P" and mask.size == (16, 16) and set(np.unique(np.asarray(mask))) <= {0, 1, 2, 3}


def test_denoising_autoencoder_reports_psnr_of_output_and_noisy_input(tmp_path):
    run = train(write(tmp_path, AUTO), out=tmp_path / "runs", log=quiet)
    results = json.loads((run / "results.json").read_text())
    assert {"test_psnr", "test_input_psnr", "test_mae"} <= set(results)
    assert 5 < results["test_input_psnr"] < 20  # sigma 0.3 noise on [0, 1] digits, clipped: about 12 dB
    result = evaluate(write(tmp_path, AUTO), run / "best.pt", tmp_path / "ex.png")
    assert result["test_input_psnr"] == pytest.approx(results["test_input_psnr"], abs=1e-6)  # the same seeded noise
    assert (tmp_path / "ex.png").exists()


def test_regression_on_signals_from_an_npz(tmp_path):
    g = np.random.default_rng(0)
    x = g.random((120, 3, 32), dtype=np.float32)
    y = np.stack([x.mean((1, 2)), x[:, 0].max(1)], 1).astype(np.float32)
    np.savez(tmp_path / "sig.npz", x=x, y=y)
    spec = write(
        tmp_path,
        """netdsl: 1
name: reg
input: 3x32
layers:
  - conv1d: {name: conv, out: 8, k: 3, p: 1}
  - relu
  - flatten
  - linear: {name: head, out: 2}
train:
  task: regression
  data: {source: npz, path: sig.npz, normalize: false}
  batch_size: 20
  epochs: 3
""",
    )
    run = train(spec, out=tmp_path / "runs", log=quiet)
    results = json.loads((run / "results.json").read_text())
    assert set(results) >= {"test_loss", "test_mae", "test_rmse"}
    assert results["test_rmse"] == pytest.approx(results["test_loss"] ** 0.5, rel=1e-4)  # mse loss: rmse is its root
    assert results["test_mae"] < 1.0


def test_multilabel_from_an_npz_reports_f1(tmp_path):
    g = np.random.default_rng(1)
    x = g.random((90, 12), dtype=np.float32)
    y = (x[:, :3] > 0.5).astype(np.float32)
    np.savez(tmp_path / "ml.npz", x=x, y=y)
    spec = write(
        tmp_path,
        """netdsl: 1
name: ml
input: 12
layers:
  - linear: {name: hidden, out: 16}
  - relu
  - linear: {name: head, out: 3}
train:
  task: multilabel
  data: {source: npz, path: ml.npz, normalize: false}
  optimizer: {lr: 0.01}
  batch_size: 15
  epochs: 8
""",
    )
    run = train(spec, out=tmp_path / "runs", log=quiet)
    results = json.loads((run / "results.json").read_text())
    assert results["test_f1"] > 0.6  # three thresholded inputs: learnable in a few epochs


def test_a_time_series_classifier_trains_on_synthetic_signals(tmp_path):
    spec = write(
        tmp_path,
        """netdsl: 1
name: ts
input: 3x64
layers:
  - conv1d: {name: conv, out: 8, k: 5, p: 2}
  - relu
  - global_avgpool
  - linear: {name: head, out: 4}
train:
  data: {source: synthetic, samples: 128, num_classes: 4}
  batch_size: 32
  epochs: 1
""",
    )
    lines: list[str] = []
    run = train(spec, out=tmp_path / "runs", log=lines.append)
    assert lines[0] == "task: classification (inferred from the output 4 for the input 3x64; set train.task to choose)"
    assert len(yaml_normalize(run)["mean"]) == 3  # per channel of the 3 x 64 input


def yaml_normalize(run):
    import yaml

    return yaml.safe_load((run / "resolved.yaml").read_text())["train"]["data"]["normalize"]


MULTI = """netdsl: 1
name: multi
input: 1x8x8
outputs: [head, aux]
layers:
  - conv: {name: conv, out: 4, k: 3, p: 1}
  - relu
  - flatten: {name: flat}
  - linear: {name: aux, out: 10}
  - linear: {name: head, from: flat, out: 10}
train:
  data: {source: digits}
  optimizer: {name: adam, lr: 0.01}
  batch_size: 64
  epochs: 1
"""


@pytest.mark.parametrize(("weights", "aux_moves"), [(None, True), ("[1, 0]", False)])
def test_auxiliary_outputs_train_with_their_loss_weight(tmp_path, weights, aux_moves):
    text = MULTI + (f"  loss: {{output_weights: {weights}}}\n" if weights else "")
    run = train(write(tmp_path, text), out=tmp_path / "runs", log=quiet)
    from netdsl.backends.pytorch import compile as compile_spec

    start = compile_spec(write(tmp_path, text), seed=0).state_dict()
    end = load_checkpoint(run / "last.pt")["model"]
    assert not torch.equal(start["head.weight"], end["head.weight"])
    assert torch.equal(start["aux.weight"], end["aux.weight"]) is not aux_moves
    resolved = (run / "resolved.yaml").read_text()
    assert "outputs:" in resolved


def test_segmentation_of_a_flat_output_is_refused_before_any_run(tmp_path):
    text = SEG.replace("  - conv: {name: head, out: 4, k: 1}\n", "  - flatten\n  - linear: {name: head, out: 4}\n")
    with pytest.raises(SpecError) as exc:
        train(write(tmp_path, text), out=tmp_path / "runs", log=quiet)
    assert "linear 'head': segmentation needs a class map per pixel (C x H x W), but the network outputs 4;" in str(exc.value)
    assert not (tmp_path / "runs").exists()


def test_segmentation_classes_must_match_the_output_maps(tmp_path):
    text = SEG.replace("conv: {name: head, out: 4, k: 1}", "conv: {name: head, out: 3, k: 1}")
    with pytest.raises(SpecError) as exc:
        train(write(tmp_path, text), out=tmp_path / "runs", log=quiet)
    assert str(exc.value).endswith(
        "s.yaml:12:5: conv2d 'head': the network outputs 3 class maps but the data has 4 classes (background, circle, square, triangle); "
        "make the last conv output 4"
    )


def test_regression_targets_of_another_shape_name_both_shapes_and_the_last_layer(tmp_path):
    np.savez(tmp_path / "r.npz", x=np.zeros((8, 4), np.float32), y=np.zeros((8, 3), np.float32))
    spec = write(
        tmp_path,
        """netdsl: 1
name: reg
input: 4
layers:
  - linear: {name: head, out: 2}
train:
  task: regression
  data: {source: npz, path: r.npz}
""",
    )
    with pytest.raises(SpecError) as exc:
        train(spec, out=tmp_path / "runs", log=quiet)
    assert str(exc.value) == (
        f"{tmp_path / 'r.npz'}:1:1: y is 8x3, 3 per sample, but the network outputs 2 per sample (its last layer: {spec}:5:5 linear 'head')"
    )


def test_googlenet_trains_its_auxiliary_heads_with_the_papers_weights(tmp_path):
    # torchvision's GoogLeNet layout with both auxiliary classifiers (specs/googlenet.yaml), at 64x64 and 10 classes
    from tests.conftest import SPECS

    lines: list[str] = []
    settings = {"train.data": {"source": "synthetic", "samples": 16, "num_classes": 10}, "train.batch_size": 8, "train.epochs": 1}
    run = train(SPECS / "googlenet.yaml", out=tmp_path / "runs", settings=settings, variables={"num_classes": 10}, input_shape="3x64x64", log=lines.append)
    end = load_checkpoint(run / "last.pt")["model"]
    from netdsl.backends.pytorch import compile as compile_spec

    start = compile_spec(SPECS / "googlenet.yaml", variables={"num_classes": 10}, input_shape="3x64x64", seed=0).state_dict()
    for head in ("fc.weight", "aux1.fc2.weight", "aux2.fc2.weight"):  # every head learns: the aux losses reach their weights
        assert not torch.equal(start[head], end[head]), head
    assert json.loads((run / "results.json").read_text())["test_samples"] > 0


def test_segnet_trains_on_the_shapes_set(tmp_path):
    from tests.conftest import SPECS

    settings = {"train.task": "segmentation", "train.data": {"source": "shapes", "samples": 12}, "train.batch_size": 4, "train.epochs": 1}
    run = train(SPECS / "segnet.yaml", out=tmp_path / "runs", settings=settings, variables={"num_classes": 4}, input_shape="3x32x32", log=quiet)
    results = json.loads((run / "results.json").read_text())
    assert [r["class"] for r in results["test_per_class"]] == ["background", "circle", "square", "triangle"]
