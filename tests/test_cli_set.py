"""`--set` errors: located at the argument as typed (no fake :1:1), worded as spec errors are; the argument Loc form."""

from __future__ import annotations

import pytest

import netdsl
from netdsl.errors import Loc, SpecError, input_error
from netdsl.graph.load import parse_assignment
from netdsl.lang.overrides import SetKey, setting_loc
from netdsl.lang.train_section import apply_settings

SPEC = """netdsl: 1
name: tiny
input: 1x8x8
params:
  width: 4
  mode: {default: fast, choices: [fast, exact]}  # declared with choices, to check --set against them
train:
  epochs: 3
  data: {source: digits}
layers:
  - conv2d: {out: width, k: 3}
  - relu
"""
OPTIMIZER = "name, lr, momentum, nesterov, betas, weight_decay, l1, groups, clip_grad_norm, accumulate"
TRAIN = (
    "data, augmentation, optimizer, schedule, task, loss, metrics, epochs, batch_size, early_stopping, checkpoint, device, "
    "precision, seed, deterministic, workers, log, mlflow, transfer"
)
NEEDS_EQUALS = "expected KEY=VALUE (a spec parameter, e.g. num_classes=10, or a train setting, e.g. train.epochs=3)"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("train.lrr=0.1", f"train has no setting 'lrr'; did you mean 'train.optimizer.lr'? (settings: {TRAIN})"),
        ("train.optimizer.lrr=0.1", f"train.optimizer has no setting 'lrr'; did you mean 'lr'? (settings: {OPTIMIZER})"),
        ("train.epochs=abc", "train.epochs must be an integer >= 1; got 'abc'"),
        ("train.epochs=0", "train.epochs must be an integer >= 1; got 0"),
        ("train.optimizer.lr=-1", "train.optimizer.lr must be a number > 0; got -1"),
        ("train.optimizer.name=adamm", "train.optimizer.name must be one of 'sgd', 'adam', 'adamw', 'rmsprop'; got 'adamm'; did you mean 'adam'?"),
        ("train.epochs.x=3", "train.epochs is a value (3), not a section of settings"),
        ("train.=3", "name a setting under train, e.g. train.epochs=3 or train.optimizer.lr=0.01"),
        ("lr0.1", f"{NEEDS_EQUALS}; got no '='"),
        ("=0.1", f"{NEEDS_EQUALS}; got no KEY before '='"),
        ("widht=8", "the spec has no parameter 'widht'; did you mean 'width'? (parameters: width_mult, depth_mult, width, mode)"),
        ("mode=slow", "parameter 'mode': 'slow' is not one of fast, exact"),
    ],
)
@pytest.mark.parametrize("command", ["check", "summarize"])
def test_a_bad_set_is_one_line_at_the_argument(cli, spec_file, command, setting, message):
    spec = spec_file(SPEC)
    assert cli(command, str(spec), "--set", setting) == (2, "", f"--set {setting}: {message}\n")


def test_each_bad_set_is_reported_at_its_own_argument(cli, spec_file):
    spec = spec_file(SPEC)
    code, _, err = cli("check", str(spec), "--set", "train.epochs=abc", "--set", "train.optimizer.lr=0", "--set", "train.seed=1")
    assert code == 2
    assert err.splitlines() == [
        "--set train.epochs=abc: train.epochs must be an integer >= 1; got 'abc'",
        "--set train.optimizer.lr=0: train.optimizer.lr must be a number > 0; got 0",
    ]


def test_train_refuses_a_bad_set_before_making_a_run_directory(cli, spec_file, tmp_path):
    spec = spec_file(SPEC)
    code, out, err = cli("train", str(spec), "--out", str(tmp_path / "runs"), "--set", "train.device=gpu")
    assert (code, out) == (2, "")
    assert err == "--set train.device=gpu: train.device must be one of 'auto', 'cpu', 'cuda'; got 'gpu'; did you mean 'cpu'?\n"
    assert not (tmp_path / "runs").exists()


def test_good_sets_still_apply(cli, spec_file):
    spec = spec_file(SPEC)
    code, out, err = cli("check", str(spec), "--set", "width=2", "--set", "train.optimizer.lr=0.01", "--set", "mode=exact")
    assert (code, err) == (0, "")
    assert out == f"{spec}: ok (20 params, 648 MACs, output 2x6x6)\n"  # conv 1 -> 2 channels, 3x3 on 8x8: 2*9+2 params, 2*6*6*9 MACs


def test_python_api_settings_are_located_as_the_set_they_stand_for():
    with pytest.raises(SpecError) as info:
        apply_settings({}, {"train.optimizer.lrr": 0.1})
    assert str(info.value) == f"--set train.optimizer.lrr=0.1: train.optimizer has no setting 'lrr'; did you mean 'lr'? (settings: {OPTIMIZER})"
    with pytest.raises(SpecError) as info:
        netdsl.load_text(SPEC, "t.yaml", variables={"widht": [1, 2]})
    assert str(info.value) == "--set widht=[1, 2]: the spec has no parameter 'widht'; did you mean 'width'? (parameters: width_mult, depth_mult, width, mode)"


def test_parse_assignment_keeps_the_argument_and_a_yaml_value():
    key, value = parse_assignment(" train.optimizer.lr =1e-2")
    assert (key, value) == ("train.optimizer.lr", "1e-2")  # YAML 1.1 reads 1e-2 as a string; the schema then refuses it
    assert isinstance(key, SetKey) and key.where == "--set  train.optimizer.lr =1e-2"
    assert parse_assignment("flag=true") == ("flag", True)
    assert str(setting_loc(SetKey("train.optimizer.lr", "--lr 5"))) == "--lr 5"  # a shortcut flag names itself


def test_argument_locations_print_without_a_line_and_column():
    assert str(Loc.argument("--set a=b")) == "--set a=b"
    assert str(Loc.argument("--set a=\x1b[31m")) == "--set a=\\x1b[31m"  # an escape sequence must not reach the terminal
    assert str(Loc("spec.yaml", 3, 7)) == "spec.yaml:3:7"
    assert sorted([Loc("b", 1, 1), Loc.argument("a")]) == [Loc.argument("a"), Loc("b", 1, 1)]


def test_input_error_locates_an_option_as_itself_and_a_file_at_its_start():
    assert str(input_error("--batch", "--batch must be >= 1")) == "--batch: --batch must be >= 1"
    assert str(input_error("model.onnx", "not a model")) == "model.onnx:1:1: not a model"  # a file keeps its position
