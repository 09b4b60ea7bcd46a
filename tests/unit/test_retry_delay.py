from __future__ import annotations

import math

import pytest

from broker.retry_delay import MAX_EXPRESSION_LENGTH, RetryDelay, RetryDelayError


@pytest.mark.parametrize(
    ("expr", "retried", "expected_ms"),
    [
        ("1000", 0, 1000.0),
        ("1000", 7, 1000.0),
        ("1000 * (1 + retried)", 0, 1000.0),
        ("1000 * (1 + retried)", 2, 3000.0),
        ("pow(2, retried) * 1000", 0, 1000.0),
        ("pow(2, retried) * 1000", 3, 8000.0),
        ("max(1000, pow(2, retried) * 100)", 0, 1000.0),
        ("max(1000, pow(2, retried) * 100)", 5, 3200.0),
        ("exp(retried)", 0, 1.0),
        ("exp(retried)", 2, math.exp(2)),
        ("floor(sqrt(retried*100))", 2, 14.0),
        ("ceil(sqrt(retried*100))", 2, 15.0),
        ("abs(retried - 10) * 100", 3, 700.0),
        ("round(2.5)", 0, 3.0),
        ("round(2.4)", 0, 2.0),
        ("round(-2.5) + 10", 0, 7.0),
        ("min(5000, retried * 2000)", 1, 2000.0),
        ("min(5000, retried * 2000)", 9, 5000.0),
        ("min(42)", 0, 42.0),
        ("max(1, 2, 3, retried)", 10, 10.0),
        ("retried % 3 * 1000", 4, 1000.0),
        ("7 / 2", 0, 3.5),
        ("1.5e3", 0, 1500.0),
        ("-(-retried) * +1000", 2, 2000.0),
        ("  500 + retried  ", 1, 501.0),
        ("(retried\n + 1)", 1, 2.0),
    ],
)
def test_retry_delay_evaluates_to_milliseconds(expr: str, retried: int, expected_ms: float) -> None:
    assert RetryDelay.parse(expr).evaluate(retried) == pytest.approx(expected_ms)


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("", "expression is empty"),
        ("   ", "expression is empty"),
        ("retried +", "syntax error"),
        ("(1", "syntax error"),
        ("1; 2", "syntax error"),
        ("retried = 1", "syntax error"),
        ("__import__('os')", "unknown function '__import__'"),
        ("a.b", "attribute access is not allowed"),
        ("(1).real", "attribute access is not allowed"),
        ("pow.__class__", "attribute access is not allowed"),
        ("x[0]", "subscripts are not allowed"),
        ("2 ** 3", "operator '**' is not supported, use pow(a, b)"),
        ("7 // 2", "operator '//' is not supported"),
        ("1 << 2", "unsupported operator"),
        ("1 & 2", "unsupported operator"),
        ("~1", "unsupported operator"),
        ("not 1", "unsupported operator"),
        ("foo(1)", "unknown function 'foo'"),
        ("foo", "unknown name 'foo'"),
        ("Retried", "unknown name 'Retried'"),
        ("pow", "function 'pow' must be called"),
        ("pow(1)", "pow() takes 2 arguments, got 1"),
        ("pow(1, 2, 3)", "pow() takes 2 arguments, got 3"),
        ("sqrt()", "sqrt() takes 1 argument, got 0"),
        ("exp(1, 2)", "exp() takes 1 argument, got 2"),
        ("round(1.5, 1)", "round() takes 1 argument, got 2"),
        ("min()", "min() takes at least 1 argument, got 0"),
        ("max(a=1)", "max() does not take keyword arguments"),
        ("max(*[1, 2])", "max() does not take *arguments"),
        ("pow(2, foo)", "unknown name 'foo'"),
        ("max(1, 'x')", "unsupported literal 'x'"),
        ("'s'", "unsupported literal 's'"),
        ("b'1'", "unsupported literal"),
        ("True", "unsupported literal True"),
        ("None", "unsupported literal None"),
        ("1j", "unsupported literal 1j"),
        ("retried if 1 else 2", "unsupported syntax (IfExp)"),
        ("lambda: 1", "unsupported syntax (Lambda)"),
        ("retried > 1", "unsupported syntax (Compare)"),
        ("1 and 2", "unsupported syntax (BoolOp)"),
        ("[1]", "unsupported syntax (List)"),
        ("(1, 2)", "unsupported syntax (Tuple)"),
        ("f'{retried}'", "unsupported syntax (JoinedStr)"),
        ("(x := 1)", "unsupported syntax (NamedExpr)"),
        ("[x for x in ()]", "unsupported syntax (ListComp)"),
        ("1\x00", "syntax error"),
        ("(" * 120 + "1" + ")" * 119, "syntax error"),
        ("1" + "+1" * (MAX_EXPRESSION_LENGTH // 2), "longer than 256 characters"),
    ],
)
def test_retry_delay_parse_rejects_unsafe_or_invalid_expressions(expr: str, reason: str) -> None:
    with pytest.raises(RetryDelayError) as excinfo:
        RetryDelay.parse(expr)
    message = str(excinfo.value)
    assert message.startswith("invalid retry delay expression '")
    assert reason in message


def test_retry_delay_parse_error_quotes_expression_and_problem() -> None:
    with pytest.raises(RetryDelayError) as excinfo:
        RetryDelay.parse("foo")
    assert str(excinfo.value) == "invalid retry delay expression 'foo': unknown name 'foo'"


def test_retry_delay_error_is_a_value_error() -> None:
    assert issubclass(RetryDelayError, ValueError)


def test_retry_delay_parse_accepts_expression_of_maximum_length() -> None:
    expr = "10" + "+1" * ((MAX_EXPRESSION_LENGTH - 2) // 2)
    assert len(expr) == MAX_EXPRESSION_LENGTH
    assert RetryDelay.parse(expr).evaluate(0) == 10 + (MAX_EXPRESSION_LENGTH - 2) // 2


@pytest.mark.parametrize(
    "expr", ["-" * 200 + "1", "(" * 120 + "1" + ")" * 120, "abs(" * 40 + "1" + ")" * 40]
)
def test_retry_delay_handles_deep_nesting_within_length_limit(expr: str) -> None:
    assert RetryDelay.parse(expr).evaluate(0) == 1.0


def test_retry_delay_keeps_source_text() -> None:
    expr = " pow(2, retried) * 1000 "
    assert RetryDelay.parse(expr).source == expr


def test_retry_delay_never_evaluates_python_code_at_parse_time() -> None:
    # A side-effecting call would run if the parser ever evaluated the text.
    with pytest.raises(RetryDelayError):
        RetryDelay.parse("exit(1)")


@pytest.mark.parametrize(
    ("expr", "retried"),
    [
        ("pow(10, 1000)", 0),
        ("pow(2, retried) * 1000", 100_000),
        ("pow(0.5, -5000)", 0),
        ("exp(retried)", 1000),
        ("exp(1e308)", 0),
        ("1e308 * 10", 0),
        ("1e400", 0),
        ("floor(pow(10, 1000))", 0),
        ("ceil(exp(1000))", 0),
        ("round(exp(1000))", 0),
        ("min(exp(1000), exp(2000))", 0),
    ],
)
def test_retry_delay_overflow_becomes_infinity(expr: str, retried: int) -> None:
    assert RetryDelay.parse(expr).evaluate(retried) == math.inf


@pytest.mark.parametrize(
    ("expr", "retried"),
    [
        ("-1000", 0),
        ("1000 - retried * 2000", 1),
        ("pow(-10, 1001)", 0),
        ("-exp(1000)", 0),
        ("0 * retried", 5),
    ],
)
def test_retry_delay_negative_results_clamp_to_zero(expr: str, retried: int) -> None:
    assert RetryDelay.parse(expr).evaluate(retried) == 0.0


@pytest.mark.parametrize(
    ("expr", "retried", "reason"),
    [
        ("1000 / retried", 0, "division by zero"),
        ("1000 % retried", 0, "division by zero"),
        ("sqrt(retried - 5)", 0, "math domain error"),
        ("pow(-8, 0.5)", 0, "math domain error"),
        ("pow(0, -1)", 0, "math domain error"),
        ("exp(1000) - exp(1000)", 0, "not a number"),
        ("max(exp(1000) - exp(1000), 1)", 0, "not a number"),
        ("exp(1000) % 2", 0, "not a number"),
        ("0 * exp(1000)", 0, "not a number"),
    ],
)
def test_retry_delay_evaluate_reports_math_errors(expr: str, retried: int, reason: str) -> None:
    delay = RetryDelay.parse(expr)
    with pytest.raises(RetryDelayError) as excinfo:
        delay.evaluate(retried)
    message = str(excinfo.value)
    assert f"for retried={retried}" in message
    assert reason in message


def test_retry_delay_division_by_zero_only_fails_for_the_bad_retry() -> None:
    delay = RetryDelay.parse("1000 / retried")
    assert delay.evaluate(4) == 250.0
    with pytest.raises(RetryDelayError):
        delay.evaluate(0)
