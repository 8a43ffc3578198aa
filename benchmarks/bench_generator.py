"""Benchmark: Rubik's puzzle generation, the numpy reference vs the numba-compiled generator.

Per preset, ms per puzzle of ``draw(query_rng(q))`` (uncached, as the env pays for a new query)
over the same query ids with ``PuzzleGenerator`` (the reference) and ``CompiledPuzzleGenerator``,
best of ``--repeats`` alternating passes (robust to other load on the machine), and the ratio; the
floor both pay is making the query's numpy generator (``query_rng``, its own column). Also checks
that both give the same puzzles on the timed queries and reports the compiled generator's first
call (numba's cache load, or the compile on a cold cache).
Writes ``benchmarks/results/bench_generator.json``.

    python benchmarks/bench_generator.py [--queries 200] [--repeats 3] [--presets low,default,heavy]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from envs.rubiks.config import PRESETS
from envs.rubiks.generator import PuzzleGenerator, query_rng

RESULTS = Path(__file__).resolve().parent / "results"
FIELDS = ("clues", "answer", "world", "possible", "missing", "needed")


def per_puzzle_ms(fns: dict, queries: list[int], repeats: int) -> tuple[dict, dict]:
    """Best over ``repeats`` alternating passes of ms per call of each ``fns[name](q)``, and
    each one's results of the last pass."""
    best = {name: float("inf") for name in fns}
    out = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            out[name] = [fn(q) for q in queries]
            ms = (time.perf_counter() - t0) / len(queries) * 1e3
            best[name] = min(best[name], ms)
    return best, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--queries", type=int, default=200, help="query ids per preset (default 200)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes, best reported")
    p.add_argument("--presets", default="low,default,heavy", help="comma list of presets")
    args = p.parse_args()
    names = [s.strip() for s in args.presets.split(",") if s.strip()]
    bad = [s for s in names if s not in PRESETS]
    if bad or args.queries < 1 or args.repeats < 1:
        p.error(f"--presets must name {sorted(PRESETS)}, --queries and --repeats >= 1 ({bad})")

    t0 = time.perf_counter()
    from envs.rubiks.generator_jit import CompiledPuzzleGenerator  # imports numba

    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    CompiledPuzzleGenerator(PRESETS["default"]["facts_needed"]).draw(query_rng(0))
    first_s = time.perf_counter() - t0

    queries = [2**31 + q for q in range(args.queries)]  # held-out ids
    rows = []
    for name in names:
        fn = PRESETS[name]["facts_needed"]
        ref, jit = PuzzleGenerator(fn), CompiledPuzzleGenerator(fn)
        fns = {
            "query_rng": query_rng,
            "python": lambda q, g=ref: g.draw(query_rng(q)),
            "numba": lambda q, g=jit: g.draw(query_rng(q)),
        }
        ms, out = per_puzzle_ms(fns, queries, args.repeats)
        rng_ms, py_ms, nb_ms = ms["query_rng"], ms["python"], ms["numba"]
        same = all(
            np.array_equal(getattr(x, f), getattr(y, f))
            for x, y in zip(out["python"], out["numba"], strict=True)
            for f in FIELDS
        )
        rows.append(
            {
                "preset": name,
                "queries": len(queries),
                "query_rng_ms": rng_ms,
                "python_ms": py_ms,
                "numba_ms": nb_ms,
                "ratio_python_to_numba": py_ms / nb_ms,
                "identical": same,
            }
        )

    print(
        f"\nms per puzzle (uncached draw from the query's generator), best of {args.repeats} "
        f"passes; numba import {import_s:.2f} s, first compiled call {first_s:.2f} s; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"{'preset':<9} {'n':>5} {'query_rng':>10} {'python':>9} {'numba':>9} "
        f"{'python/numba':>13} {'identical':>10}"
    )
    for r in rows:
        print(
            f"{r['preset']:<9} {r['queries']:>5} {r['query_rng_ms']:>10.3f} {r['python_ms']:>9.3f} "
            f"{r['numba_ms']:>9.3f} {r['ratio_python_to_numba']:>13.1f} {str(r['identical']):>10}"
        )
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "bench_generator.json"
    out = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "repeats": args.repeats,
        "numba_import_s": import_s,
        "first_compiled_call_s": first_s,
        "results": rows,
    }
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")
    if not all(r["identical"] for r in rows):
        raise SystemExit("the compiled generator's puzzles differ from the reference's")


if __name__ == "__main__":
    main()
