"""Spec expressions: arithmetic over named values, and nothing else."""

from __future__ import annotations

import pytest

from netdsl.lang.expr import ExprError, evaluate, interpolate, make_divisible


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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("'a' * 10 ** 9", "''a' * 10 ** 9' would build a string of 1,000,000,000 characters; expressions may build at most 10,000"),
        ("[[1] * 5000] * 5000", "'[[1] * 5000] * 5000' would build a list of 25,005,000 items; expressions may build at most 10,000"),
        ("widths + [0] * 9998", "'widths + [0] * 9998' would build a list of 10,001 items; expressions may build at most 10,000"),
        ("'%0999999999d' % c", "''%0999999999d' % c': string formatting with % is not allowed"),
        ("sum([[1]], [])", "'sum([[1]], [])': sum adds numbers"),
        ("round(c, -10 ** 9)", "'round(c, -10 ** 9)': round to at most 100 digits"),
        ("3 ** 200", "'3 ** 200' is too large: 317 bits; integers in expressions are limited to 256"),
        ("2 ** 256", "'2 ** 256' is too large: at least 257 bits; integers in expressions are limited to 256"),
        ("int('9' * 1999)", "'int('9' * 1999)' is too large: 6,641 bits; integers in expressions are limited to 256"),
        ("1 << 100000", "operator in '1 << 100000' is not allowed"),
        ("2.0 ** 10 ** 70", "'2.0 ** 10 ** 70' is too large to compute"),
        ("[] * 10 ** 70", "'[] * 10 ** 70' is too large to compute"),
        ("(-8) ** 0.5", "'(-8) ** 0.5' gives a complex number"),
        ("float('1e999')", "'float('1e999')' gives inf; a spec value must be finite"),
        ("-'a'", "cannot compute '-'a'' with 'a': a sign needs a number"),
        ("c < 'a'", "cannot compare 64 with 'a' in 'c < 'a''"),
        ("\x1b", "cannot parse expression '\\x1b': invalid non-printable character U+001B"),
        ("(" * 250 + "1" + ")" * 250, "cannot parse expression '" + "(" * 57 + "...': too many nested parentheses"),
    ],
)
def test_budgets_and_faults_are_expression_errors(text, message):
    """Each built gigabytes, hung or raised a Python exception (a traceback at the CLI) before it was bounded."""
    with pytest.raises(ExprError) as info:
        evaluate(text, {"c": 64, "widths": [16, 32, 64]})
    assert str(info.value) == message


def test_interpolation_is_bounded_as_a_built_string():
    template = "{'a' * 6000}{'b' * 6000}"
    with pytest.raises(ExprError) as info:
        interpolate(template, {})
    assert str(info.value) == f"'{template}' would build a string of more than 10,000 characters; expressions may build at most 10,000"
    assert interpolate("{'a' * 5000}{'b' * 5000}", {}) == "a" * 5000 + "b" * 5000


def test_the_largest_allowed_values_still_evaluate():
    assert evaluate("2 ** 255", {}) == 1 << 255
    assert len(evaluate("'a' * 10000", {})) == 10_000
    assert evaluate("+".join(["1"] * 99), {}) == 99  # a sum of 99 terms nests 99 levels: within the 100 allowed
    assert evaluate("round(1.23456, 100)", {}) == 1.23456
