"""Sequence layers (attention, lstm, gru, embedding) and the ViT encoder block: errors, torch's names, torch's numbers, ONNX, MACs."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import netdsl
from netdsl.backends.pytorch import build_module, cross_check
from netdsl.deploy.onnx import export
from netdsl.errors import SpecError
from netdsl.layers import LAYERS
from netdsl.train.api import train
from tests.conftest import ROOT, reference_state_dict
from tests.onnx_registry import shared_onnx_registry  # noqa: F401 (an autouse fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def spec(input_shape: str, *layers: str, head: str = "") -> str:
    return f"netdsl: 1\nname: t\ninput: {input_shape}\n{head}layers:\n" + "".join(f"  - {item}\n" for item in layers)


def error_of(text: str) -> str:
    with pytest.raises(SpecError) as info:
        netdsl.load_text(text)
    return str(info.value)


def node(input_shape: str, layer: str) -> netdsl.Node:
    return netdsl.load_text(spec(input_shape, layer)).nodes[-1]


# ---------------------------------------------------------------- errors, located by the builder


def test_heads_must_divide_the_embedding():
    message = error_of(spec("10x100", "attention: {heads: 8}"))
    # a size hint may follow (load.py probes other input sizes); the located message itself is fixed
    assert message.startswith("<spec>:5:5: attention '0': 8 heads do not divide the embedding 100 (input 10x100)")


@pytest.mark.parametrize("word", ["lstm", "gru"])
def test_recurrent_layers_need_a_sequence(word):
    message = error_of(spec("3x28x28", f"{word}: {{hidden: 8}}"))
    assert message == f"<spec>:5:5: {word} '0': {word} needs an L x features input (batch first), got 3x28x28; add a permute or reshape before it"
    assert error_of(spec("28", f"{word}: {{hidden: 8}}")).endswith(
        f"{word} needs an L x features input (batch first), got 28; add a permute or reshape before it"
    )


def test_attention_needs_a_sequence():
    message = error_of(spec("3x8x8", "relu", "attention: {heads: 2}"))
    assert message == "<spec>:6:5: attention '1': multihead_attention needs an L x features input (batch first), got 3x8x8; add a permute or reshape before it"


def test_embedding_needs_token_ids():
    assert error_of(spec("3x4", "embedding: {num: 5, dim: 2}")) == "<spec>:5:5: embedding '0': embedding needs an L input of token ids, got 3x4"


def test_dropout_between_layers_needs_two_layers():
    message = error_of(spec("6x4", "lstm: {hidden: 4, dropout: 0.5}"))
    assert message == "<spec>:5:5: lstm '0': dropout 0.5 acts between stacked layers only; with layers: 1 it does nothing (add a dropout layer after it)"


def test_output_must_be_sequence_or_last():
    assert "'output' must be one of 'sequence', 'last'; got 'final'" in error_of(spec("6x4", "gru: {hidden: 4, output: final}"))


# ---------------------------------------------------------------- shapes and parameter names, as torch's own modules


def torch_names(module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"0.{k}", tuple(v.shape)) for k, v in module.named_parameters()]


@pytest.mark.parametrize("bias", [True, False])
def test_attention_parameters_are_torchs(bias):
    got = node("6x16", f"attention: {{heads: 4, bias: {str(bias).lower()}}}")
    assert got.shape == (6, 16)
    assert got.params() == torch_names(nn.MultiheadAttention(16, 4, bias=bias, batch_first=True))


@pytest.mark.parametrize(("word", "cls"), [("lstm", nn.LSTM), ("gru", nn.GRU)])
@pytest.mark.parametrize(("layers", "bidirectional", "bias"), [(1, False, True), (2, True, True), (3, False, False)])
def test_recurrent_parameters_are_torchs(word, cls, layers, bidirectional, bias):
    options = f"hidden: 6, layers: {layers}, bidirectional: {str(bidirectional).lower()}, bias: {str(bias).lower()}"
    got = node("7x5", f"{word}: {{{options}}}")
    dirs = 2 if bidirectional else 1
    assert got.shape == (7, 6 * dirs)
    assert got.params() == torch_names(cls(5, 6, layers, bias=bias, batch_first=True, bidirectional=bidirectional))
    assert node("7x5", f"{word}: {{{options}, output: last}}").shape == (6 * dirs,)


def test_bidirectional_names_carry_reverse():
    names = [path for path, _ in node("7x5", "lstm: {hidden: 3, layers: 2, bidirectional: true}").params()]
    assert names[:8] == [f"0.{n}" for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")] + [
        f"0.{n}_reverse" for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    ]
    assert ("0.weight_ih_l1", (12, 6)) in node("7x5", "lstm: {hidden: 3, layers: 2, bidirectional: true}").params()  # layer 2 reads both directions


def test_embedding_shape_and_weight():
    got = node("9", "embedding: {num: 100, dim: 8}")
    assert got.shape == (9, 8)
    assert got.params() == torch_names(nn.Embedding(100, 8))


# ---------------------------------------------------------------- the same numbers as torch's modules, same weights


def compiled(text: str) -> nn.Module:
    return build_module(netdsl.load_text(text), seed=0).double().eval()


def test_attention_computes_torchs_self_attention():
    ours = compiled(spec("6x16", "attention: {name: att, heads: 4}"))
    theirs = nn.MultiheadAttention(16, 4, batch_first=True).double().eval()
    theirs.load_state_dict({k.removeprefix("att."): v for k, v in ours.state_dict().items()})
    x = torch.randn(3, 6, 16, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x, x, x, need_weights=False)[0], atol=1e-12)


@pytest.mark.parametrize(("word", "cls"), [("lstm", nn.LSTM), ("gru", nn.GRU)])
@pytest.mark.parametrize("output", ["sequence", "last"])
def test_recurrent_computes_torchs(word, cls, output):
    ours = compiled(spec("7x5", f"{word}: {{name: rnn, hidden: 6, layers: 2, bidirectional: true, output: {output}}}"))
    theirs = cls(5, 6, 2, batch_first=True, bidirectional=True).double().eval()
    theirs.load_state_dict({k.removeprefix("rnn."): v for k, v in ours.state_dict().items()})
    x = torch.randn(3, 7, 5, dtype=torch.float64)
    with torch.no_grad():
        want = theirs(x)[0]
        assert torch.allclose(ours(x), want[:, -1] if output == "last" else want, atol=1e-12)


def test_embedding_looks_up_float_ids():
    ours = compiled(spec("4", "embedding: {name: emb, num: 10, dim: 3}"))
    weight = ours.state_dict()["emb.weight"]
    ids = torch.tensor([[0.0, 3.0, 9.0, 3.0]], dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(ours(ids), weight[[0, 3, 9, 3]][None])
        assert torch.equal(ours(torch.tensor([[-2.0, 12.0, 9.0, 1.0]])), weight[[0, 9, 9, 1]][None])  # out of range: clamped


def test_a_chain_of_sequence_layers_agrees_with_torch():
    graph = netdsl.load_text(
        spec("12", "embedding: {num: 50, dim: 16}", "encoder_block: {heads: 2, mlp_dim: 24}", "gru: {hidden: 5, output: last}", "linear: 3", head=ENCODER)
    )
    shapes = {n.name: n.shape for n in graph.nodes}
    assert (shapes["0"], shapes["1.add_2"], shapes["2"], shapes["3"]) == ((12, 16), (12, 16), (5,), (3,))
    assert cross_check(build_module(graph, seed=0), graph, batch=3) == []  # random floats as ids: clamped, never an index error


def test_activations_for_sequence_models():
    assert {"gelu", "silu", "hardswish", "hardsigmoid", "mish"} <= set(LAYERS)
    x = torch.linspace(-4, 4, 17)
    assert torch.allclose(node("17", "mish").layer.to_torch(((17,),))(x), x * torch.tanh(nn.functional.softplus(x)))


# ---------------------------------------------------------------- the ViT encoder block (transformer.yaml)

ENCODER = "import: [transformer]\n"


class HandEncoderBlock(nn.Module):
    """torchvision's vision_transformer.EncoderBlock written out: pre-norm attention and MLP, each added to its input."""

    def __init__(self, heads: int, dim: int, mlp_dim: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.dropout = nn.Dropout(0.0)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp_dim, dim), nn.Dropout(0.0))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x = self.ln_1(input)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x) + input
        return x + self.mlp(self.ln_2(x))


def test_encoder_block_lays_out_as_torchvisions_vit():
    graph = netdsl.load_text(spec("197x768", "encoder_block: {name: encoder_layer_0, heads: 12, mlp_dim: 3072}", head=ENCODER))
    with torch.device("meta"):
        model = build_module(graph)
    # keys and shapes from torchvision 0.29.1's vit_b_16 (shared/reference/torchvision/vit_b_16.state_dict.json)
    prefix = "encoder.layers."
    expected = {k.removeprefix(prefix): v for k, v in reference_state_dict("vit_b_16").items() if k.startswith(prefix + "encoder_layer_0.")}
    assert len(expected) == 12
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == expected
    assert {path: list(shape) for n in graph.nodes for path, shape in n.params()} == expected
    ln = next(n for n in graph.nodes if n.name == "encoder_layer_0.ln_1")
    assert ln.layer.eps == 1e-6


def test_encoder_block_computes_a_hand_written_block():
    ours = compiled(spec("5x16", "encoder_block: {name: enc, heads: 4, mlp_dim: 32}", head=ENCODER))
    theirs = HandEncoderBlock(4, 16, 32).double().eval()
    theirs.load_state_dict({k.removeprefix("enc."): v for k, v in ours.state_dict().items()}, strict=True)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-12)


def test_vit_b_16_macs_equal_torchvisions():
    """12 encoder blocks on 197 x 768 tokens, the 16x16 patch conv and the head: torchvision's published ViT-B/16 'GFLOPS'."""
    blocks = netdsl.load_text(spec("197x768", "encoder_block: {heads: 12, mlp_dim: 3072}", head=ENCODER))
    patches = node("3x224x224", "conv: {out: 768, k: 16, s: 16}")
    head = node("768", "linear: 1000")
    total = 12 * sum(n.macs() for n in blocks.nodes) + patches.macs() + head.macs()
    # torchvision 0.29.1 vision_transformer.py, ViT_B_16_Weights.IMAGENET1K_V1.meta["_ops"] == 17.564 (GMACs)
    assert round(total / 1e9, 3) == 17.564


# ---------------------------------------------------------------- MACs by hand


def test_macs_by_hand():
    # attention, L = 6, E = 16: in-projection L*E*3E, QK^T and AV L*L*E each, out-projection L*E*E
    assert node("6x16", "attention: {heads: 4}").macs() == 6 * 16 * 48 + 2 * 6 * 6 * 16 + 6 * 16 * 16 == 7296
    # lstm, L = 7, F = 5, hidden 6, 2 layers, both directions: per step 4 gates * 6 * (in + 6), layer 2 reads 12 features
    assert node("7x5", "lstm: {hidden: 6, layers: 2, bidirectional: true}").macs() == 7 * 2 * 4 * 6 * ((5 + 6) + (12 + 6)) == 9744
    # gru: 3 gates; `output: last` still runs every step
    assert node("7x5", "gru: {hidden: 6, output: last}").macs() == 7 * 3 * 6 * (5 + 6) == 1386
    assert node("9", "embedding: {num: 10, dim: 4}").macs() == 0


# ---------------------------------------------------------------- ONNX


@pytest.mark.parametrize(
    "layers",
    [
        ("attention: {heads: 4}", "flatten", "linear: 3"),
        ("lstm: {hidden: 6, layers: 2, bidirectional: true, output: last}", "linear: 3"),
    ],
    ids=["attention", "lstm"],
)
def test_onnx_export_verifies(tmp_path, layers):
    graph = netdsl.load_text(spec("6x16", *layers))
    result = export(graph, tmp_path / "m.onnx")
    assert result.info.exporter == "dynamo"
    assert [c.batch for c in result.comparisons] == [1, 3] and all(c.ok for c in result.comparisons)


# ---------------------------------------------------------------- the examples


@pytest.mark.parametrize("name", ["lstm_classifier", "gru_classifier"])
def test_example_summarizes_and_trains(cli, tmp_path, name):
    path = ROOT / "examples" / f"{name}.yaml"
    code, out, err = cli("summarize", str(path))
    assert code == 0, err
    assert f"{name}: input 1x28x28 -> output 10" in out
    # one epoch on 30% of the digits (539 training samples) beats chance (10%) by far: measured 0.61 (lstm), 0.60 (gru)
    settings = {"train.epochs": 1, "train.data.split": {"train": 0.3, "val": 0.05, "test": 0.05}}
    run = train(path, out=tmp_path, settings=settings, log=lambda _: None)
    results = json.loads((run / "results.json").read_text())
    assert results["test_accuracy"] > 0.3, results
