"""extends: specs built on specs (zoo names, paths, chains), named layer edits, train recipes and data files, and their errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

import netdsl
from netdsl.errors import SpecError
from netdsl.graph.load import load, load_text
from netdsl.lang.extends import MAX_DEPTH
from netdsl.lang.schema import shipped_schema
from netdsl.lang.train_schema import TRAIN_SCHEMA, recipes
from netdsl.lang.yaml_tree import load_yaml, plain
from netdsl.lsp.document import analyze
from netdsl.train.api import prepare
from tests.conftest import SPECS, params_of

RESNET18_PARAMS = 11_689_512  # torchvision.models.resnet18 (specs/resnet18.yaml's header)
BASE = """netdsl: 1
name: base
input: 1x12x12
params: {classes: 4, act: {default: relu, choices: [relu, tanh]}}
layers:
  - conv: {name: conv, out: 8, k: 3, p: 1}
  - activation: {name: act1, fn: act}
  - flatten: {name: flat}
  - linear: {name: hidden, out: 16}
  - linear: {name: head, out: classes}
train:
  data: {source: synthetic, samples: 64, num_classes: 4, seed: 1}
  optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
  batch_size: 16
  epochs: 1
"""


def errors(call) -> list[str]:
    with pytest.raises(SpecError) as info:
        call()
    return [str(d) for d in info.value.diagnostics]


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    """tmp_path as the current folder, so that messages name files as a user in that folder would type them."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text(BASE)
    return tmp_path


def names(graph: netdsl.Graph) -> list[str]:
    return [n.name for n in graph]


# ---- specs over specs ----------------------------------------------------------------------------------------------------


def test_a_zoo_child_with_ten_classes_has_the_head_ten_classes_need(here):
    (here / "r10.yaml").write_text("extends: resnet18\nname: resnet18_10\nparams: {num_classes: 10}\n")
    graph = load("r10.yaml")
    assert graph.name == "resnet18_10" and params_of(load(SPECS / "resnet18.yaml")) == RESNET18_PARAMS
    assert params_of(graph) == RESNET18_PARAMS - (512 * 1000 + 1000) + (512 * 10 + 10)  # fc: 512x10 weights + 10 biases


def test_a_new_head_and_dropout_before_it_are_three_lines(here):
    (here / "head.yaml").write_text("extends: resnet18\nparams: {num_classes: 10}\nlayers: {insert: {before: fc, layers: [dropout: {p: 0.2, name: drop}]}}\n")
    graph = load("head.yaml")
    assert names(graph)[-3:] == ["avgpool", "drop", "fc"] and graph.name == "resnet18"
    assert params_of(graph) == RESNET18_PARAMS - 513_000 + 5_130


def test_replace_keeps_the_name_and_remove_and_insert_apply_in_order(here):
    child = """extends: base.yaml
layers:
  replace: {hidden: {linear: 32}}
  remove: [act1]
  insert: [{after: conv, layers: [relu: {name: r}]}, {before: head, layers: [dropout: 0.1]}]
"""
    (here / "child.yaml").write_text(child)
    graph = load("child.yaml")
    assert [n for n in names(graph) if not n.isdigit()] == ["conv", "r", "flat", "hidden", "head"]
    hidden = next(n for n in graph if n.name == "hidden")
    assert hidden.shape == (32,)  # the new item, under the old name (so a state dict's keys stay put)


def test_a_three_level_chain_merges_in_order_and_records_its_files(here):
    (here / "mid.yaml").write_text("extends: base.yaml\nname: mid\nparams: {classes: 7}\n")
    (here / "top.yaml").write_text("extends: mid.yaml\nparams: {act: tanh}\ninput: 1x16x16\n")
    loaded = netdsl.graph.load.check_tree(load_yaml((here / "top.yaml").read_text(), "top.yaml"), "top.yaml")
    assert loaded.problems == [] and loaded.graph is not None
    assert loaded.graph.name == "mid" and loaded.graph.output_shape == (7,) and loaded.graph.input_shape == (1, 16, 16)
    assert next(n for n in loaded.graph if n.name == "act1").layer.__class__.__name__.lower() == "tanh"
    digest = {name: hashlib.sha256((here / name).read_bytes()).hexdigest() for name in ("mid.yaml", "base.yaml")}
    assert loaded.sources == [("mid.yaml", digest["mid.yaml"]), ("base.yaml", digest["base.yaml"])]
    assert "extends" not in loaded.tree and loaded.tree.value_locs["layers"].file == "base.yaml"


def test_a_net_child_extends_a_yaml_base(here):
    (here / "child.net").write_text("extends: base.yaml\nname: small\nparams: classes=3\n")
    graph = load("child.net")
    assert graph.name == "small" and graph.output_shape == (3,)


def test_a_param_over_a_declaration_replaces_its_default_and_its_choices_still_hold(here):
    (here / "child.yaml").write_text("extends: base.yaml\nparams: {act: sigmoid}\n")
    assert errors(lambda: load("child.yaml")) == ["child.yaml:2:15: parameter 'act': the default 'sigmoid' is not one of relu, tanh"]


def test_delete_and_replace(here):
    (here / "child.yaml").write_text("extends: base.yaml\ntrain: {optimizer: {_replace_: true, name: adam}, batch_size: _delete_}\n")
    cfg = prepare("child.yaml").cfg
    assert cfg["optimizer"]["name"] == "adam" and cfg["optimizer"]["momentum"] == 0.9  # the default: sgd's 0.9 went with the mapping
    assert cfg["optimizer"]["lr"] == 0.001 and cfg["batch_size"] == 64  # the defaults again
    (here / "bad.yaml").write_text("extends: base.yaml\ntrain: {batch_sise: _delete_}\n")
    assert errors(lambda: load("bad.yaml")) == ["bad.yaml:2:21: 'batch_sise: _delete_': the base has no 'batch_sise' to delete; did you mean 'batch_size'?"]


def test_an_error_in_a_base_value_is_located_in_the_base(here):
    (here / "base.yaml").write_text(BASE.replace("out: 16}", "out: 16, kernal: 3}"))
    (here / "child.yaml").write_text("extends: base.yaml\nname: child\n")
    message = "base.yaml:9:37: linear 'hidden': 'kernal' is not a linear option (options: out, bias, init, name, from, frozen, when)"
    assert errors(lambda: load("child.yaml")) == [message]


def test_imports_of_a_base_in_another_folder_are_read_from_its_folder(here):
    (here / "lib").mkdir()
    (here / "lib" / "blocks.yaml").write_text("netdsl: 1\nblocks:\n  twice:\n    layers: [relu, relu]\n")
    (here / "lib" / "base.yaml").write_text("netdsl: 1\nname: b\ninput: 4\nimport: [blocks.yaml, common]\nlayers: [twice, linear: 2]\n")
    (here / "child.yaml").write_text("extends: lib/base.yaml\nimport: [common]\n")
    assert load("child.yaml").output_shape == (2,)


def test_an_editor_validating_the_raw_child_stays_quiet_and_a_spec_without_extends_still_needs_its_keys():
    """The raw child needs only `netdsl:` (what the editor configurations attach to); its base gives the rest."""
    validator = jsonschema.Draft202012Validator(shipped_schema())
    child = yaml.safe_load(
        "netdsl: 1\nextends: resnet18\nparams: {num_classes: 10}\nlayers: {replace: {fc: {linear: 10}}}\ntrain: {extends: adam, data: {extends: d.yaml}}\n"
    )
    assert list(validator.iter_errors(child)) == []
    assert [e.message for e in validator.iter_errors({k: v for k, v in child.items() if k != "netdsl"})] == ["'netdsl' is a required property"]
    assert errors(lambda: load_text("name: x\ninput: 4\nlayers: [relu]\n")) == [
        "<spec>:1:1: missing required key 'netdsl' (a spec needs netdsl, name, input, layers)"
    ]


def test_the_language_server_checks_the_composed_spec(here):
    analysis = analyze("extends: base.yaml\nparams: {classes: 9}\n", str(here / "child.yaml"))
    assert analysis.diagnostics == [] and analysis.graph is not None and analysis.graph.output_shape == (9,)


# ---- train sections ------------------------------------------------------------------------------------------------------


def test_a_recipe_and_a_data_file_merge_under_the_sections_own_keys(here):
    (here / "data").mkdir()
    (here / "data" / "mine.yaml").write_text("source: image_folder\npath: photos\nnormalize: imagenet\n")
    (here / "child.yaml").write_text("extends: base.yaml\ninput: 3x12x12\ntrain:\n  extends: sgd_step\n  data: {extends: data/mine.yaml}\n  epochs: 2\n")
    cfg = prepare("child.yaml").cfg
    assert cfg["optimizer"] == cfg["optimizer"] | {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0005}  # the recipe's
    assert cfg["schedule"]["name"] == "step" and cfg["batch_size"] == 128 and cfg["epochs"] == 2  # the spec's own key wins
    assert cfg["data"]["source"] == "image_folder" and cfg["data"]["normalize"] == "imagenet"
    assert cfg["data"]["path"] == str(here / "data" / "photos")  # relative to the data file that wrote it
    assert cfg["data"]["samples"] == 64  # the base's data keys the data file does not set


@pytest.mark.parametrize("name", sorted(recipes()))
def test_each_shipped_recipe_validates_on_resnet18(name, cli, here):
    recipe = load_yaml(recipes()[name].read_text(), name)
    assert list(jsonschema.Draft202012Validator(TRAIN_SCHEMA).iter_errors(plain(recipe))) == []
    (here / "r.yaml").write_text("extends: resnet18\ntrain: {data: {source: synthetic}}\n")
    code, out, err = cli("summarize", "r.yaml", "--set", f"train.extends={name}", "--input", "3x32x32")
    assert (code, err) == (0, "") and "Params: 11,689,512 total" in out


def test_a_finetune_recipe_freezes_the_backbone(cli, here):
    (here / "r.yaml").write_text("extends: resnet18\nparams: {num_classes: 3}\ntrain: {extends: finetune_resnet}\n")
    code, out, err = cli("summarize", "r.yaml", "--input", "3x32x32")
    assert code == 0, err
    assert "Params: 11,178,051 total, 8,395,267 trainable, 2,782,784 frozen" in out  # layer4 (8,393,728) and fc (1,539) train


def test_a_run_records_its_sources_and_its_resolved_spec_stands_alone(cli, here):
    (here / "data.yaml").write_text("source: synthetic\nsamples: 48\nnum_classes: 4\n")
    code, out, err = cli("train", "base.yaml", "--data", "data.yaml", "--recipe", "adam", "--epochs", "1", "--out", "runs", "--workers", "0")
    assert code == 0 and "epoch 1/1" in out, err
    run = next((here / "runs").iterdir())
    resolved = yaml.safe_load((run / "resolved.yaml").read_text())
    assert "extends" not in json.dumps(resolved)
    assert resolved["train"]["optimizer"]["name"] == "adam" and resolved["train"]["data"]["samples"] == 48  # the flags win over the spec's sgd
    env = json.loads((run / "env.json").read_text())
    digest = {name: hashlib.sha256((here / name).read_bytes()).hexdigest() for name in ("base.yaml", "data.yaml")}
    recipe = recipes()["adam"]
    assert env["spec_sources"] == [
        {"path": "base.yaml", "sha256": digest["base.yaml"]},
        {"path": str(recipe), "sha256": hashlib.sha256(recipe.read_bytes()).hexdigest()},
        {"path": "data.yaml", "sha256": digest["data.yaml"]},
    ]
    (here / "elsewhere").mkdir()
    (here / "elsewhere" / "resolved.yaml").write_text((run / "resolved.yaml").read_text())  # away from the files it came from
    code, out, err = cli("train", "elsewhere/resolved.yaml", "--epochs", "1", "--out", "runs2", "--workers", "0")
    assert code == 0 and "epoch 1/1" in out, err
    code, out, err = cli("eval", str(run), "--data", "data.yaml", "--json")  # eval takes --data too
    assert code == 0 and json.loads(out)["test_samples"] > 0, err
    (here / "bad.yaml").write_text("source: synthetic\npth: x\n")
    code, _, err = cli("eval", str(run), "--data", "bad.yaml")
    allowed = ", ".join(["extends", *TRAIN_SCHEMA["properties"]["data"]["properties"]])
    assert (code, err) == (2, f"bad.yaml:2:1: 'pth' is not allowed in 'data'; did you mean 'path'? (allowed: {allowed})\n")


# ---- bad input ---------------------------------------------------------------------------------------------------------


def test_a_missing_zoo_spec_suggests_a_name(here):
    (here / "a.yaml").write_text("extends: resnet81\n")
    message = "a.yaml:1:10: extends: no zoo spec named 'resnet81'; did you mean 'resnet18'? (a name from the zoo's specs/ folder, or a .yaml or .net path relative to this file)"
    assert errors(lambda: load("a.yaml")) == [message]


def test_a_missing_base_file_suggests_a_file_beside_it(here):
    (here / "a.yaml").write_text("netdsl: 1\nextends: bsae.yaml\n")
    assert errors(lambda: load("a.yaml")) == ["a.yaml:2:10: extends: cannot read 'bsae.yaml': no such file; did you mean 'base.yaml'?"]


def test_a_cycle_names_its_chain(cli, here):
    (here / "a.yaml").write_text("netdsl: 1\nextends: b.yaml\n")
    (here / "b.yaml").write_text("extends: a.yaml\n")
    assert errors(lambda: load("a.yaml")) == ["a.yaml:2:10: extends: a cycle: a.yaml -> b.yaml -> a.yaml"]
    code, _, err = cli("check", "a.yaml")
    assert (code, err) == (2, "a.yaml:2:10: extends: a cycle: a.yaml -> b.yaml -> a.yaml\n")


def test_a_chain_deeper_than_the_bound_is_refused(here):
    for i in range(MAX_DEPTH + 1):
        (here / f"s{i}.yaml").write_text(f"extends: s{i + 1}.yaml\n")
    (here / f"s{MAX_DEPTH + 1}.yaml").write_text(BASE)
    last = MAX_DEPTH + 1  # s0 -> s1 ... -> s17: 17 levels
    message = f"s{last - 1}.yaml:1:10: extends: more than {MAX_DEPTH} levels of extends (s0.yaml -> ... -> s{last}.yaml); a chain may be at most that deep"
    assert errors(lambda: load("s0.yaml")) == [message]
    assert load(f"s{1}.yaml").name == "base"  # 16 levels are fine


def test_an_edit_of_a_layer_the_base_does_not_have(here):
    (here / "a.yaml").write_text("extends: base.yaml\nlayers: {remove: [hiden]}\n")
    message = "a.yaml:2:19: layers.remove: the base has no layer named 'hiden'; did you mean 'hidden'? (its layers: conv, act1, flat, hidden, head)"
    assert errors(lambda: load("a.yaml")) == [message]


def test_a_key_the_spec_language_does_not_have_stays_an_error_located_in_the_child(here):
    """Unknown keys stay errors after merging: in the child's own keys and in a replacing layer's options."""
    (here / "a.yaml").write_text("netdsl: 1\nextends: base.yaml\nparms: {classes: 3}\n")
    keys = "netdsl, name, description, input, params, import, blocks, layers, outputs, init, train, limits, extends"
    assert errors(lambda: load("a.yaml")) == [f"a.yaml:3:1: 'parms' is not a spec key; did you mean 'params'? (keys: {keys})"]
    (here / "b.yaml").write_text("netdsl: 1\nextends: base.yaml\nlayers: {replace: {head: {linear: {out: 2, bais: false}}}}\n")
    options = "out, bias, init, name, from, frozen, when"
    assert errors(lambda: load("b.yaml")) == [f"b.yaml:3:44: linear 'head': 'bais' is not a linear option; did you mean 'bias'? (options: {options})"]


def test_an_unknown_edit(here):
    (here / "a.yaml").write_text("extends: base.yaml\nlayers:\n  replac: {head: {linear: 2}}\n")
    assert errors(lambda: load("a.yaml")) == ["a.yaml:3:3: layers: unknown edit 'replac'; did you mean 'replace'? (edits: replace, insert, remove)"]


def test_layer_edits_need_a_base(here):
    (here / "a.yaml").write_text("netdsl: 1\nname: a\ninput: 4\nlayers: {remove: [x]}\n")
    message = "a.yaml:4:9: layers: a mapping of edits (replace, insert, remove) needs `extends:` naming a base spec; without one, write the layers as a list"
    assert errors(lambda: load("a.yaml")) == [message]


def test_a_data_file_with_a_key_that_is_not_a_data_setting(cli, here):
    (here / "data.yaml").write_text("source: synthetic\npth: photos\n")
    allowed = ", ".join(["extends", *TRAIN_SCHEMA["properties"]["data"]["properties"]])
    message = f"data.yaml:2:1: 'pth' is not allowed in 'data'; did you mean 'path'? (allowed: {allowed})"
    code, _, err = cli("train", "base.yaml", "--data", "data.yaml", "--out", "runs")
    assert (code, err) == (2, message + "\n")
    assert not (here / "runs").exists()


def test_an_unknown_recipe_is_located_at_the_flag(cli, here):
    code, _, err = cli("train", "base.yaml", "--recipe", "adamm", "--out", "runs")
    shipped = ", ".join(sorted(recipes()))
    assert (code, err) == (2, f"--recipe: no recipe named 'adamm'; did you mean 'adam'? (recipes: {shipped}; or a .yaml path relative to the current folder)\n")
