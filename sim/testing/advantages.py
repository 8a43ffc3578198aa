"""Check a user's group-advantage function, and say which GRPO convention it follows.

The function under test is ``fn(rewards, group_ids) -> advantages``: ``rewards`` ``(num_rows,)``
float64 and ``group_ids`` ``(num_rows,)`` int64 (torch tensors, or numpy arrays with
``inputs="numpy"``), returning ``(num_rows,)`` floats (tensor, array, or an object with an
``advantages`` attribute). For other signatures pass ``adapter(fn, rewards, group_ids, weights)``
returning the advantages, e.g. for verl's ``(token_level_rewards, response_mask, index)``::

    adapter = lambda fn, r, g, w: fn(r[:, None], torch.ones(len(r), 1), g.numpy())[0][:, 0]

Worked cases (hand-computed; the arithmetic behind the expected values):

- ``worked_one_group``: rewards 0, 0.1, 1, 1 (one query, K = 4): mean 0.525, deviations
  -0.525, -0.425, 0.475, 0.475; population var (0.275625 + 0.180625 + 2 * 0.225625) / 4 =
  0.226875, std 0.4763139; sample var 0.9075 / 3 = 0.3025, std 0.55.
- ``worked_binary``: rewards 1, 0, 0, 0: mean 0.25, deviations 0.75, -0.25, -0.25, -0.25;
  population var 0.75 / 4 = 0.1875, std 0.4330127; sample var 0.75 / 3 = 0.25, std 0.5.
- ``worked_two_groups``: rewards 0, 1 | 10, 11: group means 0.5, 10.5, deviations +-0.5; group
  std 0.5 (population) or 0.7071068 (sample); batch mean 5.5, squared deviations 30.25, 20.25,
  20.25, 30.25 (sum 101): batch std sqrt(101 / 4) = 5.0249378 or sqrt(101 / 3) = 5.8022984.

Expected value = deviation / (std + eps) (scale ``group``/``batch``) or the deviation (``none``).

Edge cases (expected from :func:`~sim.testing.conventions.reference_advantages`):
``group_of_one``, ``constant_group`` (must give 0, never NaN), ``near_constant_group``
(std 5e-6: tells eps and floor conventions apart, and eps inside the root), ``float_residue_group``
(0.1 + 0.2 vs 0.3), ``nan_rewards`` (raising is right; TRL's choice, NaN rows left out and given
0, is accepted; NaN advantages are not), ``zero_weight_rows`` (when ``fn`` takes ``weights``),
``noncontiguous_group_ids``, ``ragged_groups``; then ``random_batches`` against the reference.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from sim.testing.conventions import CONVENTIONS, Convention, get_convention, reference_advantages
from sim.testing.report import CaseResult, Report, as_float_rows, compare_rows, safe_call

__all__ = ["ConventionMatch", "check_group_advantages", "detect_convention"]

AdvAdapter = Callable[[Callable[..., Any], Any, Any, Any], Any]


@dataclass(frozen=True)
class _Case:
    name: str
    rewards: np.ndarray  # (num_rows,) float64
    group_ids: np.ndarray  # (num_rows,) int64
    weights: np.ndarray | None = None  # (num_rows,) float64
    hand: Callable[[Convention], np.ndarray] | None = None  # hand-computed expected values


def _scaled(dev: np.ndarray, group_std: dict, batch_std: dict, c: Convention) -> np.ndarray:
    if c.scale == "none":
        return dev
    std = group_std if c.scale == "group" else batch_std
    return dev / (np.asarray(std[c.ddof]) + c.eps)


def _worked_cases() -> list[_Case]:
    one = np.array([-0.525, -0.425, 0.475, 0.475])
    one_std = {0: 0.226875**0.5, 1: 0.55}
    binary = np.array([0.75, -0.25, -0.25, -0.25])
    bin_std = {0: 0.1875**0.5, 1: 0.5}
    two = np.array([-0.5, 0.5, -0.5, 0.5])
    two_std, two_batch = {0: 0.5, 1: 0.5**0.5}, {0: (101 / 4) ** 0.5, 1: (101 / 3) ** 0.5}
    f = np.array
    return [
        _Case(
            "worked_one_group",
            f([0.0, 0.1, 1.0, 1.0]),
            f([0, 0, 0, 0]),
            hand=lambda c: _scaled(one, one_std, one_std, c),
        ),
        _Case(
            "worked_binary",
            f([1.0, 0.0, 0.0, 0.0]),
            f([0, 0, 0, 0]),
            hand=lambda c: _scaled(binary, bin_std, bin_std, c),
        ),
        _Case(
            "worked_two_groups",
            f([0.0, 1.0, 10.0, 11.0]),
            f([0, 0, 1, 1]),
            hand=lambda c: _scaled(two, two_std, two_batch, c),
        ),
    ]


def _edge_cases() -> list[_Case]:
    f = np.array
    return [
        _Case("group_of_one", f([0.7, 0.2, 0.9]), f([5, 9, 9])),
        _Case("constant_group", f([0.5, 0.5, 0.5, 0.5, 0.0, 1.0]), f([1, 1, 1, 1, 2, 2])),
        _Case("near_constant_group", f([0.0, 1e-5, 0.0, 1e-5]), f([0, 0, 0, 0])),
        _Case("float_residue_group", f([0.1 + 0.2, 0.3, 0.0, 1.0]), f([0, 0, 1, 1])),
        _Case("nan_rewards", f([0.0, np.nan, 1.0, 0.5, 0.5, 1.0]), f([0, 0, 0, 1, 1, 1])),
        _Case(
            "zero_weight_rows",
            f([0.0, 1.0, 9.0, 0.2, 0.4, 0.6]),
            f([0, 0, 0, 1, 1, 1]),
            weights=f([1.0, 1.0, 0.0, 1.0, 0.0, 1.0]),
        ),
        _Case(
            "noncontiguous_group_ids",
            f([0.2, 1.0, 0.4, 0.0, 0.9, 0.3]),
            f([10**6, 3, 10**6, 3, 3, 10**6]),
        ),
        _Case(
            "ragged_groups",
            f([0.1, 0.9, 0.4, 0.3, 1.0, 0.0, 0.6, 0.2, 0.8, 0.5, 0.7]),
            f([4, 0, 2, 4, 7, 0, 4, 2, 4, 4, 2]),  # sizes: 0 -> 2, 2 -> 3, 4 -> 5, 7 -> 1
        ),
    ]


def _random_cases(n: int, seed: int) -> list[_Case]:
    """``n`` batches: 1..6 groups of 1..8 rows, sparse shuffled ids, binary/discrete/float."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        sizes = rng.integers(1, 9, size=rng.integers(1, 7))
        labels = rng.choice(10**4, size=len(sizes), replace=False)
        ids = rng.permutation(np.repeat(labels, sizes))
        kind = i % 3
        if kind == 0:
            r = rng.integers(0, 2, size=len(ids)).astype(np.float64)
        elif kind == 1:
            r = np.round(rng.integers(0, 11, size=len(ids)) * 0.1, 1)
        else:
            r = np.round(rng.normal(0.0, 3.0, size=len(ids)), 3)
        out.append(_Case(f"random_{i}", r, ids.astype(np.int64)))
    return out


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    """``fn`` has a parameter called ``name`` (``**kwargs`` does not count)."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _run(
    fn: Callable[..., Any], case: _Case, adapter: AdvAdapter | None, inputs: str
) -> tuple[np.ndarray | None, str | None]:
    """Call ``fn`` on a case: ``(advantages float64 (num_rows,), None)`` or ``(None, why)``."""
    if inputs == "numpy":
        r, g = case.rewards.copy(), case.group_ids.copy()
        w = None if case.weights is None else case.weights.copy()
    else:
        r, g = torch.from_numpy(case.rewards.copy()), torch.from_numpy(case.group_ids.copy())
        w = None if case.weights is None else torch.from_numpy(case.weights.copy())
    args = {"rewards": r, "group_ids": g} | ({} if w is None else {"weights": w})
    if adapter is not None:
        out, err = safe_call(lambda: adapter(fn, r, g, w), args)
    elif w is not None:
        out, err = safe_call(lambda: fn(r, g, weights=w), args)
    else:
        out, err = safe_call(lambda: fn(r, g), args)
    if err is not None:
        return None, err
    return as_float_rows(out, len(case.rewards))


def _expected(case: _Case, conv: Convention) -> np.ndarray:
    if case.hand is not None:
        return case.hand(conv)
    r, w = case.rewards, case.weights
    if case.name == "nan_rewards":  # TRL's accepted answer: NaN rows left out, advantage 0
        w = (~np.isnan(r)).astype(np.float64)
        r = np.nan_to_num(r)
    return reference_advantages(r, case.group_ids, conv, weights=w)


def _judge(
    case: _Case, conv: Convention, got: np.ndarray | None, err: str | None, atol: float, rtol: float
) -> CaseResult:
    expected = _expected(case, conv)
    if case.name == "nan_rewards":
        if err is not None and err.startswith("raised"):
            return CaseResult(case.name, True, f"{err} (accepted: NaN rewards are an error)")
        if got is not None and not np.isfinite(got).all():
            rows = np.flatnonzero(~np.isfinite(got)).tolist()
            msg = f"NaN rewards gave NaN/inf advantages silently (rows {rows})"
            return CaseResult(case.name, False, msg, expected, got, float("inf"))
    if err is not None:
        return CaseResult(case.name, False, err, expected, None, float("inf"))
    assert got is not None
    ok, max_err, first = compare_rows(expected, got, atol, rtol)
    msg = "" if ok else f"row {first}: expected {expected[first]:.6g}, got {got[first]:.6g}"
    if case.name == "nan_rewards" and ok:
        msg = "NaN rows left out and given 0 (accepted, as TRL does)"
    return CaseResult(case.name, ok, msg, expected, got, max_err)


def _resolve(
    convention: str | Convention,
    ddof: int | None,
    eps: float | None,
    scale: str | None,
    std_floor: float | None,
) -> Convention:
    conv = get_convention(convention)
    given = {"ddof": ddof, "eps": eps, "scale": scale, "std_floor": std_floor}
    given = {k: v for k, v in given.items() if v is not None}
    if given:
        conv = replace(conv, name=f"{conv.name}+custom", **given)
    if conv.ddof not in (0, 1) or conv.scale not in ("group", "batch", "none"):
        raise ValueError(f"ddof must be 0 or 1 and scale group|batch|none, got {conv}")
    return conv


def check_group_advantages(
    fn: Callable[..., Any],
    *,
    convention: str | Convention = "paper",
    ddof: int | None = None,
    eps: float | None = None,
    scale: str | None = None,
    std_floor: float | None = None,
    adapter: AdvAdapter | None = None,
    inputs: str = "torch",
    weights: bool | None = None,
    n_random: int = 30,
    seed: int = 0,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    skip: tuple[str, ...] = (),
    raise_on_fail: bool = False,
) -> Report:
    """Run ``fn`` on the worked, edge and random cases under the declared conventions.

    Args:
        fn: ``fn(rewards, group_ids) -> advantages`` (see the module docstring).
        convention: a name of :data:`~sim.testing.CONVENTIONS` or a :class:`Convention`
            (default ``paper``); ``ddof``, ``eps``, ``scale``, ``std_floor`` override its fields.
        adapter: ``adapter(fn, rewards, group_ids, weights) -> advantages`` for other signatures.
        inputs: ``torch`` (default) or ``numpy``: the type of the arrays passed.
        weights: test ``zero_weight_rows`` (passes ``weights=``); default: when ``fn`` has a
            ``weights`` parameter and no adapter is given.
        n_random: random batches compared with the reference; seed: their seed.
        atol, rtol: tolerance, ``|got - expected| <= atol + rtol * |expected|``.
        skip: case names to skip (reported as skipped).
        raise_on_fail: raise :class:`~sim.testing.CheckFailed` with a readable diff on failure.

    Returns:
        A :class:`~sim.testing.Report` (``passed``, ``cases``, ``max_error``, ``table()``).

    Example:
        >>> from sim.advantages import group_advantages
        >>> check_group_advantages(group_advantages).passed
        True
    """
    conv = _resolve(convention, ddof, eps, scale, std_floor)
    if inputs not in ("torch", "numpy"):
        raise ValueError(f"inputs must be 'torch' or 'numpy', got {inputs!r}")
    use_w = (adapter is None and _accepts(fn, "weights")) if weights is None else weights
    name = getattr(fn, "__qualname__", None) or repr(fn)
    settings = {"convention": conv.name, "ddof": conv.ddof, "eps": conv.eps}
    settings |= {"scale": conv.scale, "std_floor": conv.std_floor}
    report = Report("advantages", name, settings)
    for case in _worked_cases() + _edge_cases():
        if case.name in skip or (case.weights is not None and not use_w):
            why = "skipped on request" if case.name in skip else "fn takes no weights"
            report.cases.append(CaseResult(case.name, True, why, skipped=True))
            continue
        got, err = _run(fn, case, adapter, inputs)
        report.cases.append(_judge(case, conv, got, err, atol, rtol))
    if "random_batches" in skip or n_random <= 0:
        report.cases.append(CaseResult("random_batches", True, "skipped", skipped=True))
    else:
        results = [
            _judge(case, conv, *_run(fn, case, adapter, inputs), atol, rtol)
            for case in _random_cases(n_random, seed)
        ]
        bad = [res for res in results if not res.passed]
        show = bad[0] if bad else max(results, key=lambda res: res.max_error)
        msg = f"{len(bad)}/{n_random} batches differ; first: {show.name}, {show.message}"
        report.cases.append(
            CaseResult(
                "random_batches",
                not bad,
                msg if bad else f"{n_random} batches vs reference",
                show.expected,
                show.got,
                max(res.max_error for res in results),
            )
        )
    if raise_on_fail:
        report.raise_if_failed()
    return report


@dataclass(frozen=True)
class ConventionMatch:
    """What :func:`detect_convention` found.

    Attributes:
        name: the matching convention's name, or None when none matches.
        convention: the matching :class:`Convention`, or None.
        closest: the convention that matched the most probe cases.
        departure: where ``closest`` departs first (case, row, expected, got); "" on a match.
        scores: convention name -> probe cases matched (out of ``n_probes``).
        n_probes: number of probe cases run.
    """

    name: str | None
    convention: Convention | None
    closest: str
    departure: str
    scores: dict[str, int] = field(default_factory=dict)
    n_probes: int = 0

    def __str__(self) -> str:
        if self.convention is not None:
            return f"matches {self.convention.describe()}"
        return (
            f"matches none of {', '.join(self.scores)}; closest {self.closest!r} "
            f"({self.scores[self.closest]}/{self.n_probes} cases), "
            f"departs first at {self.departure}"
        )


def detect_convention(
    fn: Callable[..., Any],
    *,
    adapter: AdvAdapter | None = None,
    inputs: str = "torch",
    conventions: tuple[str | Convention, ...] | None = None,
    atol: float = 1e-6,
    rtol: float = 1e-5,
) -> ConventionMatch:
    """Which GRPO is this? Compare ``fn`` with each known convention on probe cases.

    The probes are the worked cases, the edge cases without NaN or weights, and four random
    batches, in that order; every known convention differs from every other on at least one.

    Args:
        fn, adapter, inputs, atol, rtol: as in :func:`check_group_advantages`.
        conventions: the candidates (default: all of :data:`~sim.testing.CONVENTIONS`).

    Returns:
        :class:`ConventionMatch`; ``str()`` of it is a one-line answer.

    Example:
        >>> from sim.advantages import group_advantages
        >>> detect_convention(group_advantages).name
        'paper'
        >>> detect_convention(lambda r, g: group_advantages(r, g, ddof=1)).closest
        'verl'
    """
    cands = [get_convention(c) for c in (conventions or tuple(CONVENTIONS))]
    probes = [c for c in _worked_cases() + _edge_cases() if c.name != "nan_rewards"]
    probes = [c for c in probes if c.weights is None] + _random_cases(4, seed=1)
    outputs = [_run(fn, case, adapter, inputs) for case in probes]
    scores: dict[str, int] = {}
    first: dict[str, str] = {}
    for conv in cands:
        scores[conv.name] = 0
        for case, (got, err) in zip(probes, outputs, strict=True):
            res = _judge(case, conv, got, err, atol, rtol)
            scores[conv.name] += res.passed
            if not res.passed and conv.name not in first:
                first[conv.name] = f"case {case.name!r}: {res.message}"
    n = len(probes)
    for conv in cands:
        if scores[conv.name] == n:
            return ConventionMatch(conv.name, conv, conv.name, "", scores, n)
    closest = max(cands, key=lambda c: scores[c.name]).name
    return ConventionMatch(None, None, closest, first[closest], scores, n)
