"""Transfer learning a user can trust: frozen BatchNorm statistics, a report of what was loaded, patterns that must match."""

from __future__ import annotations

import pytest
import torch

from netdsl.errors import SpecError
from netdsl.train.api import train
from netdsl.train.checkpoint import load_checkpoint

BN_NET = """netdsl: 1
name: bnnet
input: 1x12x12
params: {classes: 4}
layers:
  - conv: {name: conv, out: 8, k: 3, p: 1, bias: false}
  - batchnorm: {name: bn}
  - relu
  - maxpool: 2
  - flatten
  - linear: {name: head, out: classes}
train:
  data: {source: synthetic, samples: 160, num_classes: 4, seed: 1}
  optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
  batch_size: 16
  epochs: 1
"""


def quiet(*_: object) -> None:
    return None


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("src")
    spec = folder / "bnnet.yaml"
    spec.write_text(BN_NET)
    return train(spec, out=folder / "runs", log=quiet) / "best.pt"


def finetune(tmp_path, source, transfer: str, classes: int = 4, **kw):
    spec = tmp_path / "ft.yaml"
    spec.write_text(BN_NET.replace("classes: 4}", f"classes: {classes}}}").replace("num_classes: 4", f"num_classes: {classes}") + f"  transfer: {transfer}\n")
    lines: list[str] = []
    run = train(spec, out=tmp_path / "runs", log=lines.append, **kw)
    return run, lines


def test_frozen_batchnorm_keeps_its_loaded_statistics(tmp_path, source):
    loaded = load_checkpoint(source)["model"]
    run, _ = finetune(tmp_path, source, f"{{weights: {source}, freeze: [conv, bn]}}")
    after = load_checkpoint(run / "last.pt")["model"]
    for key in ("bn.running_mean", "bn.running_var", "bn.num_batches_tracked", "bn.weight", "conv.weight"):
        assert torch.equal(after[key], loaded[key]), key  # Keras' rule: a frozen BatchNorm runs in inference mode
    assert not torch.equal(after["head.weight"], loaded["head.weight"])  # the head trained


def test_freeze_bn_stats_false_lets_frozen_batchnorm_statistics_move(tmp_path, source):
    loaded = load_checkpoint(source)["model"]
    run, _ = finetune(tmp_path, source, f"{{weights: {source}, freeze: [conv, bn], freeze_bn_stats: false}}")
    after = load_checkpoint(run / "last.pt")["model"]
    assert torch.equal(after["bn.weight"], loaded["bn.weight"])  # still frozen parameters
    assert not torch.equal(after["bn.running_mean"], loaded["bn.running_mean"])  # but the statistics follow the new data


def test_the_run_says_what_was_loaded_replaced_and_frozen(tmp_path, source):
    _, lines = finetune(tmp_path, source, f"{{weights: {source}, freeze: [conv, bn]}}", classes=3)
    (line,) = [s for s in lines if s.startswith("transfer:")]
    # loaded: conv.weight and bn's weight, bias and three buffers (the head's two are replaced: 4 classes -> 3)
    # frozen: conv.weight 8x1x3x3 = 72 + bn 8 + 8 = 88; trainable: head 3 x (8 x 6 x 6) + 3 = 867
    assert line == (
        f"transfer: 6 tensors loaded from {source}; head replaced (head.bias, head.weight keep their new initialization); "
        "frozen 88 parameters in 3 tensors, trainable 867 in 2"
    )


@pytest.mark.parametrize(
    ("transfer", "message"),
    [
        ("{{weights: {w}, freeze: ['conv', 'layer1.*']}}", "train.transfer.freeze[1]:1:1: pattern 'layer1.*' matches no parameter of the network"),
        ("{{weights: {w}, freeze: ['hed']}}", "train.transfer.freeze[0]:1:1: pattern 'hed' matches no parameter of the network; did you mean 'head'?"),
        ("{{weights: {w}, key_map: {{'model.': ''}}}}", "train.transfer.key_map:1:1: 'model.' is the start of no key in best.pt"),
    ],
)
def test_a_pattern_that_matches_nothing_is_an_error_before_any_run_directory(tmp_path, source, transfer, message):
    with pytest.raises(SpecError) as info:
        finetune(tmp_path, source, transfer.format(w=source))
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert not (tmp_path / "runs").exists()


def test_summarize_counts_what_train_transfer_freeze_freezes(cli, tmp_path):
    from tests.conftest import ROOT

    code, out, err = cli("summarize", str(ROOT / "specs" / "resnet18.yaml"), "--json", "--set", "train.transfer.freeze=[conv1, bn1, 'layer*']")
    assert code == 0, err
    import json

    params = json.loads(out)["params"]
    # torchvision resnet18: 11,689,512 parameters; its fc (512 x 1000 + 1000) = 513,000 stays trainable
    assert params == {"total": 11_689_512, "trainable": 513_000, "frozen": 11_176_512}
    code, out, err = cli("summarize", str(ROOT / "specs" / "resnet18.yaml"), "--set", "train.transfer.freeze=[layr1.*]")
    assert (code, out) == (2, "")
    assert err.startswith("train.transfer.freeze[0]:1:1: pattern 'layr1.*' matches no parameter of the network; did you mean 'layer1.*'?")
