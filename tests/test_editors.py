"""The editor configurations in editors/ start the real `netdsl lsp`, agree with each other, and the README shows them."""

from __future__ import annotations

import json
import re
import struct

import tomllib

from netdsl.cli.parser import build_parser
from tests.conftest import ROOT

EDITORS = ROOT / "editors"
VSCODE = EDITORS / "vscode"
SERVER = ["netdsl", "lsp"]
README = (ROOT / "README.md").read_text()


def subcommands() -> set[str]:
    """The CLI's subcommand names, from its parser."""
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return set(sub.choices or ())


def test_the_configured_command_exists() -> None:
    assert SERVER[1] in subcommands(), "every editor configuration starts `netdsl lsp`"


def test_neovim_config_starts_the_server_for_yaml_and_net_files_with_inlay_hints() -> None:
    lua = (EDITORS / "neovim" / "netdsl.lua").read_text()
    assert "vim.lsp.start(" in lua
    assert "{ 'netdsl', 'lsp' }" in lua
    assert re.search(r"vim\.filetype\.add\(\{ extension = \{ net = 'netdsl' \} \}\)", lua)
    assert re.search(r"pattern = \{ 'yaml', 'netdsl' \}", lua), "a FileType autocmd for YAML and .net files"
    assert "vim.lsp.inlay_hint.enable(true" in lua
    assert "root_dir = " in lua
    code = re.sub(r"--.*$", "", lua, flags=re.M)
    assert code.count("(") == code.count(")") and code.count("{") == code.count("}")
    opened = re.findall(r"\bfunction\b|\bif\b.*\bthen\b|\bfor\b.*\bdo\b", code)
    assert len(opened) >= 3 and len(opened) == len(re.findall(r"\bend\b", code)), "every function/if/for is closed by an `end`"


def test_helix_languages_toml_parses_and_wires_netdsl_next_to_yaml_language_server() -> None:
    config = tomllib.loads((EDITORS / "helix" / "languages.toml").read_text())
    server = config["language-server"]["netdsl"]
    assert [server["command"], *server["args"]] == SERVER
    languages = {lang["name"]: lang for lang in config["language"]}
    assert languages["netdsl"]["file-types"] == ["net"]
    assert languages["netdsl"]["language-servers"] == ["netdsl"]
    assert languages["netdsl"]["comment-token"] == "#"
    assert set(languages["yaml"]["language-servers"]) == {"netdsl", "yaml-language-server"}


def test_vscode_manifest_activates_on_yaml_and_net_files_with_a_command_setting() -> None:
    manifest = json.loads((VSCODE / "package.json").read_text())
    assert set(manifest["activationEvents"]) == {"onLanguage:yaml", "onLanguage:netdsl"}
    (language,) = manifest["contributes"]["languages"]
    assert language["id"] == "netdsl" and language["extensions"] == [".net"]
    assert json.loads((VSCODE / language["configuration"]).read_text())["comments"]["lineComment"] == "#"
    setting = manifest["contributes"]["configuration"]["properties"]["netdsl.command"]
    assert setting["type"] == "array" and setting["default"] == SERVER
    assert (VSCODE / manifest["main"]).is_file()
    assert "vscode-languageclient" in manifest["dependencies"]
    assert manifest["engines"]["vscode"].startswith("^1.")
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version and manifest["version"] == version.group(1), "the extension's version follows the package's"


def test_vscode_extension_defaults_match_its_manifest() -> None:
    js = (VSCODE / "extension.js").read_text()
    manifest = json.loads((VSCODE / "package.json").read_text())
    default = re.search(r"const DEFAULT_COMMAND = (\[.*?\]);", js)
    assert default and json.loads(default.group(1).replace("'", '"')) == manifest["contributes"]["configuration"]["properties"]["netdsl.command"]["default"]
    assert "getConfiguration('netdsl').get('command', DEFAULT_COMMAND)" in js
    assert "require('vscode-languageclient/node')" in js and "TransportKind.stdio" in js
    selected = set(re.findall(r"\{ scheme: '(\w+)', language: '(\w+)' \}", js))
    assert {lang for _, lang in selected} == {event.removeprefix("onLanguage:") for event in manifest["activationEvents"]}
    assert re.search(r"module\.exports = \{ activate, deactivate", js)


def test_vscode_package_ships_no_build_outputs() -> None:
    ignored = (VSCODE / ".vscodeignore").read_text().splitlines()
    assert "**/*.vsix" in ignored
    assert {"node_modules/", "*.vsix"} <= set((VSCODE / ".gitignore").read_text().splitlines()), "`npm install` and `vsce package` leave git clean"


def test_yaml_filter_of_neovim_and_vscode_keeps_every_spec_and_block_library() -> None:
    """Both clients attach to (or show diagnostics for) YAML with a top-level `netdsl:` key, which both schemas require."""
    lua = (EDITORS / "neovim" / "netdsl.lua").read_text()
    js = (VSCODE / "extension.js").read_text()
    assert "line:match('^netdsl:')" in lua and "const NETDSL_YAML = /^netdsl:/m;" in js
    for schema in ("schema.json", "library.schema.json"):
        assert "netdsl" in json.loads((ROOT / "netdsl" / schema).read_text())["required"]
    files = [*(ROOT / "specs").glob("*.yaml"), *(ROOT / "netdsl" / "blocks").glob("*.yaml"), *(ROOT / "examples").glob("*.yaml")]
    assert len(files) > 100
    first_lines = {f.name: f.read_text().splitlines()[:50] for f in files}
    assert [name for name, lines in first_lines.items() if not any(line.startswith("netdsl:") for line in lines)] == []


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_screenshot_is_a_small_png_about_1200_pixels_wide() -> None:
    data = (ROOT / "docs" / "pictures" / "lsp-neovim.png").read_bytes()
    width, height = png_size(data)
    assert 1000 <= width <= 1400 and 300 <= height <= width
    assert len(data) < 300_000


def test_readme_shows_the_editor_configurations_and_the_screenshot() -> None:
    assert "![" in README and "(docs/pictures/lsp-neovim.png)" in README
    assert "editors/vscode" in README
    shown = re.findall(r"<!-- file: (editors/\S+) -->\n```\w*\n(.*?)```", README, re.S)
    assert {path for path, _ in shown} >= {"editors/neovim/netdsl.lua", "editors/helix/languages.toml"}
    for path, body in shown:
        assert body == (ROOT / path).read_text(), f"README shows {path} as it is"
