"""expand, diff, budgets and accepted input sizes."""

from __future__ import annotations

import json

import pytest

import netdsl
from netdsl.analysis.counts import analyze
from netdsl.graph.input_sizes import input_rule
from tests.conftest import SPECS, reference_models

ZOO = sorted(p.stem for p in SPECS.glob("*.yaml"))


@pytest.mark.parametrize("name", ZOO)
def test_expand_is_a_spec_that_means_the_same(cli, tmp_path, name):
    code, text, err = cli("expand", str(SPECS / f"{name}.yaml"))
    assert code == 0, err
    assert "repeat:" not in text and "import:" not in text
    path = tmp_path / "expanded.yaml"
    path.write_text(text)
    a, b = netdsl.load(SPECS / f"{name}.yaml"), netdsl.load(path)
    assert [(n.name, n.op, n.inputs, n.shape, n.layer) for n in a] == [(n.name, n.op, n.inputs, n.shape, n.layer) for n in b]
    assert a.state_dict_shapes() == b.state_dict_shapes()


def test_expand_annotates_shapes_and_counts(cli):
    _, text, _ = cli("expand", str(SPECS / "resnet18.yaml"))
    assert "  - conv2d: {name: conv1, out: 64, kernel: 7, stride: 2, padding: 3, dilation: 1, groups: 1, bias: false}  # 64x112x112, 9,408 params" in text
    assert "- group:  # block basic" in text
    assert text.splitlines()[1] == "# 11,689,512 params (11,689,512 trainable), 9,620 buffer elements, 1,814,073,344 MACs per sample"


def test_diff_reports_changes_and_deltas(cli, tmp_path):
    changed = (SPECS / "resnet18.yaml").read_text().replace("fc, out: num_classes", "fc, out: 10")
    path = tmp_path / "r18_10.yaml"
    path.write_text(changed)
    code, out, _ = cli("diff", str(SPECS / "resnet18.yaml"), str(path))
    assert code == 1
    lines = out.splitlines()
    assert "~ fc: out 1000 -> 10; output 1000 -> 10; params 513,000 -> 5,130 [-507,870 params]" in lines
    assert "params: 11,689,512 -> 11,181,642 (-507,870)" in lines
    assert lines[-1] == "layers: 0 added, 0 removed, 1 changed"


def test_diff_of_identical_specs_exits_0(cli):
    code, out, _ = cli("diff", str(SPECS / "vgg11.yaml"), str(SPECS / "vgg11.yaml"))
    assert code == 0 and "no differences" in out


def test_diff_added_and_removed(cli):
    code, out, _ = cli("diff", str(SPECS / "vgg16.yaml"), str(SPECS / "vgg16_bn.yaml"))
    assert code == 1
    assert "~ features.1: type relu -> batchnorm; params 0 -> 128 [+128 params]" in out  # indices shift when layers are inserted
    assert out.splitlines()[-3:] == [
        "params: 138,357,544 -> 138,365,992 (+8,448)",
        "MACs:   15,470,264,320 -> 15,470,264,320 (+0)",
        "layers: 13 added, 0 removed, 31 changed",
    ]


LIMITED = "netdsl: 1\nname: t\ninput: 3x32x32\nlimits: {params: 2.5M, macs: 50M}\nimport: [resnet]\nlayers:\n  - conv: {out: 64, k: 7, s: 2, p: 3}\n  - repeat: {name: stage, n: 4, layers: [basic: {c: 256, stride: 2}]}\n  - gap\n  - linear: 10\n"


def test_budget_exceeded_names_the_biggest_contributors(cli, spec_file):
    path = spec_file(LIMITED)
    code, _, err = cli("check", str(path))
    assert code == 2
    assert err.splitlines() == [
        f"{path}:4:18: parameters 4,507,402 exceed the budget limits.params = 2,500,000 by 2,007,402; "
        "biggest: stage.1 1,246,720 (28%), stage.2 1,246,720 (28%), stage.3 1,246,720 (28%)",
        f"{path}:4:30: MACs per sample 76,794,368 exceed the budget limits.macs = 50,000,000 by 26,794,368; "
        "biggest: stage.0.conv2 37,748,736 (49%), stage.0.conv1 9,437,184 (12%), stage.1.conv1 9,437,184 (12%)",
    ]


def test_budget_met_passes_and_bad_amounts_are_refused(cli, spec_file):
    assert cli("check", str(spec_file(LIMITED.replace("2.5M, macs: 50M", "5M, macs: 0.1G"))))[0] == 0
    code, _, err = cli("check", str(spec_file(LIMITED.replace("2.5M", "lots"))))
    assert code == 2 and "'params' must be an amount like 5M or 600M; got 'lots'" in err


@pytest.mark.parametrize(
    ("name", "variables"),
    [
        ("alexnet", {}),
        ("vgg11", {}),
        ("vgg16", {}),
        ("vgg16_bn", {}),
        ("vgg19", {}),
        ("resnet18", {}),
        ("resnet50", {}),
        ("resnet152", {}),
        ("resnext50_32x4d", {}),
        ("wide_resnet50_2", {}),
        ("densenet121", {}),
        ("densenet169", {}),
        ("densenet201", {}),
        ("mobilenet_v2", {}),
        ("squeezenet1_1", {}),
        ("inception_v3", {"aux_logits": False}),  # torchvision's min_size is for eval, where the aux head does not run
    ],
)
def test_smallest_input_equals_torchvision_min_size(name, variables):
    # torchvision's weight metadata "min_size" (shared/reference/torchvision/models.json)
    rule = input_rule(netdsl.load(SPECS / f"{name}.yaml", variables=variables))
    assert rule is not None and not rule.exact and rule.maximum is None
    assert [rule.minimum, rule.minimum] == reference_models()[name]["min_size"]


def test_lenet_accepts_a_narrow_range():
    # 32..35 all give 16x5x5 after the second pooling; 36 gives 6x6 and a 576-wide flatten for a 400-input linear layer
    assert str(input_rule(netdsl.load(SPECS / "lenet5.yaml"))) == "H, W from 32 to 35"


def test_divisibility_rule_of_an_encoder_decoder(spec_file):
    unet = (
        "netdsl: 1\nname: u\ninput: 3x64x64\nlayers:\n  - conv: {name: e1, out: 8, k: 3, p: 1}\n  - maxpool: 2\n  - conv: {name: e2, out: 16, k: 3, p: 1}\n"
        "  - maxpool: 2\n  - conv: {out: 16, k: 3, p: 1}\n  - upsample: 2\n  - concat: {from: [e2, 5]}\n  - upsample: 2\n  - concat: {from: [e1, 7]}\n"
    )
    assert str(input_rule(netdsl.load(spec_file(unet)))) == "H, W >= 4 and divisible by 4"


def test_too_small_input_says_the_smallest_that_works(cli):
    code, _, err = cli("summarize", str(SPECS / "alexnet.yaml"), "--input", "3x32x32")
    assert code == 2
    assert err.endswith("the input 3x32x32 is too small: the network accepts H, W >= 63 (smallest: 3x63x63)\n")


def test_summary_states_accepted_input(cli):
    _, out, _ = cli("summarize", str(SPECS / "vgg16.yaml"), "--json")
    assert json.loads(out)["accepted_input"] == "H, W >= 32"


def test_summarize_and_analyze_agree_on_large_networks():
    report = analyze(netdsl.load(SPECS / "preact_resnet1001.yaml"))
    assert report.params == 10_327_706  # He et al. 2016b, pre-activation ResNet-1001 on CIFAR-10


def test_check_json_gives_counts_or_located_errors_per_spec(cli):
    code, out, err = cli("check", "specs/lenet5.yaml", "examples/broken.yaml", "--json")
    assert (code, err) == (2, "")  # one spec failed: the exit status says so; the errors are in the JSON, not on stderr
    lenet, broken = json.loads(out)
    assert lenet == {"spec": "specs/lenet5.yaml", "ok": True, "params": 61_706, "macs": 416_520, "output_shape": [10]}  # LeCun et al. 1998
    assert broken["ok"] is False and [(e["line"], e["col"]) for e in broken["errors"]] == [(7, 30), (8, 5), (9, 14)]
    assert broken["errors"][1]["message"].startswith("unknown layer type 'rellu'; did you mean 'relu'?")
    code, out, _ = cli("check", "specs/vgg16.yaml", "--set", "num_clases=10", "--json")
    (error,) = json.loads(out)[0]["errors"]  # an argument has no line and column
    assert (code, error["file"], error["line"], error["col"]) == (2, "--set num_clases=10", None, None)
