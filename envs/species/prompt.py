"""Text of the invasive-species task: the question, the hops' conditions, reports, instructions.

Used by the text faces (``describe(obs, kb)``). Every ``describe_*`` function is pure: it reads
one unbatched observation and the knowledge base rebuilt from the observation's ``query_id``
(row 0 of ``kb``), never the env's state. A report is told as the observation has it (which of
the question's fields the reported page matches); a page that matches every field of its hop,
after earlier hops that did too, is the hop's answer, so it is named.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from envs.species import names
from envs.species.types import (
    FILM,
    INDEX_NAMES,
    NUM_SLOTS,
    NUM_TYPES,
    PERSON,
    RECORDS,
    SLOT_NAMES,
    SPECIES,
)

Obs = Mapping[str, np.ndarray]


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


def describe_main(obs: Obs, kb, *, max_calls: int, flat: bool = False) -> str:
    """The main agent's user message (flat mode: plus its search session, ``tool_*`` keys)."""
    n_hops = int(np.asarray(obs["hops"]).sum())
    first = NUM_TYPES - n_hops
    how = "open a search session for" if flat else "delegate"
    lines = [question(kb, 0), "", f"Hops ({how} each with the conditions to keep):"]
    for t in range(first, NUM_TYPES):
        conds = "; ".join(
            f"condition_{j + 1} = {c}" for j, c in enumerate(conditions(kb, 0, t, first))
        )
        lines.append(f"- {INDEX_NAMES[t]}: {conds}")
    lines.append("")
    lines.append("Reports so far:")
    status = np.asarray(obs["status"]).argmax(axis=1)  # 0 never asked, 1 reported, 2 failed
    match = np.asarray(obs["match"]) > 0
    chain = True  # every earlier hop's report matched every field: they are the answers
    any_report = False
    for t in range(first, NUM_TYPES):
        if obs["reported"][t] > 0:
            chain = chain and bool(match[t].all())
            if chain:
                line = report_line(kb, 0, t, int(kb.target[0, t]))
            else:
                line = f"{INDEX_NAMES[t]}: a page that " + _match_text(t, match[t])
            if status[t] == 2:
                line += " (the latest call for this hop found nothing)"
            lines.append("- " + line)
            any_report = True
        else:
            chain = False
            if status[t] == 2:
                lines.append(f"- {INDEX_NAMES[t]}: the sub-agent found nothing")
                any_report = True
    if not any_report:
        lines.append("- none")
    if not flat:
        lines.append(f"Calls left: {round(float(obs['budget'][0]) * max_calls)}.")
    elif obs["tool_open"][0] > 0:
        session = {k[5:]: v for k, v in obs.items() if k.startswith("tool_")}
        lines += ["", describe_sub(session, kb, flat=True)]
    else:
        lines += ["", "No search session is open: open one for a hop (find_<hop>)."]
    return "\n".join(lines)


def _match_text(t: int, match: np.ndarray) -> str:
    yes = [f"condition_{j + 1} ({SLOT_NAMES[t][j]})" for j in range(NUM_SLOTS) if match[j]]
    no = [f"condition_{j + 1} ({SLOT_NAMES[t][j]})" for j in range(NUM_SLOTS) if not match[j]]
    text = "matches " + (", ".join(yes) if yes else "none of the conditions")
    return text + ("; it does not match " + ", ".join(no) if no and yes else "")


def instruction_lines(instruction: np.ndarray, kb) -> tuple[int, list[str]]:
    """``(index type, one line per condition)`` of an instruction ``[type, value_0..2,
    include_0..2]`` in words: the stated conditions' phrases, the others "not stated"."""
    ins = np.asarray(instruction, dtype=np.int64)
    t = int(ins[0])
    value, include = ins[1 : 1 + NUM_SLOTS], ins[1 + NUM_SLOTS :] > 0
    out = []
    for j in range(NUM_SLOTS):
        slot = SLOT_NAMES[t][j]
        if include[j] and value[j] >= 0:
            out.append(f"condition_{j + 1} ({slot}): {field_phrase(kb, 0, t, j, int(value[j]))}")
        else:
            out.append(f"condition_{j + 1} ({slot}): not stated")
    return t, out


def describe_sub(obs: Obs, kb, *, flat: bool = False) -> str:
    """The search sub-agent's user message: the instruction it was given in words (the stated
    conditions' phrases) and its own tool results."""
    t, conds = instruction_lines(obs["instruction"], kb)
    if flat:
        head = f"Your search session: find the {INDEX_NAMES[t]} page that satisfies:"
    else:
        head = f"The main agent asked you to find the {INDEX_NAMES[t]} page that satisfies:"
    lines = [head, *(f"- {c}" for c in conds)]
    if obs["error"][0] > 0:
        lines.append("Your search tool returned an error.")
    elif obs["searched"][0] > 0:
        found = int(np.asarray(obs["results"]).sum())
        lines.append(f"Your last search returned {found} result(s).")
    if obs["visited"][0] > 0:
        vm = np.asarray(obs["visited_match"]) > 0
        hit = [conds[j].split(":")[0] for j in range(NUM_SLOTS) if vm[j]]
        lines.append("The visited page satisfies: " + (", ".join(hit) or "none") + ".")
    return "\n".join(lines)
