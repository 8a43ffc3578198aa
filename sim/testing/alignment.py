"""Check a user's trajectory-alignment function by properties over random call patterns.

The function under test is ``fn(rollout_ids, n_rollouts, target, seed) -> index`` (DESIGN §3.2):
``rollout_ids`` ``(num_rows,)`` int64 (the parent rollout of each sub row, sorted or shuffled),
``n_rollouts`` the rollout count, ``target`` D, ``seed`` an int (passed as ``seed=`` when ``fn``
has a parameter of that name). It returns ``index`` ``(num_aligned,)`` ints into the original
rows, and optionally which rollout each aligned row stands for:

- an object with ``index`` and ``rollout`` attributes (like :class:`sim.alignment.Alignment`),
- a pair ``(index, rollout)``, both ``(num_aligned,)``,
- or ``index`` alone, laid out as ours: one block of D rows per non-empty rollout, in increasing
  rollout id order.

For other signatures pass ``adapter(fn, rollout_ids, n_rollouts, target, seed)``.

Properties (one case each), over ``max_examples`` call patterns drawn by hypothesis plus fixed
ones (all rollouts empty, one row copied to D, a drop, shuffled ids):

==================================== =============================================================
``returns_valid_index``              no exception, no mutation, 1-D integer rows in range
``exactly_target_rows``              every rollout with d_k > 0 ends with exactly D rows
``rows_from_own_rollout``            every aligned row (copies included) is one of its own rows
``drops_without_replacement``        d_k > D: the D rows kept are distinct
``keeps_every_original``             0 < d_k <= D: every original row is kept
``empty_rollouts_contribute_nothing`` d_k = 0: no aligned row stands for it
``reproducible_from_seed``           the same seed gives the same rows
``weight_variance_vs_balanced``      mean variance of the effective row weight (copies / D) over
                                     rollouts with 0 < d_k < D, against ``balanced``, whose
                                     floor/ceil copies give the least possible; informational,
                                     fails only below that bound
==================================== =============================================================

Each failed property reports its smallest counterexample (fewest rows), with the call. The
check runs hypothesis itself, so call it from a plain test, not from inside a ``@given`` one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from sim.testing.report import CaseResult, Report, safe_call

__all__ = ["check_alignment", "PROPERTIES"]

PROPERTIES = (
    "returns_valid_index",
    "exactly_target_rows",
    "rows_from_own_rollout",
    "drops_without_replacement",
    "keeps_every_original",
    "empty_rollouts_contribute_nothing",
    "reproducible_from_seed",
)

AlignAdapter = Callable[[Callable[..., Any], Any, int, int, int], Any]


def _ints(x: Any, name: str) -> tuple[np.ndarray | None, str | None]:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x)
    except Exception as e:  # noqa: BLE001
        return None, f"{name} is not an array ({e})"
    if a.ndim != 1:
        return None, f"{name} has shape {a.shape}, expected 1-D"
    if a.dtype.kind not in "iu" and not (a.dtype.kind == "f" and a.size == 0):
        return None, f"{name} has dtype {a.dtype}, expected integers"
    return a.astype(np.int64), None


def _parse(out: Any, ids: np.ndarray, d: np.ndarray, target: int) -> tuple[Any, Any, str | None]:
    """``(index, owner or None, error)`` from what the function returned."""
    owner_raw = None
    if isinstance(out, tuple) and len(out) == 2:
        index_raw, owner_raw = out
    elif hasattr(out, "index") and not isinstance(out, list | tuple):
        index_raw, owner_raw = out.index, getattr(out, "rollout", None)
    else:
        index_raw = out
    index, err = _ints(index_raw, "index")
    if err is not None:
        return None, None, err
    assert index is not None
    if index.size and (index.min() < 0 or index.max() >= len(ids)):
        bad = int(np.flatnonzero((index < 0) | (index >= len(ids)))[0])
        return None, None, f"index[{bad}] = {index[bad]} is not a row in [0, {len(ids)})"
    if owner_raw is not None:
        owner, err = _ints(owner_raw, "rollout")
        if err is not None or owner is None or len(owner) != len(index):
            return None, None, err or "rollout and index differ in length"
        return index, owner, None
    nonempty = np.flatnonzero(d > 0)
    if len(index) == target * len(nonempty):  # our layout: blocks of D in rollout order
        return index, np.repeat(nonempty, target), None
    return index, None, None


class _Tracker:
    """Per property: examples checked and the smallest counterexample seen."""

    def __init__(self) -> None:
        self.checked = dict.fromkeys(PROPERTIES, 0)
        self.fail: dict[str, tuple[int, str, Any, Any]] = {}
        self.var_user = 0.0
        self.var_balanced = 0.0
        self.var_rollouts = 0

    def record(self, prop: str, ok: bool, size: int, call: str, msg: str = "", exp=None, got=None):
        self.checked[prop] += 1
        if not ok and (prop not in self.fail or size < self.fail[prop][0]):
            self.fail[prop] = (size, f"{msg} [{call}]", exp, got)


def _check_one(fn, adapter, inputs: str, case: tuple, t: _Tracker) -> None:
    ids_np, n_rollouts, target, seed = case
    ids_np = np.asarray(ids_np, dtype=np.int64)
    d = np.bincount(ids_np, minlength=n_rollouts)
    size = len(ids_np) + n_rollouts
    call = f"rollout_ids={ids_np.tolist()}, n_rollouts={n_rollouts}, target={target}, seed={seed}"

    def invoke():
        ids = torch.from_numpy(ids_np.copy()) if inputs == "torch" else ids_np.copy()
        if adapter is not None:
            f = lambda: adapter(fn, ids, n_rollouts, target, seed)  # noqa: E731
        elif _takes_seed_kw(fn):
            f = lambda: fn(ids, n_rollouts, target, seed=seed)  # noqa: E731
        else:
            f = lambda: fn(ids, n_rollouts, target, seed)  # noqa: E731
        out, err = safe_call(f, {"rollout_ids": ids})
        return (None, None, err) if err is not None else _parse(out, ids_np, d, target)

    index, owner, err = invoke()
    t.record("returns_valid_index", err is None, size, call, err or "")
    if err is not None:
        return
    nonempty = np.flatnonzero(d > 0)
    want = target * len(nonempty)
    if owner is None:
        msg = f"returned {len(index)} rows, expected D x non-empty rollouts = {want}"
        t.record("exactly_target_rows", False, size, call, msg, want, len(index))
        return
    per = np.bincount(owner, minlength=n_rollouts)[:n_rollouts]
    bad = np.flatnonzero((per != target) & (d > 0))
    msg = ""
    if len(bad):
        k = bad[0]
        msg = f"rollout {k} (d_k={d[k]}) has {per[k]} rows, expected D={target}"
    t.record(
        "exactly_target_rows",
        not len(bad) and len(index) == want,
        size,
        call,
        msg,
        target,
        None if not len(bad) else int(per[bad[0]]),
    )
    stray = np.flatnonzero(ids_np[index] != owner)
    msg = ""
    if len(stray):
        j, src = stray[0], ids_np[index[stray[0]]]
        msg = f"aligned row {j} (rollout {owner[j]}) is row {index[j]} of rollout {src}"
    t.record("rows_from_own_rollout", not len(stray), size, call, msg)
    empty_rows = np.isin(owner, np.flatnonzero(d == 0)) | (owner >= n_rollouts) | (owner < 0)
    if (d == 0).any():
        msg = "" if not empty_rows.any() else f"rollout {owner[empty_rows][0]} has d_k=0 but rows"
        t.record("empty_rollouts_contribute_nothing", not empty_rows.any(), size, call, msg)
    for k in nonempty:
        rows = index[owner == k]
        if d[k] > target:
            ok = len(np.unique(rows)) == len(rows)
            msg = f"rollout {k} (d_k={d[k]} > D={target}) keeps rows {sorted(rows.tolist())}"
            t.record("drops_without_replacement", ok, size, call, "" if ok else msg)
        else:
            missing = sorted(set(np.flatnonzero(ids_np == k).tolist()) - set(rows.tolist()))
            msg = f"rollout {k} (d_k={d[k]} <= D={target}) lost its rows {missing}"
            t.record("keeps_every_original", not missing, size, call, "" if not missing else msg)
            if d[k] < target and len(rows) == target:
                m = np.bincount(rows, minlength=len(ids_np))[ids_np == k] / target
                q, rem = divmod(target, int(d[k]))
                t.var_user += float(m.var())
                t.var_balanced += rem * (d[k] - rem) / d[k] ** 2 / target**2
                t.var_rollouts += 1
    again, owner2, err2 = invoke()
    same = err2 is None and np.array_equal(again, index)
    t.record("reproducible_from_seed", same, size, call, "" if same else "same seed, other rows")


def _takes_seed_kw(fn: Callable[..., Any]) -> bool:
    try:
        return "seed" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def check_alignment(
    fn: Callable[..., Any],
    *,
    adapter: AlignAdapter | None = None,
    inputs: str = "torch",
    max_examples: int = 50,
    seed: int = 0,
    max_rollouts: int = 12,
    max_calls: int = 12,
    max_target: int = 9,
    raise_on_fail: bool = False,
) -> Report:
    """Check ``fn`` against the alignment rules (DESIGN §3.2) on random call patterns.

    Args:
        fn: ``fn(rollout_ids, n_rollouts, target, seed) -> index`` (see the module docstring).
        adapter: ``adapter(fn, rollout_ids, n_rollouts, target, seed)`` for other signatures.
        inputs: ``torch`` (default) or ``numpy``: the type of ``rollout_ids``.
        max_examples: call patterns drawn by hypothesis (plus 5 fixed ones).
        seed: hypothesis's seed: the same seed draws the same patterns.
        max_rollouts, max_calls, max_target: bounds of the drawn patterns.
        raise_on_fail: raise :class:`~sim.testing.CheckFailed` with the counterexamples.

    Returns:
        A :class:`~sim.testing.Report`, one case per property.

    Example:
        >>> from sim.alignment import align
        >>> check_alignment(align, max_examples=10).passed
        True
    """
    from hypothesis import HealthCheck, Phase, example, given, settings
    from hypothesis import seed as hseed

    from sim.testing.strategies import rollout_patterns

    if inputs not in ("torch", "numpy"):
        raise ValueError(f"inputs must be 'torch' or 'numpy', got {inputs!r}")
    t = _Tracker()
    i64 = np.int64

    @hseed(seed)
    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
    )
    @given(rollout_patterns(max_rollouts, max_calls, max_target))
    @example((np.zeros(0, i64), 3, 2, 0))  # every rollout empty
    @example((np.zeros(1, i64), 1, 4, 1))  # one row copied to D = 4
    @example((np.zeros(5, i64), 1, 2, 2))  # drop 3 of 5
    @example((np.array([2, 0, 2, 0, 2, 2], i64), 4, 3, 3))  # shuffled; rollouts 1, 3 empty
    @example((np.array([0, 0, 1, 2, 2, 2], i64), 3, 4, 4))  # d = 2, 1, 3 below D = 4
    def explore(case: tuple) -> None:
        _check_one(fn, adapter, inputs, case, t)

    explore()
    name = getattr(fn, "__qualname__", None) or repr(fn)
    report = Report("alignment", name, {"max_examples": max_examples, "seed": seed})
    for prop in PROPERTIES:
        if prop in t.fail:
            _, msg, exp, got = t.fail[prop]
            report.cases.append(CaseResult(prop, False, msg, exp, got))
        elif t.checked[prop] == 0:
            report.cases.append(CaseResult(prop, True, "no applicable example", skipped=True))
        else:
            report.cases.append(CaseResult(prop, True, f"{t.checked[prop]} checks"))
    if t.var_rollouts:
        u, b = t.var_user / t.var_rollouts, t.var_balanced / t.var_rollouts
        ok = u >= b - 1e-12
        msg = f"mean var of row weight {u:.4g} vs balanced {b:.4g} (ratio {u / b if b else 1:.2f})"
        msg += "" if ok else ": below the least possible, copies are miscounted"
        report.cases.append(CaseResult("weight_variance_vs_balanced", ok, msg, b, u, 0.0))
    if raise_on_fail:
        report.raise_if_failed()
    return report
