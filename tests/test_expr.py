"""Spec expressions: arithmetic over named values, and nothing else."""

from __future__ import annotations

import pytest

from netdsl.spec.expr import ExprError, evaluate, interpolate, make_divisible


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("c * 4", 256),
        ("2 if i == 0 else 1", 2),
        ("int(c * 0.5)", 32),
        ("c // 3 + c % 3", 22),
        ("max(8, c // 16)", 8),
        ("widths[i]", 16),
        ("widths[-1]", 64),
        ("not first and c > 8", False),
        ("2 ** 5", 32),
    ],
)
def test_evaluates(text, value):
    assert evaluate(text, {"c": 64, "i": 0, "first": True, "widths": [16, 32, 64]}) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os')", "'__import__' is not a function here"),
        ("c.__class__", "is not allowed in an expression"),
        ("lambda: 1", "is not allowed in an expression"),
        ("[x for x in widths]", "is not allowed in an expression"),
        ("open('f')", "'open' is not a function here"),
        ("cc * 2", "unknown name 'cc'; did you mean 'c'?"),
        ("c / 0", "division by zero"),
        ("10 ** 100", "is too large"),
        ("c *", "cannot parse expression"),
        ("widths[5]", "index 5 is out of range for 3 items"),
    ],
)
def test_refuses(text, message):
    with pytest.raises(ExprError, match=None) as info:
        evaluate(text, {"c": 64, "widths": [16, 32, 64]})
    assert message in str(info.value)


def test_interpolate_names():
    assert interpolate("denselayer{i + 1}", {"i": 4}) == "denselayer5"


def test_make_divisible_matches_torchvision():
    # torchvision.models._utils._make_divisible: MobileNetV2 width 0.5 -> 16, 8, 16, 16, 32, 48, 80, 160
    assert [make_divisible(c * 0.5) for c in (32, 16, 24, 32, 64, 96, 160, 320)] == [16, 8, 16, 16, 32, 48, 80, 160]
    assert make_divisible(1280 * 1.0) == 1280
