"""`netdsl infer MODEL.onnx INPUTS...` with folders and quoted globs: one line per file, in name order; bad ones exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import netdsl
from netdsl.backends.pytorch import build_module
from netdsl.deploy.onnx import Labels, export
from tests.onnx_registry import shared_onnx_registry  # noqa: F401 (an autouse fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = """netdsl: 1
name: tiny
input: 3x8x8
layers:
  - conv: {out: 4, k: 3, p: 1}
  - relu
  - gap
  - linear: {out: 3}
"""


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny exported classifier (one export for the module: it takes seconds)."""
    folder = tmp_path_factory.mktemp("model")
    graph = netdsl.load_text(TINY)
    torch.save(build_module(graph, seed=3).state_dict(), folder / "w.pt")
    export(graph, folder / "tiny.onnx", weights=folder / "w.pt", labels=Labels(["cat", "dog", "emu"], None))
    return str(folder / "tiny.onnx")


@pytest.fixture
def inputs(tmp_path):
    """A folder of two images and an array, with a text file and a sub-folder that are not inputs."""
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.png", "sub/c.png"):
        Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).save(folder / name)
    np.save(folder / "z.npy", rng.random((3, 8, 8), dtype=np.float32))
    (folder / "notes.txt").write_text("not an image")
    return folder


def result_lines(out: str) -> list[str]:
    provider, *lines = out.splitlines()
    assert provider.startswith("provider: ")
    return lines


def test_a_folder_is_every_image_and_array_inside_sorted(cli, model, inputs):
    code, out, err = cli("infer", model, str(inputs), "--provider", "cpu", "--top", "1")
    assert (code, err) == (0, "")
    assert [line.split(": ")[0] for line in result_lines(out)] == [str(inputs / n) for n in ("a.png", "b.png", "z.npy")]


def test_a_folder_gives_what_its_files_give_one_by_one(cli, model, inputs):
    files = [str(inputs / n) for n in ("a.png", "b.png", "z.npy")]
    assert cli("infer", model, str(inputs), "--provider", "cpu") == cli("infer", model, *files, "--provider", "cpu")


def test_a_quoted_glob_is_expanded_and_sorted_among_other_inputs(cli, model, inputs):
    code, out, err = cli("infer", model, str(inputs / "z.npy"), str(inputs / "*.png"), str(inputs / "**" / "c.png"), "--provider", "cpu")
    assert (code, err) == (0, "")
    want = [inputs / "z.npy", inputs / "a.png", inputs / "b.png", inputs / "sub" / "c.png"]
    assert [line.split(": ")[0] for line in result_lines(out)] == [str(p) for p in want]


def test_json_with_a_folder_gives_one_object_per_file(cli, model, inputs):
    code, out, err = cli("infer", model, str(inputs), "--json", "--provider", "cpu", "--top", "2")
    assert (code, err) == (0, "")
    results = json.loads(out)
    assert [r["input"] for r in results] == [str(inputs / n) for n in ("a.png", "b.png", "z.npy")]
    assert all(len(r["top"]) == 2 and r["top"][0]["p"] >= r["top"][1]["p"] for r in results)


def test_a_folder_without_inputs_is_one_line(cli, model, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("")
    assert cli("infer", model, str(empty)) == (2, "", f"{empty}:1:1: no images or .npy arrays in folder '{empty}'\n")


def test_a_glob_matching_nothing_is_one_line(cli, model, tmp_path):
    pattern = str(tmp_path / "*.png")
    assert cli("infer", model, pattern) == (2, "", f"{pattern}:1:1: glob '{pattern}' matches nothing\n")


def test_a_folder_is_read_a_chunk_of_files_at_a_time(cli, model, inputs, monkeypatch):
    """Memory stays bounded whatever a folder holds: at most CHUNK_FILES files are read at once, same answers."""
    import netdsl.runtime.infer

    whole = cli("infer", model, str(inputs), "--provider", "cpu", "--json")
    read = netdsl.runtime.infer.read_inputs
    sizes: list[int] = []
    monkeypatch.setattr(netdsl.runtime.infer, "CHUNK_FILES", 2)
    monkeypatch.setattr(netdsl.runtime.infer, "read_inputs", lambda paths, shape: sizes.append(len(paths)) or read(paths, shape))
    assert cli("infer", model, str(inputs), "--provider", "cpu", "--json") == whole
    assert sizes == [2, 1]  # a.png b.png | z.npy
