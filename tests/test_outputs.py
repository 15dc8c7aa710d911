"""Multi-output networks: `outputs:` in the spec, the IR's outputs, the compiled forward, export, summarize, the text format."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

import netdsl
from netdsl.analysis.counts import analyze
from netdsl.analysis.expand import expand_text
from netdsl.analysis.summary import render_table
from netdsl.backends.pytorch import build_module, cross_check
from netdsl.errors import SpecError
from netdsl.lang.convert import rewrite
from tests.onnx_registry import shared_onnx_registry  # noqa: F401 (an autouse fixture)

torch.set_num_threads(2)

AUX = """netdsl: 1
name: aux_net
input: 3x16x16
outputs: [logits, aux]
layers:
  - conv: {name: stem, out: 4, k: 3, p: 1}
  - group:
      name: aux
      from: stem
      layers: [gap, linear: 3]
  - conv: {from: stem, out: 5, k: 3, p: 1}
  - gap
  - linear: {name: logits, out: 10}
"""


def load(text: str = AUX) -> netdsl.Graph:
    return netdsl.load_text(text, "t.yaml")


def messages(outputs: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load(AUX.replace("outputs: [logits, aux]", outputs))
    return [str(d) for d in info.value.diagnostics]


def test_outputs_resolve_like_from_and_keep_their_written_names():
    g = load()
    assert g.outputs == ("logits", "aux.1") and g.output == "logits"  # a group stands for its last layer, as in `from`
    assert g.output_names == ("logits", "aux")
    assert g.output_shapes == ((10,), (3,)) and g.output_shape == (10,)
    g = load(AUX.replace("[logits, aux]", "[/aux.0, stem]"))
    assert g.outputs == ("aux.0", "stem") and g.output_names == ("/aux.0", "stem")


def test_without_outputs_the_last_layer_is_the_only_one():
    g = load(AUX.replace("outputs: [logits, aux]\n", ""))
    assert g.outputs == ("logits",) and g.output_names == ("logits",) and g.side_outputs == ()


def test_a_single_name_is_a_list_of_one():
    g = load(AUX.replace("[logits, aux]", "aux"))
    assert g.outputs == ("aux.1",) and g.output_shape == (3,)


def test_unknown_output_suggests_and_is_located():
    assert messages("outputs: [logits, axu]") == [
        "t.yaml:4:19: unknown layer 'axu' in 'outputs'; did you mean 'aux'? (known here: 2, 3, aux, input, logits, stem)"
    ]


def test_a_head_switched_off_by_when_is_no_output():
    # GoogLeNet with aux_logits: false used to list its aux outputs as the layers before them (a skipped layer stands for its input)
    text = AUX.replace("      name: aux\n", "      name: aux\n      when: with_aux\n").replace(
        "input: 3x16x16\n", "input: 3x16x16\nparams: {with_aux: false}\n"
    )
    g = load(text)
    assert g.outputs == ("logits",) and g.output_names == ("logits",)
    with pytest.raises(SpecError) as info:
        load(text.replace("[logits, aux]", "[aux, logits]"))
    assert [str(d) for d in info.value.diagnostics] == ["t.yaml:5:11: the main output 'aux' is switched off by its 'when'; list an active layer first"]


def test_output_listed_twice():
    assert messages("outputs: [logits, logits]") == ["t.yaml:4:19: 'logits' is listed twice in 'outputs'"]


def test_empty_outputs_is_a_schema_error():
    assert messages("outputs: []") == ["t.yaml:4:10: 'outputs' is empty; it needs at least one entry"]


def test_unknown_output_exits_2(cli, spec_file):
    code, _, err = cli("check", str(spec_file(AUX.replace("[logits, aux]", "[logits, aux2]"))))
    assert code == 2
    assert "spec.yaml:4:19: unknown layer 'aux2' in 'outputs'; did you mean 'aux'?" in err


def test_forward_returns_the_main_output_unless_all_outputs():
    g = load()
    x = torch.randn(2, 3, 16, 16)
    main = build_module(g, seed=0)
    every = build_module(g, seed=0, all_outputs=True)
    assert main(x).shape == (2, 10)
    logits, aux = every(x)
    assert aux.shape == (2, 3) and torch.equal(logits, main(x))
    assert "aux" not in main.code and "aux" in every.code  # the side head is dead code in the main-only forward
    assert main.state_dict().keys() == every.state_dict().keys()  # ... but keeps its weights
    assert cross_check(every, g) == []


def test_compile_passes_all_outputs_through():
    outs = netdsl.compile(load(), seed=0, all_outputs=True)(torch.randn(1, 3, 16, 16))
    assert [tuple(t.shape) for t in outs] == [(1, 10), (1, 3)]


def test_all_outputs_with_one_output_returns_a_tensor():
    model = build_module(load(AUX.replace("outputs: [logits, aux]\n", "")), all_outputs=True)
    assert isinstance(model(torch.randn(1, 3, 16, 16)), torch.Tensor)


def test_summary_marks_the_outputs():
    g = load()
    report = analyze(g)
    assert [(o.name, o.layer, o.shape) for o in report.outputs] == [("logits", "logits", (10,)), ("aux", "aux.1", (3,))]
    table = render_table(report)
    assert table.splitlines()[0] == "aux_net: input 3x16x16 -> outputs logits 10, aux 3 (per sample; batch N)"
    assert "linear (output aux)" in table and "linear (output logits)" in table
    single = render_table(analyze(load(AUX.replace("outputs: [logits, aux]\n", ""))))
    assert "(output" not in single and "-> output 10 (per sample" in single


def test_summary_json_lists_the_outputs(cli, spec_file):
    code, out, _ = cli("summarize", str(spec_file(AUX)), "--json")
    assert code == 0
    assert json.loads(out)["outputs"] == [{"name": "logits", "layer": "logits", "shape": [10]}, {"name": "aux", "layer": "aux.1", "shape": [3]}]


def test_expanded_spec_keeps_the_outputs():
    g = load()
    text = expand_text(g, analyze(g), "t.yaml")
    assert text.splitlines()[-1] == "outputs: [logits, aux]"
    again = netdsl.load_text(text)
    assert again.outputs == g.outputs and again.output_names == g.output_names


def test_text_format_round_trip():
    net = rewrite(AUX, "t.yaml", "net")
    assert "outputs: [logits, aux]" in net.splitlines()
    assert netdsl.load_text(rewrite(net, "t.net", "yaml")).outputs == ("logits", "aux.1")
    g = netdsl.graph.load.load_net_text("netdsl: 1\nname: t\ninput: 4\noutputs: a, b\nlinear(3) as a\nlinear(2) as b from input\n")
    assert g.outputs == ("a", "b")


def test_export_main_output_by_default(tmp_path):
    result = netdsl.export(load(), tmp_path / "m.onnx")
    assert [o.name for o in onnx.load(str(tmp_path / "m.onnx")).graph.output] == ["logits"]
    assert [(o.name, o.shape) for o in result.info.outputs] == [("logits", ["batch", 10])]
    assert len(result.comparisons) == 2 and all(c.ok and c.output == "" for c in result.comparisons)


def test_export_all_outputs_verifies_each(tmp_path):
    result = netdsl.export(load(), tmp_path / "m.onnx", all_outputs=True)
    assert [o.name for o in onnx.load(str(tmp_path / "m.onnx")).graph.output] == ["logits", "aux"]
    assert [(o.name, o.shape) for o in result.info.outputs] == [("logits", ["batch", 10]), ("aux", ["batch", 3])]
    assert [(c.batch, c.output) for c in result.comparisons] == [(1, "logits"), (1, "aux"), (3, "logits"), (3, "aux")]
    assert all(c.ok for c in result.comparisons)


def test_export_cli_all_outputs_with_trained_weights(cli, spec_file, tmp_path):
    spec = spec_file(AUX)
    weights = tmp_path / "w.pt"
    torch.save(build_module(load(), seed=3).state_dict(), weights)
    code, out, err = cli("export", str(spec), "--weights", str(weights), "-o", str(tmp_path / "m.onnx"), "--all-outputs")
    assert code == 0, err
    assert "output 'aux'" in out
    assert [o.name for o in onnx.load(str(tmp_path / "m.onnx")).graph.output] == ["logits", "aux"]
