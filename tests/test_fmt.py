"""`netdsl fmt`: canonical layout for either format, comments kept, --check for CI; the zoo is formatted."""

from __future__ import annotations

from netdsl.lang.fmt import format_text
from tests.conftest import SPECS

MESSY_YAML = """\
netdsl:   1
name: messy   # trailing
input: [3,32,32]
params:
  width: 8
  act: 'relu'
layers:
    - conv: {out: "width * 2", k: 3, p: 1}     # aligned
    - {relu: }
    - repeat:
        n: 2
        layers: [conv: { out: 8 }, bn]
    - group:
        name: g
        layers:
        - relu
"""

FORMATTED_YAML = """\
netdsl: 1
name: messy  # trailing
input: [3, 32, 32]
params:
  width: 8
  act: relu
layers:
  - conv: {out: width * 2, k: 3, p: 1}  # aligned
  - relu: null
  - repeat: {n: 2, layers: [conv: {out: 8}, bn]}
  - group:
      name: g
      layers:
        - relu
"""

MESSY_NET = """\
netdsl:1
name :   messy
input: 3x32x32
conv( 8,k = 3 ,p=1 )as c1->bn  ->  relu    # stem
repeat(2){conv(8)}
group as g {
relu
   # inside
}
"""

FORMATTED_NET = """\
netdsl: 1
name: messy
input: 3x32x32

conv(8, k=3, p=1) as c1 -> bn -> relu  # stem
repeat(2) { conv(8) }
group as g {
  relu
  # inside
}
"""


def test_yaml_is_laid_out_canonically_with_its_comments():
    assert format_text(MESSY_YAML, "m.yaml") == FORMATTED_YAML
    assert format_text(FORMATTED_YAML, "m.yaml") == FORMATTED_YAML


def test_text_is_laid_out_canonically_with_its_comments():
    assert format_text(MESSY_NET, "m.net") == FORMATTED_NET
    assert format_text(FORMATTED_NET, "m.net") == FORMATTED_NET


def test_the_zoo_is_formatted(cli):
    code, out, err = cli("fmt", "--check", str(SPECS))
    assert code == 0, out + err
    assert out.splitlines()[-1] == f"0 would be reformatted, {len(list(SPECS.glob('*.yaml'))) * 2} already formatted"


def test_fmt_rewrites_in_place_and_check_reports_without_writing(cli, tmp_path):
    messy, tidy = tmp_path / "m.net", tmp_path / "t.yaml"
    messy.write_text(MESSY_NET)
    tidy.write_text(FORMATTED_YAML)
    code, out, _ = cli("fmt", "--check", str(messy), str(tidy))
    assert code == 1 and out.splitlines() == [f"would reformat {messy}", "1 would be reformatted, 1 already formatted"]
    assert messy.read_text() == MESSY_NET
    code, out, _ = cli("fmt", str(tmp_path))
    assert code == 0 and out.splitlines() == [f"reformatted {messy}", "1 reformatted, 1 already formatted"]
    assert messy.read_text() == FORMATTED_NET
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.net", "t.yaml"]


def test_fmt_reports_a_broken_file_and_formats_the_others(cli, tmp_path):
    broken, messy = tmp_path / "a.net", tmp_path / "b.net"
    broken.write_text("netdsl: 1\nconv(8\n")
    messy.write_text(MESSY_NET)
    code, out, err = cli("fmt", str(broken), str(messy))
    assert code == 2
    assert err.splitlines() == [f"{broken}:2:7: unexpected end of file; expected ',' or ')'"]
    assert out.splitlines()[-1] == "1 reformatted, 0 already formatted, 1 with errors"
    assert messy.read_text() == FORMATTED_NET
