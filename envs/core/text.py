"""The text face: Qwen3 chat prompts and a parser, built from a declarative tool description.

An env describes its actions once, as :class:`Tool` records (one per value of the action-type
component) whose :class:`Arg` fields map phrases to component values. :class:`TextFace` then gives

* ``render(obs) -> str``: a Qwen3 chat prompt (system message listing the tools as JSON schemas,
  user message from the env's ``describe(obs)``, open assistant turn);
* ``to_text(action) -> str``: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` or
  ``<answer>...</answer>``;
* ``parse(text) -> (action, ok, reason)``: never raises; on failure returns the env's
  *malformed* action (action type = the reserved invalid value, always masked) with ``ok=False``
  and a readable ``reason``.

Round trip: ``parse(to_text(a)) == (canonical(a), True, "")`` for every in-space action ``a``
whose type is a tool; for canonical actions (components irrelevant to the action type set to 0)
that is ``(a, True, "")``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL)


def _norm(s: str) -> str:
    return " ".join(s.strip().lower().split())


@dataclass(frozen=True)
class Arg:
    """One argument of a tool: a string phrase that selects the value of one action component."""

    name: str
    """argument name in the JSON call"""
    component: int
    """index of the action component it sets"""
    phrases: tuple[str, ...]
    """phrase for each value in ``values`` (exact match, case and spacing ignored)"""
    values: tuple[int, ...] | None = None
    """component values the phrases stand for (default: 0, 1, ... in order)"""
    optional: bool = False
    """whether the argument may be omitted; then the component takes ``absent``"""
    absent: int = 0
    """component value meaning "argument omitted" (only for optional arguments)"""
    description: str = ""

    def value_list(self) -> tuple[int, ...]:
        return tuple(range(len(self.phrases))) if self.values is None else self.values


@dataclass(frozen=True)
class Tool:
    """One action kind: the value ``type_value`` of the action-type component."""

    name: str
    """tool name in ``<tool_call>``; for the answer kind, use ``answer=True``"""
    type_value: int
    description: str
    args: tuple[Arg, ...] = ()
    answer: bool = False
    """the kind is ``<answer>phrase</answer>``: exactly one arg, no name"""
    extra: tuple[tuple[int, int], ...] = ()
    """further (component, value) pairs that identify this kind (e.g. a flat-mode sub tool)"""


class TextFace:
    """Pure text functions over an env's MultiDiscrete actions (see module docstring).

    Args:
        tools: one :class:`Tool` per action-type value that the text face can express.
        nvec: the MultiDiscrete component sizes.
        describe: ``describe(obs) -> str`` the user message for an observation.
        system: the opening of the system message (the role and the task).
        type_component: index of the action-type component (default 0).
        invalid_type: the reserved action-type value that means "malformed" (always masked).
    """

    def __init__(
        self,
        tools: tuple[Tool, ...],
        nvec: np.ndarray,
        describe: Callable[[Mapping[str, np.ndarray]], str],
        system: str,
        *,
        type_component: int = 0,
        invalid_type: int | None = None,
    ) -> None:
        self.tools = tools
        self.nvec = np.asarray(nvec, dtype=np.int64)
        self.describe = describe
        self.system = system
        self.type_component = type_component
        self.invalid_type = (
            int(self.nvec[type_component] - 1) if invalid_type is None else invalid_type
        )
        self._by_type = {(t.type_value, t.extra): t for t in tools}
        self._by_name = {t.name: t for t in tools if not t.answer}
        self._answer = next((t for t in tools if t.answer), None)
        for t in tools:
            for a in t.args:
                if len(set(map(_norm, a.phrases))) != len(a.phrases):
                    raise ValueError(f"tool {t.name!r} arg {a.name!r}: phrases must be distinct")
                if len(a.value_list()) != len(a.phrases):
                    raise ValueError(f"tool {t.name!r} arg {a.name!r}: one value per phrase")

    # ------------------------------------------------------------------ actions
    def malformed(self) -> np.ndarray:
        """The action that parse returns for unparseable text: invalid type, zeros elsewhere."""
        a = np.zeros(len(self.nvec), dtype=np.int64)
        a[self.type_component] = self.invalid_type
        return a

    def kind(self, action: np.ndarray) -> Tool | None:
        """The :class:`Tool` an action is an instance of (None for the malformed type)."""
        a = np.asarray(action, dtype=np.int64)
        best = None
        for (tv, extra), tool in self._by_type.items():
            if tv == a[self.type_component] and all(a[c] == v for c, v in extra):
                if best is None or len(extra) > len(best.extra):
                    best = tool
        return best

    def canonical(self, action: np.ndarray) -> np.ndarray:
        """``action`` with every component the action's kind ignores set to 0."""
        a = np.asarray(action, dtype=np.int64)
        out = np.zeros_like(a)
        out[self.type_component] = a[self.type_component]
        tool = self.kind(a)
        if tool is not None:
            for c, v in tool.extra:
                out[c] = v
            for arg in tool.args:
                out[arg.component] = a[arg.component]
        return out

    def to_text(self, action: np.ndarray) -> str:
        """The text of ``action`` (a tool call or an answer); raises ``ValueError`` if no tool."""
        a = np.asarray(action, dtype=np.int64)
        tool = self.kind(a)
        if tool is None:
            raise ValueError(f"action type {int(a[self.type_component])} has no text form")
        args: dict[str, str] = {}
        for arg in tool.args:
            v = int(a[arg.component])
            if arg.optional and v == arg.absent:
                continue
            vals = arg.value_list()
            if v not in vals:
                raise ValueError(f"{tool.name}.{arg.name}: value {v} has no phrase")
            args[arg.name] = arg.phrases[vals.index(v)]
        if tool.answer:
            return f"<answer>{next(iter(args.values()), '')}</answer>"
        call = json.dumps({"name": tool.name, "arguments": args})
        return f"<tool_call>\n{call}\n</tool_call>"

    def parse(self, text: object) -> tuple[np.ndarray, bool, str]:
        """Parse model output into ``(action, ok, reason)``; never raises."""
        try:
            return self._parse(text)
        except Exception as exc:  # noqa: BLE001 - the parser must never raise
            return self.malformed(), False, f"unparseable output ({type(exc).__name__}: {exc})"

    def _parse(self, text: object) -> tuple[np.ndarray, bool, str]:
        bad = self.malformed()
        if not isinstance(text, str):
            return bad, False, f"expected a string, got {type(text).__name__}"
        body = _THINK_RE.sub("", text)
        calls = _CALL_RE.findall(body)
        answers = _ANSWER_RE.findall(body)
        if len(calls) + len(answers) == 0:
            return bad, False, "no <tool_call>...</tool_call> or <answer>...</answer> found"
        if len(calls) + len(answers) > 1:
            return bad, False, "more than one <tool_call>/<answer> in one message"
        a = np.zeros(len(self.nvec), dtype=np.int64)
        if answers:
            tool = self._answer
            if tool is None:
                return bad, False, "this agent cannot answer; use a tool call"
            given = {tool.args[0].name: answers[0]} if tool.args else {}
        else:
            try:
                obj = json.loads(calls[0])
            except json.JSONDecodeError as exc:
                return bad, False, f"tool call is not valid JSON ({exc.msg})"
            if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
                return bad, False, 'tool call must be {"name": str, "arguments": {...}}'
            tool = self._by_name.get(obj["name"])
            if tool is None:
                return bad, False, f"unknown tool {obj['name']!r}; known: {sorted(self._by_name)}"
            given = obj.get("arguments", {})
            if not isinstance(given, dict):
                return bad, False, "arguments must be a JSON object"
        a[self.type_component] = tool.type_value
        for c, v in tool.extra:
            a[c] = v
        known = {arg.name for arg in tool.args}
        extra = sorted(set(given) - known)
        if extra:
            return bad, False, f"{tool.name}: unknown argument(s) {extra}; known: {sorted(known)}"
        for arg in tool.args:
            if arg.name not in given:
                if arg.optional:
                    a[arg.component] = arg.absent
                    continue
                return bad, False, f"{tool.name}: missing argument {arg.name!r}"
            val = given[arg.name]
            if not isinstance(val, str):
                return bad, False, f"{tool.name}.{arg.name} must be a string"
            norm = [_norm(p) for p in arg.phrases]
            if _norm(val) not in norm:
                return (
                    bad,
                    False,
                    f"{tool.name}.{arg.name}: {val!r} is not one of {list(arg.phrases)}",
                )
            a[arg.component] = arg.value_list()[norm.index(_norm(val))]
        return a, True, ""

    # ------------------------------------------------------------------ prompts
    def tool_schemas(self) -> list[dict]:
        """JSON schemas of the tools (Qwen3 / OpenAI function format)."""
        out = []
        for t in self.tools:
            if t.answer:
                continue
            props = {
                a.name: {"type": "string", "enum": list(a.phrases), "description": a.description}
                for a in t.args
            }
            req = [a.name for a in t.args if not a.optional]
            params = {"type": "object", "properties": props, "required": req}
            out.append(
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": params,
                    },
                }
            )
        return out

    def render(self, obs: Mapping[str, np.ndarray]) -> str:
        """A Qwen3 chat prompt for one (unbatched) observation."""
        tools = "\n".join(json.dumps(s) for s in self.tool_schemas())
        ans = ""
        if self._answer is not None:
            phrases = " | ".join(self._answer.args[0].phrases) if self._answer.args else ""
            ans = f"\nWhen you are done, reply <answer>...</answer> with one of: {phrases}."
        system = (
            f"{self.system}\n\n# Tools\n\nYou may call one function per turn.\n\n"
            f"<tools>\n{tools}\n</tools>\n\nFor a function call, return a JSON object with the "
            "function name and arguments within <tool_call></tool_call> XML tags:\n"
            '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
            f"{ans}"
        )
        return (
            f"<|im_start|>system\n{system}<|im_end|>\n"
            f"<|im_start|>user\n{self.describe(obs)}<|im_end|>\n<|im_start|>assistant\n"
        )


def flat_tools(
    main_tools: tuple[Tool, ...],
    sub_tools: tuple[Tool, ...],
    *,
    delegate_type: int,
    offset: int,
    sub_type_component: int = 0,
) -> tuple[Tool, ...]:
    """Tools of a flat-mode main agent: its own tools except delegation, plus the sub-agent's
    tools on the action components from ``offset`` on (main type = ``delegate_type``)."""
    out = [t for t in main_tools if t.type_value != delegate_type]
    for t in sub_tools:
        args = tuple(
            Arg(
                a.name,
                a.component + offset,
                a.phrases,
                a.values,
                a.optional,
                a.absent,
                a.description,
            )
            for a in t.args
        )
        extra = ((offset + sub_type_component, t.type_value),)
        out.append(Tool(t.name, delegate_type, t.description, args, t.answer, extra))
    return tuple(out)
