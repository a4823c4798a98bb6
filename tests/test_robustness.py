"""No input escapes `reset` or `step`: fuzzed actions (random JSON, 1,100-deep nesting,
4,301-digit ints, 1e308/inf/nan, unicode, long strings, wrong types) end the episode with
r_total = -1 and a named reason or are executed; the LLM codec's parser is fuzzed the same
way; axis overrides are bounded; an exception in env code is caught by `step`; the
in-process trainer survives an env that raises."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecomrlve.envs import ENV_IDS, make_env
from ecomrlve.envs.adversarial import (COMMA_GROUPS, DEEP, HUGE_DIGITS, Fuzzer, _deep_dict, _deep_list, fuzz_episodes,
                              fuzz_reset)
from ecomrlve.policies import HeuristicPolicy
from ecomrlve.policies.codec import parse_reply

DEFAULT_FUZZ = 5_000
SLOW_FUZZ = 95_000  # with the default run: 100,000


def _assert_clean(rep, n):
    summary = rep.summary()
    print("fuzz:", json.dumps({k: v for k, v in summary.items() if k != "slowest"}),
          "slowest:", summary["slowest"][:1])
    assert rep.actions == n
    assert rep.escapes == [], rep.escapes[:3]
    assert rep.violations == [], rep.violations[:3]
    assert rep.policy_errors == {}  # the heuristic reads fuzzed histories (error results included) without raising
    return summary


def test_fuzzed_actions_never_escape_step(catalog):
    rep = fuzz_episodes(catalog, DEFAULT_FUZZ, seed=1, p_fuzz=0.7, well_behaved=lambda env: HeuristicPolicy())
    summary = _assert_clean(rep, DEFAULT_FUZZ)
    # every env was reached and episodes both ended invalid and went on to an answer
    assert summary["reasons"]["invalid_action"] > 1_000 and summary["reasons"]["answered"] > 50


@pytest.mark.slow
def test_fuzzed_actions_never_escape_step_at_scale(catalog):
    rep = fuzz_episodes(catalog, SLOW_FUZZ, seed=2, p_fuzz=0.7, well_behaved=lambda env: HeuristicPolicy())
    _assert_clean(rep, SLOW_FUZZ)  # step times are printed, not asserted (benchmarks/ measures speed)


def test_heuristic_skips_error_results_and_an_empty_order_list():
    """A tool error (``{"error": ...}``) is not a result: an order_get error must not be read
    as the order, and with no orders to look at the heuristic says so instead of calling
    order_get without an id."""
    from ecomrlve.policies.heuristic import Transcript, status_strategy

    def obs(*tool_results):
        msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "Where is order W1234567?"}]
        msgs += [{"role": "tool", "name": name, "content": json.dumps(r)} for name, r in tool_results]
        return {"messages": msgs, "tool_budget": 3, "turn_budget": 8, "turn": 1, "turns_left": 7}

    listed = ("order_list", {"orders": [{"order_id": "W1234567", "items": ["Lamp"]}]})
    t = Transcript(obs(listed, ("order_get", {"error": "no order with id 'W1'"})))
    assert t.results("order_get") == []
    assert status_strategy(t) == {"tool_calls": [{"name": "order_get", "args": {"order_id": "W1234567"}}]}
    got = ("order_get", {"order_id": "W1234567", "status": "shipped"})
    assert status_strategy(Transcript(obs(listed, got))) == {
        "answer": {"selected_order_id": "W1234567", "order_status": "shipped"}}
    empty = Transcript(obs(("order_list", {"orders": []})))
    empty.messages[1]["content"] = "Where is my order?"  # no id, and already asked which order:
    empty.messages.insert(2, {"role": "assistant", "tool_calls": [
        {"function": {"name": "ask_user", "arguments": "{}"}}]})
    assert status_strategy(empty) == {"assistant_message": "I can't find any order on your account."}


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_named_pathological_actions(catalog, env_id):
    env = make_env(env_id, catalog)
    cases = {
        "deep text": "[" * DEEP + "]" * DEEP,
        "deep object": '{"a": ' * DEEP + "1" + "}" * DEEP,
        "deep python": {"assistant_message": _deep_list()},
        "deep args": {"tool_calls": [{"name": env.tools[0], "args": {"x": _deep_dict()}}]},
        "huge int text": '{"tool_calls": [{"name": "order_list", "args": {"days": ' + "1" * HUGE_DIGITS + "}}]}",
        "huge int python": {"answer": {"policy_answer": 10 ** (HUGE_DIGITS - 1)}},
        "1e999 text": '{"answer": {"policy_answer": 1e999}}',
        "nan text": '{"answer": {"policy_answer": NaN}}',
        "inf python": {"answer": {"policy_answer": float("inf")}},
        "bytes": b"\xff\xfe{",
        "set": {"tool_calls": [{"name": "cart_view", "args": {"x": {1, 2}}}]},
        "long text": "x" * 70_000,
    }
    for name, action in cases.items():
        env.reset(seed=0, options={"difficulty": 3})
        _, reward, term, trunc, info = env.step(action)
        reason = info["reward"]["termination_reason"]
        assert reward == -1.0 and term and reason.startswith("invalid_action: ") and len(reason) > 17, (name, reason)


def test_extreme_numbers_that_are_valid_json_are_scored_not_raised(catalog):
    env = make_env("E_POLICY", catalog)
    for value in (1e308, -1e308, "$1e308", "$" + "9" * 400, 5e-324):
        env.reset(seed=0, options={"difficulty": 0})
        _, reward, term, _, info = env.step({"answer": {"policy_answer": value}})
        assert term and info["reward"]["termination_reason"] == "answered" and not info["reward"]["is_correct"]
    env = make_env("E_PD", catalog)
    env.reset(seed=0, options={"difficulty": 0})
    pid = catalog.product_id(0)
    env.seen_ids.add(pid)
    msg = f"{pid} costs $" + "1," * COMMA_GROUPS + "000. " + f"{pid} costs ${'9' * HUGE_DIGITS}."
    _, reward, term, trunc, info = env.step({"assistant_message": msg})
    assert not term and env.claims_checked == 0  # unreadable prices are not scored


def test_codec_parser_survives_fuzzed_replies():
    fz = Fuzzer(np.random.default_rng(5))
    ids = ["p0000001", "W1234567", "OL1"]
    for _ in range(DEFAULT_FUZZ):
        text = fz.text(ids)
        for lenient in (False, True):
            out = parse_reply(text, lenient=lenient)
            assert isinstance(out, (dict, str))
    for text in ("[" * DEEP, '{"a": ' * DEEP, "<tool_call>" + "[" * DEEP + "</tool_call>", "```json\n" + "[" * DEEP
                 + "\n```", '{"x": ' + "1" * HUGE_DIGITS + "}", '{"tool_calls": [{"function": {"name": "a", '
                 '"arguments": "' + "[" * DEEP + '"}}]}'):
        assert parse_reply(text, lenient=True) is not None


def test_codec_output_goes_through_step(catalog):
    fz = Fuzzer(np.random.default_rng(6))
    env = make_env("E_CART", catalog)
    for _ in range(300):
        env.reset(seed=0, options={"difficulty": 3})
        _, reward, term, trunc, info = env.step(parse_reply(fz.text(sorted(env.seen_ids)), lenient=True))
        if term:
            assert not info["reward"]["termination_reason"].startswith("env_error")


@pytest.mark.parametrize("axes,axis", [
    ({"cart_items": 500}, "cart_items"), ({"H": 1_000_000}, "H"), ({"k": 11}, "k"), ({"T_max": 10**6}, "T_max"),
    ({"k": True}, "k"), ({"m": "3"}, "m"), ({"p_noise": float("nan")}, "p_noise"), ({"p_oos": 1.5}, "p_oos"),
    ({"B_tool": 0}, "B_tool"), ({"nope": 1}, "nope"),
])
def test_axis_overrides_are_bounded(catalog, axes, axis):
    env = make_env("E_CART", catalog)
    with pytest.raises(ValueError, match=axis):
        env.reset(seed=0, options={"difficulty": 3, "axes": axes})


def test_axis_bounds_are_reachable(catalog):
    """Every env resets at every axis' documented maximum."""
    from ecomrlve.envs.difficulty import Axes

    top = {name: f.metadata and next(m.le for m in f.metadata if hasattr(m, "le") and m.le is not None)
           for name, f in Axes.model_fields.items() if any(getattr(m, "le", None) for m in f.metadata)}
    assert top["cart_items"] == 5 and top["H"] == 16 and top["k"] == 10 and top["T_max"] == 32
    for env_id in ENV_IDS:
        env = make_env(env_id, catalog)
        env.reset(seed=0, options={"difficulty": 12, "axes": {k: v for k, v in top.items()
                                                              if isinstance(v, int) and not isinstance(v, bool)}})


def test_fuzzed_resets_raise_value_errors_naming_the_axis(catalog):
    out = fuzz_reset(catalog, 200, seed=3)
    assert out["escapes"] == [] and out["unnamed"] == []
    assert out["ok"] > 0 and out["value_errors"] > 100 and out["ok"] + out["value_errors"] == 200


class _Boom(RuntimeError):
    pass


def test_env_error_ends_the_episode_and_is_logged(catalog, caplog):
    env = make_env("E_CART", catalog)
    env.reset(seed=0, options={"difficulty": 0})

    def broken(*args, **kwargs):
        raise _Boom("kaput")

    env._react = broken
    _, reward, term, trunc, info = env.step({"assistant_message": "hello"})
    assert reward == -1.0 and term and not trunc
    assert info["reward"]["termination_reason"] == "env_error: _Boom: kaput"
    assert "env error" in caplog.text and "_Boom" in caplog.text
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step({"assistant_message": "hello"})


class _ScriptedPolicy:
    """`act_batch` / `pop_episode` like LLMPolicy, with the heuristic's actions."""

    def __init__(self):
        self.episodes: dict = {}
        self.heuristics: dict = {}

    def act_batch(self, observations, keys):
        out = []
        for obs, key in zip(observations, keys):
            pol = self.heuristics.setdefault(key, HeuristicPolicy())
            out.append(pol.act(obs))
        return out

    def pop_episode(self, key):
        self.heuristics.pop(key, None)
        return {"turns": []}


def test_trainer_rollouts_survive_an_env_that_raises(catalog, monkeypatch):
    import ecomrlve.envs

    from ecomrlve.actors.rollout import rollout_groups
    from ecomrlve.actors.train import trainable

    real = ecomrlve.envs.make_env

    class RaisingEnv:
        """Raises out of `step` (E_PD) or `reset` (E_SUB), as if ShopEnv had no guard."""

        def __init__(self, env):
            self.env = env

        def __getattr__(self, name):
            return getattr(self.env, name)

        def reset(self, *args, **kwargs):
            if self.env.env_id == "E_SUB":
                raise _Boom("reset bug")
            return self.env.reset(*args, **kwargs)

        def step(self, action):
            raise _Boom("env bug")

    def make(env_id, cat, difficulty=0):
        env = real(env_id, cat, difficulty)
        return RaisingEnv(env) if env_id in ("E_PD", "E_SUB") else env

    monkeypatch.setattr(ecomrlve.envs, "make_env", make)
    tasks = [{"task_id": i, "env_id": e, "difficulty": 0, "seed": 0} for i, e in enumerate(("E_PD", "E_CART", "E_SUB"))]
    results = rollout_groups(_ScriptedPolicy(), catalog, tasks, group_size=2)
    assert [(r.task["env_id"], r.is_error) for r in results] == [
        ("E_PD", True), ("E_PD", True), ("E_CART", False), ("E_CART", False), ("E_SUB", True), ("E_SUB", True)]
    assert results[0].reward["termination_reason"] == "error: _Boom: env bug"
    assert results[4].reward["termination_reason"] == "error: _Boom: reset bug"
    assert [r.task["env_id"] for r in trainable(results)] == ["E_CART", "E_CART"]
    assert all(r.reward["termination_reason"] == "answered" for r in trainable(results))


def test_bounded_json_reader():
    from ecomrlve.envs.actions import MAX_DEPTH, InvalidAction, check_shape, json_depth, loads_bounded

    assert json_depth('{"a": [1, "[[[[", {"b": "]]"}]}') == 3 and json_depth("[" * DEEP) == DEEP
    assert loads_bounded('{"a": [1, -2.5, "[[[[", 999999999999999999]}') == {"a": [1, -2.5, "[[[[", 10**18 - 1]}
    assert loads_bounded('{"a": 1} and then prose', leading=True) == {"a": 1}
    for text, reason in (("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nested 33 levels"),
                         ("1" * 19, "19 digits"), ("1e400", "out of range"), ("-Infinity", "not a valid JSON number"),
                         ("{oops", "malformed JSON"), (b"\xff", "malformed JSON"), ("x" * 70_000, "too large")):
        with pytest.raises(InvalidAction, match=reason):
            loads_bounded(text)
    for obj, reason in (({"a": 10**18}, "action.a: integer out of range"), ({"a": [float("nan")]}, "action.a.0"),
                        ({"a": {1: 2}}, "keys must be strings"), ({"a": (1,)}, "tuple is not a JSON type"),
                        (_deep_list(40), "nested more than 32")):
        with pytest.raises(InvalidAction, match=reason):
            check_shape(obj)
