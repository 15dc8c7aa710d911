"""`netdsl draw`: the SVG reads back as the IR (one box per node, one edge per input), clusters follow --depth, bad
options are one located line, pictures are deterministic, and the README's block pictures are up to date."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from netdsl import load, load_text
from netdsl.analysis.draw import draw
from netdsl.analysis.draw.scene import build_scene
from netdsl.ir import INPUT

ROOT = Path(__file__).resolve().parents[1]
SVG = "{http://www.w3.org/2000/svg}"

# two residual blocks in a repeat, a branch and a concat: groups two deep, merges with two inputs
TINY = """netdsl: 1
name: tiny
input: 3x8x8
blocks:
  res:
    params: {c: null}
    layers:
      - conv: {name: conv1, out: c, k: 3, p: 1}
      - relu: {name: act}
      - conv: {name: conv2, out: c, k: 3, p: 1}
      - add: {name: sum, from: [conv2, input]}
layers:
  - conv: {name: stem, out: 4, k: 3, p: 1}
  - repeat: {name: stage, n: 2, layers: [res: {c: 4}]}
  - group:
      name: side
      from: stem
      layers:
        - conv: {name: a, out: 2, k: 1}
  - concat: {name: cat, from: [stage, side]}
  - global_avgpool: {name: pool}
  - linear: {name: fc, out: 3}
"""

# The block pictures the README shows: the command that makes each (README: "Pictures").
PICTURES = {
    "resnet18-block.svg": ["specs/resnet18.yaml", "--only", "layer2.0", "--depth", "0"],
    "densenet121-block.svg": ["specs/densenet121.yaml", "--only", "features.denseblock1.denselayer1", "--depth", "0"],
}


def boxes(root: ET.Element, kind: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if kind in (g.get("class") or "").split()]


def edges(root: ET.Element) -> list[tuple[str, str]]:
    return [(p.get("data-source", ""), p.get("data-target", "")) for p in root.iter(f"{SVG}path") if p.get("class") == "edge"]


def svg_of(text: str, **options) -> ET.Element:
    return ET.fromstring(draw(load_text(text), "svg", **options))


def test_all_expanded_svg_has_one_box_per_node_and_one_edge_per_input():
    graph = load_text(TINY)
    root = ET.fromstring(draw(graph, "svg", depth=None))
    assert sorted(b.get("data-name") for b in boxes(root, "layer")) == sorted(n.name for n in graph.nodes)
    assert not boxes(root, "block")
    drawn = edges(root)
    assert sorted(drawn) == sorted((i, n.name) for n in graph.nodes for i in n.inputs)
    for merge in ("stage.0.sum", "stage.1.sum", "cat"):
        assert sorted(s for s, t in drawn if t == merge) == sorted(graph.node(merge).inputs)
        assert len(graph.node(merge).inputs) == 2
    assert {c.get("data-path") for c in root.iter(f"{SVG}g") if c.get("class") == "cluster"} == {"stage", "stage.0", "stage.1", "side"}


def test_a_box_shows_name_type_shape_and_params_and_its_tooltip_the_spec_line():
    root = svg_of(TINY, depth=None)
    stem = next(b for b in boxes(root, "layer") if b.get("data-name") == "stem")
    texts = [t.text for t in stem.iter(f"{SVG}text")]
    assert texts == ["stem", "conv2d  4×8×8", "112 params"]  # 4*3*3*3 weights + 4 biases
    title = stem.find(f"{SVG}title")
    assert title is not None and "<spec>:13" in (title.text or "") and "112 params" in (title.text or "")


def test_depth_one_collapses_groups_into_blocks_with_summed_params():
    graph = load_text(TINY)
    root = ET.fromstring(draw(graph, "svg", depth=1))
    blocks = {b.get("data-name"): b for b in boxes(root, "block")}
    assert set(blocks) == {"stage", "side"}
    assert not [c for c in root.iter(f"{SVG}g") if c.get("class") == "cluster"]
    stage_params = sum(n.param_count() for n in graph.nodes if n.name.startswith("stage."))
    assert f"{stage_params} params, 8 layers" in [t.text for t in blocks["stage"].iter(f"{SVG}text")]
    assert sorted(edges(root)) == sorted(
        [(INPUT, "stem"), ("stem", "stage"), ("stem", "side"), ("stage", "cat"), ("side", "cat"), ("cat", "pool"), ("pool", "fc")]
    )


def test_depth_two_shows_the_repeat_as_a_cluster_of_collapsed_blocks():
    root = svg_of(TINY, depth=2)
    assert [c.get("data-path") for c in root.iter(f"{SVG}g") if c.get("class") == "cluster"] == ["stage", "side"]
    assert {b.get("data-name") for b in boxes(root, "block")} == {"stage.0", "stage.1"}
    assert ("stage.0", "stage.1") in edges(root)


def test_a_zoo_spec_with_blocks_has_clusters_at_depth_one_and_every_node_at_depth_zero():
    graph = load(ROOT / "specs/resnet18.yaml")
    scene = build_scene(graph, 1)
    assert {b.id for b in scene.boxes if b.kind == "block"} == {"layer1", "layer2", "layer3", "layer4"}
    root = ET.fromstring(draw(graph, "svg", depth=None))
    assert len(boxes(root, "layer")) == len(graph.nodes) == 68
    assert len({c.get("data-path") for c in root.iter(f"{SVG}g") if c.get("class") == "cluster"}) == len(graph.groups)


def test_left_to_right_swaps_the_axes():
    down, right = svg_of(TINY, depth=None), svg_of(TINY, depth=None, direction="LR")

    def centre(root: ET.Element, name: str) -> tuple[float, float]:
        rect = next(b for b in boxes(root, "layer") if b.get("data-name") == name).find(f"{SVG}rect")
        assert rect is not None
        return float(rect.get("x", 0)) + float(rect.get("width", 0)) / 2, float(rect.get("y", 0)) + float(rect.get("height", 0)) / 2

    assert centre(down, "fc")[1] > centre(down, "stem")[1] and centre(right, "fc")[0] > centre(right, "stem")[0]


def test_only_draws_one_block_with_its_outside_inputs_as_input_boxes():
    graph = load_text(TINY)
    root = ET.fromstring(draw(graph, "svg", depth=None, only="stage.1"))
    assert {b.get("data-name") for b in boxes(root, "layer")} == {n.name for n in graph.nodes if n.name.startswith("stage.1.")}
    assert [b.get("data-name") for b in boxes(root, "input")] == ["stage.0.sum"]


def test_html_page_is_self_contained_and_carries_every_layer(tmp_path):
    page = draw(load_text(TINY), "html", depth=1).decode()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)|url\(\s*["']?(https?:|//)|@import|<link|<iframe|fetch\(|XMLHttpRequest""", page)
    data = json.loads(re.search(r'<script type="application/json" id="netdsl-data">(.*?)</script>', page, re.S).group(1))
    assert data["depth"] == 1 and len([b for b in data["boxes"] if b["kind"] == "layer"]) == len(load_text(TINY).nodes)
    assert {c["path"]: c["box"]["lines"][-1] for c in data["clusters"]}["side"] == "10 params, 1 layer"  # conv 4 -> 2, 1x1: 8 weights + 2 biases


def test_cli_writes_svg_and_html_by_suffix_and_format_overrides(cli, spec_file, tmp_path):
    spec = spec_file(TINY)
    code, out, err = cli("draw", str(spec), "-o", str(tmp_path / "net.svg"), "--depth", "0")
    assert (code, err) == (0, "") and out.strip().endswith("net.svg")
    assert len(boxes(ET.parse(tmp_path / "net.svg").getroot(), "layer")) == len(load_text(TINY).nodes) == 13
    assert cli("draw", str(spec), "-o", str(tmp_path / "net.html"))[0] == 0
    assert (tmp_path / "net.html").read_text().startswith("<!DOCTYPE html>")
    assert cli("draw", str(spec), "-o", str(tmp_path / "page.txt"), "--format", "html")[0] == 0
    assert "dagre" in (tmp_path / "page.txt").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "x.jpg"], r"^-o(:1:1)?: draw writes \.svg, \.html, \.png or \.pdf; got '\.jpg'$"),
        (["-o", "x"], r"^-o(:1:1)?: draw writes \.svg, \.html, \.png or \.pdf; got 'x', which has no suffix$"),
        (["-o", "x.svg", "--depth", "-1"], r"^--depth(:1:1)?: --depth must be >= 0 \(0 = every cluster open\), got -1$"),
        (["-o", "x.svg", "--only", "stage.2"], r"^--only(:1:1)?: no group or layer 'stage.2' in tiny; did you mean 'stage.1'\?$"),
    ],
)
def test_bad_options_give_one_located_line_and_exit_2(cli, spec_file, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("draw", str(spec_file(TINY)), *args)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and re.match(message, err.strip()), err
    assert not list(tmp_path.glob("x*"))


def test_png_without_cairosvg_names_what_to_install(cli, spec_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cairosvg", None)  # as on a machine without it
    code, _, err = cli("draw", str(spec_file(TINY)), "-o", str(tmp_path / "net.png"))
    assert code == 2 and re.fullmatch(
        r"-o(:1:1)?: writing \.png needs CairoSVG and the cairo library: pip install 'netdsl\[draw\]' \(Debian: apt install libcairo2\), or write \.svg or \.html\n",
        err,
    ), err
    assert not (tmp_path / "net.png").exists()


@pytest.mark.parametrize(("suffix", "magic"), [("png", b"\x89PNG\r\n\x1a\n"), ("pdf", b"%PDF-")])
def test_png_and_pdf_through_cairosvg(cli, spec_file, tmp_path, suffix, magic):
    """The [draw] extra (in [all], so in the dev venv) converts the SVG."""
    target = tmp_path / f"net.{suffix}"
    code, out, err = cli("draw", str(spec_file(TINY)), "-o", str(target))
    assert (code, err, out) == (0, "", f"{spec_file(TINY)} -> {target}\n"), err
    assert target.read_bytes().startswith(magic) and target.stat().st_size > 1000


def test_same_spec_twice_gives_the_same_bytes_in_fresh_processes(tmp_path, spec_file):
    spec = spec_file(TINY)
    outputs = []
    for seed in ("1", "2"):  # another hash seed: no set or dict order may leak into the layout
        for suffix in ("svg", "html"):
            out = tmp_path / f"r{seed}.{suffix}"
            env = {"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}
            subprocess.run([sys.executable, "-m", "netdsl", "draw", str(spec), "--depth", "0", "-o", str(out)], cwd=ROOT, env=env, check=True)
            outputs.append(out.read_bytes())
    assert outputs[:2] == outputs[2:]


def test_draw_loads_neither_torch_nor_numpy(tmp_path):
    code = (
        "import sys; from netdsl.cli.main import main; "
        f"assert main(['draw', 'specs/resnet18.yaml', '--depth', '0', '-o', {str(tmp_path / 'r.svg')!r}]) == 0; "
        "print(sorted(m for m in ('torch', 'numpy', 'onnx') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("[]")


@pytest.mark.parametrize("name", sorted(PICTURES))
def test_readme_block_pictures_are_up_to_date(cli, tmp_path, monkeypatch, name):
    monkeypatch.chdir(ROOT)  # the pictures name their spec lines relative to the repository
    out = tmp_path / name
    assert cli("draw", *PICTURES[name], "-o", str(out))[0] == 0
    assert out.read_bytes() == (ROOT / "docs/pictures" / name).read_bytes(), f"regenerate: netdsl draw {' '.join(PICTURES[name])} -o docs/pictures/{name}"


def test_readme_shows_the_block_pictures_with_their_commands():
    readme = (ROOT / "README.md").read_text()
    for name, args in PICTURES.items():
        assert f"docs/pictures/{name}" in readme and f"netdsl draw {' '.join(args)} -o docs/pictures/{name}" in readme
