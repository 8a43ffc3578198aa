"""The text face: Qwen3 chat prompts and a parser, built from a declarative tool description.

An env describes its actions once, as :class:`Tool` records (one per value of the action-type
component) whose :class:`Arg` fields map phrases to component values. :class:`TextFace` then gives

* ``messages(obs) -> (messages, tools)``: the chat messages (system, user) and the tools' JSON
  schemas (OpenAI / Qwen3 function format), so a tokenizer's own chat template builds the prompt:
  ``tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True)``;
* ``render(obs) -> str``: the same prompt as one string in Qwen3's layout (system message with
  the tools, user message, open assistant turn); ``render_batch(obs_batch) -> list[str]``;
* ``to_text(action) -> str``: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` or
  ``<answer>...</answer>``;
* ``parse(text) -> (action, ok, reason)``: never raises; on failure returns the env's
  *malformed* action (action type = the reserved invalid value, always masked) with ``ok=False``
  and a readable ``reason``.

**Pure.** A prompt is a function of the observation alone: ``describe(obs, instance)`` gets the
task instance rebuilt from ``obs["query_id"]`` (instances are pure functions of the query id;
cached), never the env's episode state. So any row of any batch renders through any face of an
env built with the same keyword arguments.

**Round trip.** Every in-space action except the reserved malformed ones has a text form and
``parse(to_text(a)) == (canonical(a), True, "")``; ``canonical(a)`` is ``a`` with the components
its kind ignores set to 0 (for canonical actions that is ``(a, True, "")``).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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
    listed: bool = True
    """whether the prompt lists the tool; an unlisted tool still has a text form (for action
    kinds that exist in the space but are never allowed, e.g. delegation in flat mode)"""


class TextFace:
    """Pure text functions over an env's MultiDiscrete actions (see module docstring).

    Args:
        tools: one :class:`Tool` per action kind (action-type value, plus ``extra`` values).
        nvec: the MultiDiscrete component sizes.
        describe: ``describe(obs, instance) -> str``, the user message for one unbatched
            observation; ``instance`` is ``instance(obs["query_id"])`` (None without
            ``instance``). It must read nothing else (no env state).
        system: the opening of the system message (the role and the task).
        role: the role whose observations the face renders (``"main"`` or a specialist role);
            named in errors.
        space: the role's observation space (a ``gym.spaces.Dict``); observations are checked
            against it before rendering (may be set after construction).
        instance: ``instance(query_id: int) -> task instance``, a pure function (cached).
        reserved: further reserved (malformed) actions besides ``type == invalid_type``: each a
            tuple of ``(component, value)`` pairs that all hold (e.g. a flat-mode tool call whose
            tool type is the sub-agent's reserved value).
        type_component: index of the action-type component (default 0).
        invalid_type: the reserved action-type value that means "malformed" (always masked).
        cache_size: instances kept in the LRU cache.
    """

    def __init__(
        self,
        tools: tuple[Tool, ...],
        nvec: np.ndarray,
        describe: Callable[[Mapping[str, np.ndarray], Any], str],
        system: str,
        *,
        role: str = "main",
        space: Any = None,
        instance: Callable[[int], Any] | None = None,
        reserved: tuple[tuple[tuple[int, int], ...], ...] = (),
        type_component: int = 0,
        invalid_type: int | None = None,
        cache_size: int = 256,
    ) -> None:
        self.tools = tools
        self.nvec = np.asarray(nvec, dtype=np.int64)
        self.describe = describe
        self.system = system
        self.role = role
        self.space = space
        self.type_component = type_component
        self.invalid_type = (
            int(self.nvec[type_component] - 1) if invalid_type is None else invalid_type
        )
        self.reserved = (((type_component, self.invalid_type),), *reserved)
        self._instance = None if instance is None else functools.lru_cache(cache_size)(instance)
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

    def is_reserved(self, action: np.ndarray) -> bool:
        """Whether ``action`` is a reserved (malformed) action: it has no text form."""
        a = np.asarray(action, dtype=np.int64)
        return any(all(a[c] == v for c, v in pattern) for pattern in self.reserved)

    def kind(self, action: np.ndarray) -> Tool | None:
        """The :class:`Tool` an action is an instance of (None for a reserved action)."""
        a = np.asarray(action, dtype=np.int64)
        if self.is_reserved(a):
            return None
        best = None
        for (tv, extra), tool in self._by_type.items():
            if tv == a[self.type_component] and all(a[c] == v for c, v in extra):
                if best is None or len(extra) > len(best.extra):
                    best = tool
        return best

    def canonical(self, action: np.ndarray) -> np.ndarray:
        """The action the text of ``action`` stands for: ``parse(to_text(a))`` returns it.

        The action type, the ``extra`` components of its kind and its arguments are kept;
        every component the kind ignores is set to 0. A reserved action's canonical form is
        :meth:`malformed`. ``canonical(canonical(a)) == canonical(a)``.
        """
        a = np.asarray(action, dtype=np.int64)
        tool = self.kind(a)
        if tool is None:
            return self.malformed()
        out = np.zeros_like(a)
        out[self.type_component] = a[self.type_component]
        for c, v in tool.extra:
            out[c] = v
        for arg in tool.args:
            out[arg.component] = a[arg.component]
        return out

    def to_text(self, action: np.ndarray) -> str:
        """The text of ``action`` (a tool call or an answer).

        Raises ``ValueError`` for an out-of-space action and for a reserved (malformed) one.
        """
        a = np.asarray(action)
        if a.shape != self.nvec.shape or a.dtype.kind not in "iu" or (a < 0).any():
            raise ValueError(
                f"{self.role} action {a.tolist()} is not in MultiDiscrete({self.nvec.tolist()})"
            )
        a = a.astype(np.int64)
        if (a >= self.nvec).any():
            raise ValueError(
                f"{self.role} action {a.tolist()} is not in MultiDiscrete({self.nvec.tolist()})"
            )
        tool = self.kind(a)
        if tool is None:
            if self.is_reserved(a):
                raise ValueError(
                    f"{self.role} action {a.tolist()} is the reserved malformed action: it has no "
                    "text form (parse returns it for bad text)"
                )
            raise ValueError(f"{self.role} action type {int(a[self.type_component])} has no tool")
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
        """Parse model output into ``(action, ok, reason)``; never raises.

        Bad text gives ``(malformed(), False, reason)``; good text ``(action, True, "")``.
        """
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
                known = sorted(t.name for t in self.tools if t.listed and not t.answer)
                return bad, False, f"unknown tool {obj['name']!r}; known: {known}"
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
        """JSON schemas of the listed tools (OpenAI / Qwen3 function format)."""
        out = []
        for t in self.tools:
            if t.answer or not t.listed:
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

    def system_prompt(self) -> str:
        """The system message's content (the tools themselves come with :meth:`messages`)."""
        text = f"{self.system}\n\nCall exactly one function per turn."
        if self._answer is not None:
            if self._answer.args:
                phrases = " | ".join(self._answer.args[0].phrases)
                text += f"\nWhen you are done, reply <answer>...</answer> with one of: {phrases}."
            else:
                text += "\nWhen you are done, reply <answer></answer>."
        return text

    def check(self, obs: object) -> None:
        """Raise ``ValueError`` naming the role, the key and what is allowed if this face cannot
        render ``obs`` (one unbatched observation of the role's observation space)."""
        who = f"text face of role {self.role!r} cannot render this observation"
        if not isinstance(obs, Mapping):
            raise ValueError(f"{who}: expected a dict of arrays, got {type(obs).__name__}")
        if self.space is None:
            return
        spaces = self.space.spaces
        for key, sp in spaces.items():
            if key == "action_mask":
                continue
            if key not in obs:
                raise ValueError(
                    f"{who}: key {key!r} is missing; allowed: the keys of its observation "
                    f"space {sorted(spaces)}"
                )
            v = np.asarray(obs[key])
            if v.shape != sp.shape:
                hint = " (a batch? use render_batch)" if v.shape[1:] == sp.shape else ""
                raise ValueError(
                    f"{who}: key {key!r} has shape {v.shape}; allowed: shape {sp.shape} "
                    f"(one unbatched observation){hint}"
                )
            if key.removeprefix("tool_") in ("query_id", "instruction") and not sp.contains(
                v.astype(sp.dtype) if v.dtype.kind in "iu" else v
            ):
                raise ValueError(
                    f"{who}: key {key!r} = {v.tolist()} is outside its space; allowed: int64 "
                    f"values in [{sp.low.tolist()}, {sp.high.tolist()}]"
                )

    def instance(self, obs: Mapping[str, np.ndarray]) -> Any:
        """The task instance of ``obs`` (rebuilt from ``obs["query_id"]``; None if unused)."""
        if self._instance is None:
            return None
        return self._instance(int(np.asarray(obs["query_id"])))

    def messages(self, obs: Mapping[str, np.ndarray]) -> tuple[list[dict], list[dict]]:
        """``(messages, tools)`` for one unbatched observation: ``[{"role": "system", ...},
        {"role": "user", ...}]`` and the tools' JSON schemas, for a tokenizer's chat template
        (``apply_chat_template(messages, tools=tools, add_generation_prompt=True)``)."""
        self.check(obs)
        user = self.describe(obs, self.instance(obs))
        msgs = [
            {"role": "system", "content": self.system_prompt()},
            {"role": "user", "content": user},
        ]
        return msgs, self.tool_schemas()

    def render(self, obs: Mapping[str, np.ndarray]) -> str:
        """A Qwen3 chat prompt for one (unbatched) observation (:func:`qwen3_prompt`)."""
        return qwen3_prompt(*self.messages(obs))

    def render_batch(self, obs_batch: Mapping[str, np.ndarray]) -> list[str]:
        """:meth:`render` of each row of a batched observation (leading axis ``n``)."""
        if not isinstance(obs_batch, Mapping) or "query_id" not in obs_batch:
            raise ValueError(
                f"text face of role {self.role!r}: render_batch needs a batched observation "
                "dict with a 'query_id' key of shape (n,)"
            )
        n = len(np.asarray(obs_batch["query_id"]).reshape(-1))
        return [self.render({k: np.asarray(v)[i] for k, v in obs_batch.items()}) for i in range(n)]


def qwen3_prompt(messages: list[dict], tools: list[dict]) -> str:
    """The prompt Qwen3's chat template makes of ``messages`` (a system message first, then
    user messages) and ``tools``, with the generation prompt: ``<|im_start|>system ... # Tools
    ... <tools>{schema per line}</tools> ...<|im_end|>``, the user turns, ``<|im_start|>assistant``.
    """
    out = []
    rest = messages
    if messages and messages[0]["role"] == "system":
        system, rest = messages[0]["content"], messages[1:]
    else:
        system = None
    if tools:
        listing = "".join("\n" + json.dumps(t, ensure_ascii=False) for t in tools)
        out.append(
            "<|im_start|>system\n"
            + (f"{system}\n\n" if system is not None else "")
            + "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
            + listing
            + "\n</tools>\n\nFor each function call, return a json object with function name and "
            "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
            '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        )
    elif system is not None:
        out.append(f"<|im_start|>system\n{system}<|im_end|>\n")
    for m in rest:
        out.append(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n")
    out.append("<|im_start|>assistant\n")
    return "".join(out)


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
        out.append(Tool(t.name, delegate_type, t.description, args, t.answer, extra, t.listed))
    return tuple(out)


def flat_reserved(
    *, delegate_type: int, offset: int, sub_invalid: int, sub_type_component: int = 0
) -> tuple[tuple[tuple[int, int], ...], ...]:
    """The reserved actions a flat-mode face adds (its ``reserved`` argument): a tool call
    (main type ``delegate_type``) whose tool type is the sub-agent's reserved value."""
    return (((0, delegate_type), (offset + sub_type_component, sub_invalid)),)
