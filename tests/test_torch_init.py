"""Initialization declared in the spec: methods, per-type defaults, per-layer overrides, zero-init of residual branches, seeds."""

from __future__ import annotations

import math

import pytest
import torch

import netdsl
from netdsl.backends.init import residual_norms
from netdsl.errors import SpecError
from tests.conftest import SPECS


def compile_text(body: str, init: str = "", **options) -> torch.nn.Module:
    text = f"netdsl: 1\nname: t\ninput: 64x16x16\n{init}layers:\n{body}"
    return netdsl.compile(netdsl.load_text(text, "t.yaml"), **options)


def test_seed_makes_initialization_reproducible():
    a = netdsl.compile(SPECS / "lenet5.yaml", seed=3).state_dict()
    b = netdsl.compile(SPECS / "lenet5.yaml", seed=3).state_dict()
    c = netdsl.compile(SPECS / "lenet5.yaml", seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["c1.weight"], c["c1.weight"])


def test_seed_in_the_spec_and_global_rng_untouched():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    compile_text("  - conv: 8\n", "init: {seed: 5}\n")
    assert torch.equal(torch.rand(1), before)  # the build forks the RNG; the caller's stream is untouched
    a = compile_text("  - conv: 8\n", "init: {seed: 5}\n")
    b = compile_text("  - conv: 8\n", "init: {seed: 5}\n")
    assert torch.equal(a.get_submodule("0").weight, b.get_submodule("0").weight)


def test_kaiming_normal_fan_out_by_type():
    model = compile_text("  - conv: {out: 256, k: 3, bias: true}\n", "init: {seed: 0, conv2d: {method: kaiming_normal, mode: fan_out, nonlinearity: relu}}\n")
    conv = model.get_submodule("0")
    expected_std = math.sqrt(2 / (256 * 3 * 3))  # He et al. 2015: std = gain / sqrt(fan_out), gain = sqrt(2) for ReLU
    assert abs(conv.weight.std().item() - expected_std) / expected_std < 0.05
    assert torch.count_nonzero(conv.bias) == 0  # bias zeroed whenever a weight method is given


@pytest.mark.parametrize(
    ("init", "check"),
    [
        ("zeros", lambda w: torch.count_nonzero(w) == 0),
        ("ones", lambda w: torch.all(w == 1)),
        ("{method: constant, val: 0.25}", lambda w: torch.all(w == 0.25)),
        ("{method: uniform, a: -0.1, b: 0.1}", lambda w: w.abs().max() <= 0.1),
        ("glorot_uniform", lambda w: w.abs().max() <= math.sqrt(6 / (64 * 9 + 8 * 9))),  # Glorot & Bengio 2010 bound
        ("{method: normal, std: 0.001}", lambda w: w.std() < 0.002),
        ("orthogonal", lambda w: torch.allclose(w.flatten(1) @ w.flatten(1).T, torch.eye(8), atol=1e-5)),
    ],
)
def test_methods(init, check):
    model = compile_text(f"  - conv: {{out: 8, k: 3, init: {init}}}\n")
    assert check(model.get_submodule("0").weight.detach())


def test_layer_init_beats_type_default_and_bias_constant():
    model = compile_text("  - conv: {out: 8, k: 1, init: {method: ones, bias: 0.5}}\n  - conv: {out: 8, k: 1}\n", "init: {conv2d: zeros}\n")
    assert torch.all(model.get_submodule("0").weight == 1) and torch.all(model.get_submodule("0").bias == 0.5)
    assert torch.count_nonzero(model.get_submodule("1").weight) == 0


def test_zero_init_residual_zeroes_the_last_norm_of_each_residual_branch():
    graph = netdsl.load(SPECS / "resnet18.yaml")
    assert [n.name for n in residual_norms(graph)] == [f"layer{s}.{b}.bn2" for s in range(1, 5) for b in range(2)]
    text = (SPECS / "resnet18.yaml").read_text().replace("params:", "init: {zero_init_residual: true}\nparams:")
    model = netdsl.compile(netdsl.load_text(text, str(SPECS / "resnet18.yaml")))
    assert torch.count_nonzero(model.get_submodule("layer2.0.bn2").weight) == 0
    assert torch.all(model.get_submodule("layer2.0.downsample.1").weight == 1)  # the shortcut's norm keeps its scale
    assert torch.all(model.get_submodule("layer2.0.bn1").weight == 1)


def test_zero_init_residual_on_bottlenecks_picks_bn3():
    names = [n.name for n in residual_norms(netdsl.load(SPECS / "resnet50.yaml"))]
    assert len(names) == 16 and all(name.endswith(".bn3") for name in names)


def test_unknown_method_is_a_located_error():
    with pytest.raises(SpecError) as info:
        compile_text("  - conv: {out: 8, init: kaiming_normall}\n")
    (message,) = [str(d) for d in info.value.diagnostics]
    assert message.startswith("t.yaml:5:26: conv: 'init' must be one of 'default', 'kaiming_normal'")
    assert message.endswith("got 'kaiming_normall'; did you mean 'kaiming_normal'?")
