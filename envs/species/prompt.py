"""Text of the invasive-species task: the question, the hops' conditions and the reports.

Used by the main agent's text face (``describe``). Everything here reads one episode's knowledge
base and the main agent's reports, i.e. what the main agent has been told.
"""

from __future__ import annotations

import numpy as np

from envs.species import names
from envs.species.types import FILM, INDEX_NAMES, PERSON, RECORDS, SLOT_NAMES, SPECIES


def entity_phrase(kb, i: int, t: int, e: int) -> str:
    """Name of entity ``e`` of index ``t`` (t < RECORDS) in episode ``i``."""
    k = int(kb.entity_names[i, t, e])
    if t == SPECIES:
        common, sci = names.SPECIES[k]
        return f"{common} ({sci})"
    return names.PERSONS[k] if t == PERSON else names.FILMS[k]


def field_phrase(kb, i: int, t: int, j: int, v: int) -> str:
    """Phrase of value ``v`` of field ``j`` of index ``t`` in episode ``i``."""
    if j == 0 and t != PERSON:
        return entity_phrase(kb, i, t - 1, v)
    if t == RECORDS and j == 2:
        return names.PERIODS[v].format(year=int(kb.cutoff[i]))
    return names.ATTR_PHRASES[t][j][v]


def conditions(kb, i: int, t: int, first: int) -> list[str]:
    """The three conditions of hop ``t`` as the question states them."""
    out = []
    for j in range(3):
        if j == 0 and t != first:
            out.append(f"{SLOT_NAMES[t][0]}: the {INDEX_NAMES[t - 1]} found in the previous hop")
        else:
            v = int(kb.values[i, t, j])
            out.append(f"{SLOT_NAMES[t][j]}: {field_phrase(kb, i, t, j, v)}")
    return out


def question(kb, i: int) -> str:
    """The question of episode ``i`` in one sentence."""
    first = 4 - int(kb.n_hops[i])
    parts = []
    for t in range(first, 4):
        c = [field_phrase(kb, i, t, j, int(kb.values[i, t, j])) for j in range(3)]
        prev = "that person" if t == FILM else "that film" if t == SPECIES else "that species"
        link = c[0] if t == first else prev
        if t == PERSON:
            parts.append(f"the person from {c[0]}, winner of the {c[1]}, {c[2]}")
        elif t == FILM:
            parts.append(f"the {c[2]} film {c[1]} directed by {link}")
        elif t == SPECIES:
            parts.append(f"the {c[2]} that appeared in {link} and spread through {c[1]}")
        else:
            parts.append(f"the zip codes where {c[1]} recorded {link} as nonnative {c[2]}")
    return "Find " + "; then ".join(parts) + "."


def report_line(kb, i: int, t: int, doc: int) -> str:
    """What a report on document ``doc`` of index ``t`` says."""
    if t == RECORDS:
        z = kb.zips[i, doc]
        y = kb.years[i, doc]
        lst = ", ".join(f"{int(a)} ({int(b)})" for a, b in zip(z, y, strict=True) if a >= 0)
        head = ", ".join(field_phrase(kb, i, t, j, int(kb.terms[i, t, doc, j])) for j in range(3))
        return f"records [{head}]: {lst}"
    fields = ", ".join(
        f"{SLOT_NAMES[t][j]} {field_phrase(kb, i, t, j, int(kb.terms[i, t, doc, j]))}"
        for j in range(3)
    )
    return f"{INDEX_NAMES[t]}: {entity_phrase(kb, i, t, doc)} [{fields}]"


def describe_main(kb, report: np.ndarray, status: np.ndarray, i: int, calls_left: int) -> str:
    """The main agent's user message for episode ``i``."""
    first = 4 - int(kb.n_hops[i])
    lines = [question(kb, i), "", "Hops (delegate each with the conditions to keep):"]
    for t in range(first, 4):
        conds = "; ".join(
            f"condition_{j + 1} = {c}" for j, c in enumerate(conditions(kb, i, t, first))
        )
        lines.append(f"- {INDEX_NAMES[t]}: {conds}")
    lines.append("")
    lines.append("Reports so far:")
    any_report = False
    for t in range(first, 4):
        if report[i, t] >= 0:
            lines.append("- " + report_line(kb, i, t, int(report[i, t])))
            any_report = True
        elif status[i, t] == 2:
            lines.append(f"- {INDEX_NAMES[t]}: the sub-agent found nothing")
            any_report = True
    if not any_report:
        lines.append("- none")
    lines.append(f"Calls left: {calls_left}.")
    return "\n".join(lines)
