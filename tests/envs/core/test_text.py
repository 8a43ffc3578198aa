import numpy as np

from envs.core.text import Arg, TextFace, Tool, flat_tools

NVEC = np.array([4, 3, 2, 5])
TOOLS = (
    Tool("look", 0, "look up", (Arg("what", 1, ("a", "b", "c")), Arg("k", 2, ("kw",), (1,), True))),
    Tool("think", 1, "think"),
    Tool("answer", 2, "answer", (Arg("answer", 3, ("v", "w", "x", "y", "z")),), answer=True),
)
FACE = TextFace(TOOLS, NVEC, lambda obs: "hello", "You are a test agent.")


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
    face = TextFace(tools, np.array([4, 3, 2, 5, 3, 2]), lambda o: "", "flat")
    for a in ([0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0], [2, 0, 0, 3, 0, 0]):
        out, ok, _ = face.parse(face.to_text(np.array(a)))
        assert ok and out.tolist() == a
