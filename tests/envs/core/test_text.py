import json

import numpy as np
import pytest

from envs.core.text import Arg, TextFace, Tool, flat_reserved, flat_tools, qwen3_prompt

NVEC = np.array([4, 3, 2, 5])
TOOLS = (
    Tool("look", 0, "look up", (Arg("what", 1, ("a", "b", "c")), Arg("k", 2, ("kw",), (1,), True))),
    Tool("think", 1, "think"),
    Tool("answer", 2, "answer", (Arg("answer", 3, ("v", "w", "x", "y", "z")),), answer=True),
)
FACE = TextFace(TOOLS, NVEC, lambda obs, inst: "hello", "You are a test agent.")


def test_round_trip_every_kind_and_value():
    for a in ([0, 2, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0], [2, 0, 0, 4]):
        a = np.array(a)
        out, ok, reason = FACE.parse(FACE.to_text(a))
        assert ok and reason == "" and (out == a).all()


def test_non_canonical_components_are_dropped():
    a = np.array([1, 2, 1, 3])  # "think" ignores components 1..3
    assert (FACE.parse(FACE.to_text(a))[0] == FACE.canonical(a)).all()


def test_parse_never_raises_and_explains():
    for text in (
        None,
        "",
        "<tool_call>{bad json</tool_call>",
        "<answer>q</answer>",
        '<tool_call>{"name": "fly", "arguments": {}}</tool_call>',
        '<tool_call>{"name": "look", "arguments": {"what": "a", "x": "1"}}</tool_call>',
        '<tool_call>{"name": "look", "arguments": {}}</tool_call>',
        "<answer>v</answer><answer>w</answer>",
        12345,
    ):
        a, ok, reason = FACE.parse(text)
        assert not ok and reason and a[0] == 3  # the reserved malformed type


def test_parse_ignores_think_blocks_case_and_spacing():
    a, ok, _ = FACE.parse("<think>maybe <answer>w</answer></think>\n<answer>  V </answer>")
    assert ok and a.tolist() == [2, 0, 0, 0]


def test_render_is_a_qwen3_chat_prompt_listing_tools():
    text = FACE.render({})
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
    assert '"name": "look"' in text and "hello" in text


def test_flat_tools_shift_components_and_match_on_sub_type():
    sub = (Tool("s", 0, "s", (Arg("q", 1, ("x", "y")),)), Tool("r", 1, "r"))
    tools = flat_tools(TOOLS, sub, delegate_type=0, offset=4)
    face = TextFace(tools, np.array([4, 3, 2, 5, 3, 2]), lambda o, i: "", "flat")
    for a in ([0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0], [2, 0, 0, 3, 0, 0]):
        out, ok, _ = face.parse(face.to_text(np.array(a)))
        assert ok and out.tolist() == a


def test_reserved_actions_have_no_text_and_canonicalize_to_malformed():
    # the invalid type (3) is reserved; a flat-mode pattern adds (type 0, component 4 = 2)
    sub = (Tool("s", 0, "s", (Arg("q", 1, ("x", "y")),)), Tool("r", 1, "r"))
    tools = flat_tools(TOOLS, sub, delegate_type=0, offset=4)
    reserved = flat_reserved(delegate_type=0, offset=4, sub_invalid=2)
    face = TextFace(tools, np.array([4, 3, 2, 5, 3, 2]), lambda o, i: "", "flat", reserved=reserved)
    for a in ([3, 0, 0, 0, 0, 0], [0, 1, 1, 1, 2, 1]):
        assert face.is_reserved(np.array(a)) and face.kind(np.array(a)) is None
        with pytest.raises(ValueError, match="reserved malformed"):
            face.to_text(np.array(a))
        assert face.canonical(np.array(a)).tolist() == face.malformed().tolist()
    assert not face.is_reserved(np.array([0, 0, 0, 0, 1, 0]))


def test_describe_gets_the_instance_rebuilt_from_the_query_id_cached():
    calls = []

    def instance(q):
        calls.append(q)
        return f"instance {q}"

    face = TextFace(TOOLS, NVEC, lambda obs, inst: inst, "sys", instance=instance)
    msgs, tools = face.messages({"query_id": np.int64(7)})
    assert msgs[1] == {"role": "user", "content": "instance 7"}
    face.render({"query_id": np.array(7)})
    assert calls == [7]  # the second render hit the cache
    assert [t["function"]["name"] for t in tools] == ["look", "think"]  # answer: not a function


def test_render_batch_renders_row_i():
    face = TextFace(TOOLS, NVEC, lambda obs, inst: f"q={inst}", "sys", instance=int)
    rows = face.render_batch({"query_id": np.array([4, 5])})
    assert [r.count("q=4") for r in rows] == [1, 0] and "q=5" in rows[1]


def test_qwen3_prompt_layout():
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    tool = {"type": "function", "function": {"name": "f", "description": "", "parameters": {}}}
    text = qwen3_prompt(msgs, [tool])
    assert text.startswith("<|im_start|>system\nS\n\n# Tools\n")
    assert "<tools>\n" + json.dumps(tool) + "\n</tools>" in text
    assert text.endswith("<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n")
    assert qwen3_prompt(msgs, []) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    )


def test_unlisted_tools_parse_but_are_not_offered():
    tools = (*TOOLS, Tool("hidden", 1, "h", listed=False, extra=((1, 2),)))
    face = TextFace(tools, NVEC, lambda o, i: "", "sys")
    assert "hidden" not in json.dumps(face.tool_schemas())
    a, ok, _ = face.parse('<tool_call>{"name": "hidden", "arguments": {}}</tool_call>')
    assert ok and a.tolist() == [1, 2, 0, 0]
