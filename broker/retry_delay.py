"""The `Upstash-Retry-Delay` expression language.

Expressions arrive from API callers, so nothing here ever compiles or runs
Python code: the text goes through `ast.parse` only to get a syntax tree,
every node is checked against a whitelist at parse time, and evaluation is a
small interpreter over that tree using float arithmetic.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["MAX_EXPRESSION_LENGTH", "RetryDelay", "RetryDelayError"]

MAX_EXPRESSION_LENGTH = 256

_VARIABLE = "retried"


class RetryDelayError(ValueError):
    """The expression is invalid, or evaluating it hit a math error."""


def _pow(base: float, exponent: float) -> float:
    try:
        # math.pow, not `**`: a negative base with a fractional exponent must be
        # an error, while `**` would quietly return a complex number.
        return math.pow(base, exponent)
    except OverflowError:
        return math.copysign(math.inf, base) if exponent % 2 == 1 else math.inf


def _exp(value: float) -> float:
    try:
        return math.exp(value)
    except OverflowError:
        return math.inf


def _floor(value: float) -> float:
    # math.floor/ceil raise on inf; an overflowed delay should stay inf so the
    # caller's cap applies instead of the evaluation failing.
    return float(math.floor(value)) if math.isfinite(value) else value


def _ceil(value: float) -> float:
    return float(math.ceil(value)) if math.isfinite(value) else value


def _round(value: float) -> float:
    # Half away from zero, as in Go's math.Round and what users expect from
    # round(2.5) == 3; Python's round() would give banker's rounding.
    if not math.isfinite(value):
        return value
    return math.copysign(math.floor(abs(value) + 0.5), value)


def _min(*values: float) -> float:
    return min(values)


def _max(*values: float) -> float:
    return max(values)


@dataclass(frozen=True)
class _Function:
    impl: Callable[..., float]
    min_args: int
    max_args: int | None  # None: variadic

    def arity_text(self) -> str:
        if self.max_args is None:
            return f"at least {self.min_args} argument{'s' if self.min_args != 1 else ''}"
        if self.min_args == self.max_args:
            return f"{self.min_args} argument{'s' if self.min_args != 1 else ''}"
        return f"{self.min_args} to {self.max_args} arguments"


_FUNCTIONS: dict[str, _Function] = {
    "pow": _Function(_pow, 2, 2),
    "exp": _Function(_exp, 1, 1),
    "sqrt": _Function(math.sqrt, 1, 1),
    "abs": _Function(abs, 1, 1),
    "floor": _Function(_floor, 1, 1),
    "ceil": _Function(_ceil, 1, 1),
    "round": _Function(_round, 1, 1),
    "min": _Function(_min, 1, None),
    "max": _Function(_max, 1, None),
}

_BINARY_OPERATORS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Mod: lambda a, b: a % b,
}

_UNARY_OPERATORS: dict[type[ast.unaryop], Callable[[float], float]] = {
    ast.USub: lambda a: -a,
    ast.UAdd: lambda a: +a,
}

# Friendlier messages for things people plausibly type.
_OPERATOR_HINTS: dict[type[ast.AST], str] = {
    ast.Pow: "operator '**' is not supported, use pow(a, b)",
    ast.FloorDiv: "operator '//' is not supported, use floor(a / b)",
}


def _describe(expr: str) -> str:
    return expr if len(expr) <= 60 else expr[:57] + "..."


def _check(node: ast.AST) -> str | None:
    """Return why `node` (or a descendant) is not allowed, or None if it is fine."""
    if isinstance(node, ast.Constant):
        # bool is an int subclass; `True` must not sneak in as 1.
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            return f"unsupported literal {node.value!r}"
        return None
    if isinstance(node, ast.Name):
        if node.id == _VARIABLE:
            return None
        if node.id in _FUNCTIONS:
            return f"function '{node.id}' must be called"
        return f"unknown name '{node.id}'"
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY_OPERATORS:
            return _OPERATOR_HINTS.get(type(node.op), "unsupported operator")
        return _check(node.left) or _check(node.right)
    if isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY_OPERATORS:
            return "unsupported operator"
        return _check(node.operand)
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            return "only plain function calls are allowed"
        name = node.func.id
        function = _FUNCTIONS.get(name)
        if function is None:
            return f"unknown function '{name}'"
        if node.keywords:
            return f"{name}() does not take keyword arguments"
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            return f"{name}() does not take *arguments"
        count = len(node.args)
        if count < function.min_args or (
            function.max_args is not None and count > function.max_args
        ):
            return f"{name}() takes {function.arity_text()}, got {count}"
        for arg in node.args:
            problem = _check(arg)
            if problem:
                return problem
        return None
    if isinstance(node, ast.Attribute):
        return "attribute access is not allowed"
    if isinstance(node, ast.Subscript):
        return "subscripts are not allowed"
    return f"unsupported syntax ({type(node).__name__})"


def _evaluate(node: ast.expr, retried: float) -> float:
    # Only node shapes that _check accepted can reach here.
    if isinstance(node, ast.Constant):
        assert isinstance(node.value, int | float)
        return float(node.value)
    if isinstance(node, ast.Name):
        return retried
    if isinstance(node, ast.BinOp):
        left = _evaluate(node.left, retried)
        right = _evaluate(node.right, retried)
        return _not_nan(_BINARY_OPERATORS[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp):
        return _UNARY_OPERATORS[type(node.op)](_evaluate(node.operand, retried))
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        args = [_evaluate(arg, retried) for arg in node.args]
        return _not_nan(float(_FUNCTIONS[node.func.id].impl(*args)))
    raise AssertionError(f"unvalidated node {type(node).__name__}")


def _not_nan(value: float) -> float:
    # inf - inf or inf % n give NaN, and min()/max() order NaN arbitrarily, so
    # stop at the first one rather than letting it leak into a schedule.
    if math.isnan(value):
        raise ValueError("result is not a number")
    return value


@dataclass(frozen=True)
class RetryDelay:
    """A validated retry-delay expression; `evaluate` gives the delay in milliseconds."""

    source: str
    _tree: ast.expr = field(repr=False, compare=False)

    @classmethod
    def parse(cls, expr: str) -> RetryDelay:
        """Validate `expr` completely. Raises RetryDelayError naming the problem."""

        def fail(reason: str) -> RetryDelayError:
            return RetryDelayError(f"invalid retry delay expression '{_describe(expr)}': {reason}")

        if not expr.strip():
            raise fail("expression is empty")
        if len(expr) > MAX_EXPRESSION_LENGTH:
            raise fail(f"longer than {MAX_EXPRESSION_LENGTH} characters")
        try:
            # Parsing only builds a tree; nothing is compiled or executed.
            # Leading whitespace would be an IndentationError otherwise.
            tree = ast.parse(expr.strip(), mode="eval")
        except SyntaxError as exc:
            raise fail(f"syntax error ({exc.msg})") from None
        except (ValueError, RecursionError, MemoryError):
            # NUL bytes and pathological nesting end up here.
            raise fail("syntax error") from None
        problem = _check(tree.body)
        if problem:
            raise fail(problem)
        return cls(source=expr, _tree=tree.body)

    def evaluate(self, retried: int) -> float:
        """Delay in milliseconds for the retry after `retried` earlier retries.

        Negative results become 0; overflow yields `math.inf`, so callers must
        cap the result. Math errors raise RetryDelayError.
        """
        try:
            result = _evaluate(self._tree, float(retried))
        except ZeroDivisionError:
            raise self._eval_error(retried, "division by zero") from None
        except (ValueError, OverflowError) as exc:
            raise self._eval_error(retried, str(exc)) from None
        return max(result, 0.0)

    def _eval_error(self, retried: int, reason: str) -> RetryDelayError:
        return RetryDelayError(
            f"retry delay expression '{_describe(self.source)}' failed"
            f" for retried={retried}: {reason}"
        )
