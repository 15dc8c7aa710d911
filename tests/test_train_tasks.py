"""Tasks (netdsl/tasks): choosing one, what each asks of the network, its loss, metrics and presentation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from netdsl.errors import SpecError
from netdsl.graph.load import load_text
from netdsl.tasks import TASKS, infer_task, make_task, serving_task
from netdsl.tasks.base import psnr
from netdsl.tasks.segmentation import ConfusionMeter, soft_dice_loss
from netdsl.train.api import prepare
from netdsl.train.splits import DataError

SEG = """netdsl: 1
name: seg
input: 3x8x8
layers:
  - conv: {name: conv, out: 8, k: 3, p: 1}
  - relu
  - conv: {name: head, out: 4, k: 1}
"""

FLAT = """netdsl: 1
name: flat
input: 3x8x8
layers:
  - flatten
  - linear: {name: head, out: 5}
"""

AUTO = """netdsl: 1
name: auto
input: 1x8x8
layers:
  - conv: {name: conv, out: 4, k: 3, p: 1}
  - conv: {name: back, out: 1, k: 3, p: 1}
  - sigmoid
"""


def spec(tmp_path, text: str, train: str = "") -> str:
    path = tmp_path / "s.yaml"
    path.write_text(text + (f"train:\n{train}" if train else ""))
    return str(path)


def test_every_task_is_registered_with_a_default_loss_among_its_losses():
    assert list(TASKS) == ["classification", "multilabel", "reconstruction", "regression", "segmentation"]
    for cls in TASKS.values():
        assert cls.losses and set(cls.default_metrics) <= set(cls.metrics), cls.name


@pytest.mark.parametrize(
    ("text", "task"),
    [(FLAT, "classification"), (SEG, "segmentation"), (AUTO, "reconstruction")],
)
def test_the_task_is_inferred_from_the_output_and_said(tmp_path, text, task):
    prep = prepare(spec(tmp_path, text))
    assert prep.cfg["task"]["name"] == task
    assert prep.task_note.startswith(f"task: {task} (inferred from the output ")


def test_an_output_that_points_to_no_task_asks_for_one(tmp_path):
    text = SEG.replace("conv: {name: head, out: 4, k: 1}", "conv: {name: head, out: 4, k: 3, s: 2, p: 1}")
    with pytest.raises(SpecError) as exc:
        infer_task(load_text(text, "t.yaml"))
    assert str(exc.value) == (
        "t.yaml:7:5: conv2d 'head': cannot tell the task from the output 4x4x4 for the input 3x8x8; "
        "set train.task (classification, multilabel, reconstruction, regression, segmentation)"
    )


def test_settled_defaults_follow_the_task(tmp_path):
    cfg = prepare(spec(tmp_path, SEG, "  task: segmentation\n")).cfg
    assert cfg["task"] == {"name": "segmentation", "ignore_index": 255}
    assert cfg["loss"]["name"] == "cross_entropy"
    assert cfg["metrics"] == ["miou", "pixel_accuracy"]
    assert cfg["checkpoint"] == {"monitor": "val_loss", "mode": "min"}
    cfg = prepare(spec(tmp_path, AUTO, "  task: {name: reconstruction, noise: {mask: 0.25}}\n  checkpoint: {monitor: val_psnr}\n")).cfg
    assert (cfg["loss"]["name"], cfg["metrics"], cfg["checkpoint"]["mode"]) == ("mse", ["psnr", "mae"], "max")


@pytest.mark.parametrize(
    ("train", "message"),
    [
        (
            "  task: segmentaton\n",
            "s.yaml:9:9: 'task' must be one of 'classification', 'multilabel', 'reconstruction', 'regression', 'segmentation' or a mapping; "
            "got 'segmentaton'; did you mean 'segmentation'?",
        ),
        ("  task: {name: segmentation, noise: {gaussian: 0.1}}\n", "s.yaml:9:9: task 'segmentation' has no option 'noise' (its options: ignore_index)"),
        ("  task: segmentation\n  loss: {name: mse}\n", "s.yaml:10:16: loss 'mse' does not fit task 'segmentation'; use cross_entropy or dice or ce_dice"),
        (
            "  task: segmentation\n  metrics: [accuracy]\n",
            "s.yaml:10:12: metric 'accuracy' is not one of task 'segmentation''s (miou, pixel_accuracy, dice); did you mean 'pixel_accuracy'?",
        ),
        (
            "  task: segmentation\n  checkpoint: {monitor: val_accuracy}\n",
            "s.yaml:10:25: 'val_accuracy' is not a reported metric; did you mean 'val_pixel_accuracy'? "
            "(reported: val_loss, val_miou, val_pixel_accuracy, train_loss, train_miou, train_pixel_accuracy)",
        ),
    ],
)
def test_settings_that_do_not_fit_the_task_are_located(tmp_path, train, message):
    with pytest.raises(SpecError) as exc:
        prepare(spec(tmp_path, SEG, train))
    assert str(exc.value) == f"{tmp_path / message}"


def test_unknown_task_name_gets_a_did_you_mean(tmp_path):
    from netdsl.errors import Loc
    from netdsl.tasks.base import task_class

    with pytest.raises(SpecError) as exc:
        task_class("segmentaton", Loc("s.yaml", 3, 9))
    assert str(exc.value) == (
        "s.yaml:3:9: unknown task 'segmentaton'; did you mean 'segmentation'? (tasks: classification, multilabel, reconstruction, regression, segmentation)"
    )


def test_segmentation_needs_a_class_map_at_the_input_size(tmp_path):
    flat = prepare(spec(tmp_path, FLAT, "  task: segmentation\n"))
    with pytest.raises(SpecError) as exc:
        make_task(flat.cfg, flat.graph, []).check([])
    assert str(exc.value) == (
        f"{tmp_path / 's.yaml'}:6:5: linear 'head': segmentation needs a class map per pixel (C x H x W), but the network outputs 5; "
        "end with a 1x1 conv to the classes and upsample to the input (upsample: {to: input}), or choose another train.task"
    )
    small = prepare(spec(tmp_path, SEG.replace("k: 1}", "k: 1, s: 2}"), "  task: segmentation\n"))
    with pytest.raises(SpecError) as exc:
        make_task(small.cfg, small.graph, []).check([])
    assert "conv2d 'head': the network outputs 4x4x4 but the masks are 8x8 (the input's size); upsample to the input's size" in str(exc.value)


def test_mask_values_beyond_the_classes_are_refused_but_ignore_index_is_not(tmp_path):
    prep = prepare(spec(tmp_path, SEG, "  task: segmentation\n"))
    task = make_task(prep.cfg, prep.graph, [])
    task.check_batch(torch.tensor([[0, 3], [255, 1]]), "masks")
    with pytest.raises(DataError) as exc:
        task.check_batch(torch.tensor([[0, 4]]), "masks")
    assert str(exc.value) == "masks:1:1: a mask holds the value 4, but the network has 4 classes (0 .. 3) other than ignore_index 255"


def test_confusion_meter_gives_miou_pixel_accuracy_and_dice():
    meter = ConfusionMeter(["miou", "pixel_accuracy", "dice"], 3, 255)
    out = torch.zeros(1, 3, 2, 3)
    pred = torch.tensor([[0, 0, 1], [1, 2, 2]])
    out.scatter_(1, pred[None, None], 1.0)
    target = torch.tensor([[[0, 1, 1], [1, 2, 255]]])
    meter.add(torch.tensor(0.5), out, target)
    # truth 0: {0}; 1: {1, 2, 3}; 2: {4}; predictions on the 5 labelled pixels: 0, 0, 1, 1, 2
    iou = [1 / 2, 2 / 3, 1 / 1]
    result = meter.result()
    assert result["miou"] == pytest.approx(sum(iou) / 3)
    assert result["pixel_accuracy"] == pytest.approx(4 / 5)
    assert result["dice"] == pytest.approx((2 / 3 + 4 / 5 + 1) / 3)
    assert [row["iou"] for row in meter.details(["a", "b", "c"])["per_class"]] == pytest.approx(iou)


def test_dice_loss_is_zero_for_a_perfect_confident_answer_and_ignores_ignored_pixels():
    y = torch.tensor([[[0, 1], [2, 255]]])
    logits = torch.nn.functional.one_hot(torch.tensor([[[0, 1], [2, 0]]]), 3).movedim(-1, 1).float() * 50
    assert float(soft_dice_loss(logits, y, 255)) == pytest.approx(0.0, abs=1e-6)
    assert float(soft_dice_loss(-logits, y, 255)) == pytest.approx(2 / 3, abs=1e-4)  # the mass spread over the two wrong classes


def test_psnr():
    assert psnr(0.01) == pytest.approx(20.0)
    assert psnr(0.0) == 100.0


def test_denoising_noise_corrupts_only_the_input(tmp_path):
    prep = prepare(spec(tmp_path, AUTO, "  task: {name: reconstruction, noise: {gaussian: 0.3}}\n"))
    task = make_task(prep.cfg, prep.graph, [])
    x = torch.full((4, 1, 8, 8), 0.5)
    torch.manual_seed(0)
    noisy = task.corrupt(x)
    assert task.target(x, torch.zeros(4)) is x
    assert 0.2 < float((noisy - x).std()) < 0.35 and float(noisy.min()) >= 0 and float(noisy.max()) <= 1
    masked = prepare(spec(tmp_path, AUTO, "  task: {name: reconstruction, noise: {mask: 0.25}}\n"))
    dropped = float((make_task(masked.cfg, masked.graph, []).corrupt(torch.ones(64, 1, 8, 8)) == 0).float().mean())
    assert 0.22 < dropped < 0.28


def test_presentation_of_each_task_is_numpy_only():
    seg = serving_task({"name": "segmentation", "ignore_index": 255}, ["bg", "fg"])
    out = np.zeros((1, 2, 2, 2))
    out[0, 1, 0, :] = 1.0  # the top row is foreground
    [r] = seg.present(out, ["bg", "fg"])
    assert r == {"pixels": {"bg": 0.5, "fg": 0.5}} and seg.line(r) == "bg 50.0%, fg 50.0%"
    assert seg.picture(out[0]).tolist() == [[1, 1], [0, 0]]
    cls = serving_task(None, ["a", "b"])
    [r] = cls.present(np.array([[0.0, math.log(3.0)]]), ["a", "b"], top=2)
    assert cls.line(r) == "b (75.0%), a (25.0%)"
    ml = serving_task({"name": "multilabel", "threshold": 0.5}, ["x", "y", "z"])
    [r] = ml.present(np.array([[2.0, -2.0, 0.1]]), ["x", "y", "z"])
    assert r["on"] == ["x", "z"] and ml.line(r) == "x (88.1%), z (52.5%)"
    reg = serving_task("regression", [])
    assert reg.line(reg.present(np.array([[1.5, 2.25]]), [])[0]) == "1.5, 2.25"


def test_multi_output_weights_must_match_the_outputs(tmp_path):
    with pytest.raises(SpecError) as exc:
        prepare(spec(tmp_path, FLAT, "  loss: {output_weights: [1, 0.3]}\n"))
    assert str(exc.value) == f"{tmp_path / 's.yaml'}:8:26: 2 weight(s) for 1 output(s) (head)"
