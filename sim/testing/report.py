"""Reports of the ``sim.testing`` checkers, and safe calls into user code.

A checker never crashes on a user's function: one that raises, returns the wrong shape or dtype,
or mutates its inputs gives a failed :class:`CaseResult` carrying the message.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["CaseResult", "CheckFailed", "Report"]


class CheckFailed(AssertionError):
    """Raised by :meth:`Report.raise_if_failed`; the message is the report's readable diff."""


@dataclass
class CaseResult:
    """One named case of a check.

    Attributes:
        name: the case's name (stable: tests and docs refer to it).
        passed: whether the user's function satisfied the case.
        message: why it failed, or a note (what was accepted, why it was skipped).
        expected: what the case expected (array, float or text), None when not applicable.
        got: what the function gave (same kinds), None when it gave nothing usable.
        max_error: largest absolute difference between expected and got (``inf`` when not
            comparable, 0 when the case compares no numbers).
        skipped: the case did not apply (e.g. the function takes no ``weights``).
    """

    name: str
    passed: bool
    message: str = ""
    expected: Any = None
    got: Any = None
    max_error: float = 0.0
    skipped: bool = False


@dataclass
class Report:
    """The result of one check: every case with expected and got.

    Attributes:
        kind: ``advantages`` | ``alignment`` | ``loss``.
        target: the checked function's name.
        settings: the conventions checked against (e.g. ``ddof``, ``eps``).
        cases: the :class:`CaseResult` list, in the order run.
    """

    kind: str
    target: str
    settings: dict[str, Any] = field(default_factory=dict)
    cases: list[CaseResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when no case failed (skipped cases do not fail)."""
        return all(c.passed or c.skipped for c in self.cases)

    @property
    def failures(self) -> list[CaseResult]:
        """The failed cases."""
        return [c for c in self.cases if not c.passed and not c.skipped]

    @property
    def max_error(self) -> float:
        """Largest finite ``max_error`` over the cases run (``inf`` if any is infinite)."""
        errs = [c.max_error for c in self.cases if not c.skipped]
        return max(errs, default=0.0)

    def case(self, name: str) -> CaseResult:
        """The case called ``name`` (``KeyError`` listing the names if absent)."""
        for c in self.cases:
            if c.name == name:
                return c
        raise KeyError(f"no case {name!r}; cases: {', '.join(c.name for c in self.cases)}")

    def table(self) -> str:
        """A plain-text table: case, result, max error, note; then a summary line."""
        conv = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        lines = [f"check {self.kind}: {self.target}" + (f"  ({conv})" if conv else "")]
        width = max([len(c.name) for c in self.cases] + [4])
        lines.append(f"  {'case':<{width}}  result  max error  note")
        for c in self.cases:
            res = "skip" if c.skipped else ("PASS" if c.passed else "FAIL")
            err = "" if c.skipped or self.kind == "alignment" else _fmt_err(c.max_error)
            note = c.message if len(c.message) <= 90 else c.message[:87] + "..."
            lines.append(f"  {c.name:<{width}}  {res:<6}  {err:>9}  {note}".rstrip())
        n_skip = sum(c.skipped for c in self.cases)
        n_fail = len(self.failures)
        lines.append(
            f"{len(self.cases)} cases: {len(self.cases) - n_fail - n_skip} passed, "
            f"{n_fail} failed, {n_skip} skipped -> {'PASSED' if self.passed else 'FAILED'}"
        )
        return "\n".join(lines)

    def diff(self) -> str:
        """Each failed case with its message and the rows where expected and got differ."""
        out = [f"{self.target}: {len(self.failures)} failed case(s) ({self.kind})"]
        for c in self.failures:
            out.append(f"- {c.name}: {c.message}")
            out.extend("    " + line for line in _rows_diff(c.expected, c.got))
        return "\n".join(out)

    def raise_if_failed(self) -> None:
        """Raise :class:`CheckFailed` with :meth:`diff` when any case failed."""
        if not self.passed:
            raise CheckFailed(self.diff())

    def __str__(self) -> str:
        return self.table()


def _fmt_err(e: float) -> str:
    if math.isnan(e) or math.isinf(e):
        return "inf"
    return "0" if e == 0 else f"{e:.2e}"


def _rows_diff(expected: Any, got: Any, limit: int = 8) -> list[str]:
    """Rows of a 1-D expected/got pair, differing rows marked ``*`` (at most ``limit`` rows)."""
    if expected is None and got is None:
        return []
    e, g = np.asarray(expected, dtype=object), np.asarray(got, dtype=object)
    if e.ndim != 1 or g.ndim != 1 or e.shape != g.shape:
        return [f"expected: {_short(expected)}", f"got:      {_short(got)}"]
    lines = ["row  expected        got"]
    shown = 0
    for i, (a, b) in enumerate(zip(e.tolist(), g.tolist(), strict=True)):
        bad = not _close_scalar(a, b)
        if bad or len(e) <= limit:
            lines.append(f"{i:<4} {_num(a):<15} {_num(b):<15}{' *' if bad else ''}")
            shown += 1
        if shown >= limit:
            lines.append("...")
            break
    return lines


def _close_scalar(a: Any, b: Any) -> bool:
    try:
        return bool(np.isclose(float(a), float(b), rtol=1e-5, atol=1e-6, equal_nan=True))
    except (TypeError, ValueError):
        return a == b


def _num(x: Any) -> str:
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def _short(x: Any, limit: int = 200) -> str:
    s = np.array2string(x, precision=6) if isinstance(x, np.ndarray) else repr(x)
    return s if len(s) <= limit else s[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------
# safe calls into user code


def snapshot(x: Any) -> Any:
    """A deep copy of a tensor or array argument (to detect in-place mutation)."""
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, np.ndarray):
        return x.copy()
    return x


def same_values(a: Any, b: Any) -> bool:
    """Equal shape, dtype and values (NaN equal to NaN)."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
        b = b.detach().cpu().numpy()
    if isinstance(a, np.ndarray):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.dtype.kind == "f":
            return bool(np.array_equal(a, b, equal_nan=True))
        return bool(np.array_equal(a, b))
    return a == b


def safe_call(call: Callable[[], Any], inputs: Mapping[str, Any]) -> tuple[Any, str | None]:
    """Run ``call()``; return ``(output, None)`` or ``(None, message)``.

    The message says what went wrong: an exception (type and text) or which of ``inputs`` (the
    arguments passed, by name) the call modified in place.
    """
    before = {k: snapshot(v) for k, v in inputs.items()}
    try:
        out = call()
    except Exception as e:  # noqa: BLE001 - any failure of user code is a failed case
        return None, f"raised {type(e).__name__}: {e}"
    for k, v in inputs.items():
        if not same_values(v, before[k]):
            return None, f"mutated its argument {k!r} in place"
    return out, None


def as_float_rows(out: Any, n: int) -> tuple[np.ndarray | None, str | None]:
    """A function's output as a float64 array ``(n,)``, or ``(None, message)``.

    Objects with an ``advantages`` attribute (like :class:`sim.advantages.GroupAdvantages`)
    are unwrapped; torch tensors and numpy arrays are accepted; the dtype must be floating.
    """
    if hasattr(out, "advantages"):
        out = out.advantages
    if isinstance(out, torch.Tensor):
        if not out.is_floating_point():
            return None, f"returned dtype {out.dtype}, expected a floating dtype"
        arr = out.detach().cpu().to(torch.float64).numpy()
    else:
        try:
            arr = np.asarray(out)
        except Exception as e:  # noqa: BLE001
            return None, f"returned {type(out).__name__}, not an array ({e})"
        if arr.dtype.kind != "f":
            return None, f"returned dtype {arr.dtype}, expected a floating dtype"
        arr = arr.astype(np.float64)
    if arr.shape != (n,):
        return None, f"returned shape {tuple(arr.shape)}, expected ({n},)"
    return arr, None


def compare_rows(
    expected: np.ndarray, got: np.ndarray, atol: float, rtol: float
) -> tuple[bool, float, int]:
    """``(all close, max abs error, first differing row or -1)``; NaN in got never matches."""
    err = np.abs(got - expected)
    err = np.where(np.isnan(err), np.inf, err)
    bad = err > atol + rtol * np.abs(expected)
    first = int(np.argmax(bad)) if bad.any() else -1
    return first < 0, float(err.max(initial=0.0)), first
