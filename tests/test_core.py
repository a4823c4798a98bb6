"""The episode engine's contract: Gymnasium semantics, invalid actions, hallucination,
reward arithmetic and cross-process determinism."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ecomrlve.envs import ENV_IDS, make_env
from ecomrlve.envs.actions import MAX_ACTION_BYTES
from ecomrlve.envs.reward import efficiency, f1_score, graded_task, total_reward
from ecomrlve.policies.oracle import OraclePolicy

from conftest import run_episode

ROOT = Path(__file__).resolve().parents[1]

INVALID_ACTIONS = [
    ("{not json", "malformed JSON"),
    ("[1, 2, 3]", "must be a JSON object"),
    (42, "must be a JSON object"),
    ({}, "empty action"),
    ({"tool_calls": [{"name": "launch_rockets", "args": {}}]}, "unknown tool 'launch_rockets'"),
    ({"tool_calls": [{"name": "order_list", "args": {}}]}, "not available in this environment"),
    ({"tool_calls": [{"name": "cart_add", "args": {"product_id": "p0000001", "quantity": "many"}}]},
     "cart_add.args.quantity"),
    ({"tool_calls": [{"name": "cart_add", "args": {"product_id": "p0000001", "colour": "red"}}]},
     "cart_add.args.colour"),
    ({"answer": {"done": True, "confidence": 0.9}}, "answer.confidence"),
    ({"answer": {"recommended_product_ids": ["p0000001"]}}, "not an answer field of E_CART"),
    ({"assistant_message": "x" * (1024 * 1024)}, "too large"),
    ("x" * (MAX_ACTION_BYTES + 1), "too large"),
    ({"assistant_message": "hi", "extra": 1}, "extra"),
]


@pytest.mark.parametrize("action,reason", INVALID_ACTIONS)
def test_invalid_action_ends_episode_with_minus_one(catalog, action, reason):
    env = make_env("E_CART", catalog)
    env.reset(seed=3, options={"difficulty": 4})
    obs, reward, terminated, truncated, info = env.step(action)
    assert (reward, terminated, truncated) == (-1.0, True, False)
    assert info["reward"]["r_total"] == -1.0
    assert info["reward"]["termination_reason"].startswith("invalid_action")
    assert reason in info["reward"]["termination_reason"]
    # a following reset works and the episode is fresh
    obs, info = env.reset(seed=4, options={"difficulty": 4})
    assert obs["turn"] == 0 and "reward" not in info and len(obs["messages"]) == 2


def test_step_after_end_raises_and_reset_recovers(catalog):
    env = make_env("E_CART", catalog)
    env.reset(seed=0)
    env.step("{bad")
    with pytest.raises(RuntimeError, match="reset"):
        env.step({"answer": {"done": True}})


def test_observation_states_the_budgets_as_data(catalog):
    env = make_env("E_CART", catalog)
    obs, _ = env.reset(seed=1, options={"difficulty": 6})
    assert (obs["turn_budget"], obs["tool_budget"], obs["turns_left"]) == (7, 4, 7)
    assert "at most 4 tool calls per turn and 7 turns." in obs["messages"][0]["content"]
    obs, *_ = env.step({"tool_calls": [{"name": "cart_view", "args": {}}]})
    assert (obs["turn"], obs["turns_left"]) == (1, 6)
    journey = make_env("E_JOURNEY", catalog)
    obs, _ = journey.reset(seed=1, options={"difficulty": 4})  # L = 3 requests of T_max = 6 turns
    assert (obs["turn_budget"], obs["tool_budget"], obs["turns_left"]) == (18, 3, 18)
    assert obs["messages"][0]["content"].endswith("at most 3 tool calls per turn and 18 turns.")
    assert journey.active.env.axes.T_max == 6


def test_dotted_tool_alias_is_accepted(catalog):
    env = make_env("E_CART", catalog)
    env.reset(seed=1)
    obs, reward, terminated, truncated, info = env.step({"tool_calls": [{"name": "cart.view", "args": {}}]})
    assert not terminated and obs["messages"][-1]["name"] == "cart_view"


def test_truncation_at_turn_budget_is_not_termination(catalog):
    env = make_env("E_CART", catalog)
    obs, info = env.reset(seed=2, options={"difficulty": 0})
    t_max = env.axes.T_max
    for turn in range(t_max):
        obs, reward, terminated, truncated, info = env.step({"tool_calls": [{"name": "cart_view", "args": {}}]})
        if turn < t_max - 1:
            assert (terminated, truncated, reward) == (False, False, 0.0)
    assert (terminated, truncated) == (False, True)
    assert info["reward"]["termination_reason"] == "turn_budget_exhausted"
    assert info["reward"]["is_correct"] is False
    assert info["turn"] == t_max


def test_info_always_carries_episode_identity(catalog):
    env = make_env("E_CART", catalog)
    obs, info = env.reset(seed=11, options={"difficulty": 5})
    assert info == {"env_id": "E_CART", "difficulty": 5, "seed": 11, "turn": 0}
    assert obs["env_id"] == "E_CART" and obs["turn"] == 0
    assert [m["role"] for m in obs["messages"]] == ["system", "user"]
    assert {t["function"]["name"] for t in obs["tools"]} == set(env.tools)


def test_writing_a_never_shown_id_is_hallucination(catalog):
    env = make_env("E_CART", catalog)
    env.reset(seed=5, options={"difficulty": 0})
    target = env.goal.items[0]
    variants = env.world.variants_of(target.product_id)
    action = {
        "tool_calls": [{"name": "cart_add", "args": {
            "product_id": target.product_id,
            **({"variant_id": target.variant_id or variants[0].variant_id} if variants else {}),
            "quantity": target.quantity,
        }}],
        "answer": {"done": True},
    }
    obs, reward, terminated, truncated, info = env.step(action)
    assert info["reward"]["r_hall"] < 0  # the agent never saw these ids
    assert terminated


def test_reward_arithmetic():
    # (T_eff, T_min, T_max): 1 up to the minimal plan, then linear down to -1 at T_max
    assert efficiency(1, 2, 4) == 1.0
    assert efficiency(2, 2, 4) == 1.0
    assert efficiency(3, 2, 4) == 0.0
    assert efficiency(4, 2, 4) == -1.0
    assert efficiency(3, 1, 5) == 0.0
    assert efficiency(9, 3, 4) == -1.0
    assert graded_task(1.0, True) == 1.0
    assert graded_task(-1.0, True) == pytest.approx(0.8)
    assert graded_task(1.0, False) == 0.5
    assert graded_task(-1.0, False) == -1.0
    assert graded_task(0.0, False) == -0.25
    assert f1_score(3, 3, 3) == 1
    assert f1_score(0, 0, 0) == 1
    assert f1_score(1, 2, 4) == pytest.approx(1 / 3)
    assert total_reward(1.0, 1.0, 0.0) == 0.9
    assert total_reward(1.0, 1.0, 1.0) == 1.0
    assert total_reward(-1.0, -1.0, -1.0) == -1.0


def test_oracle_cart_is_always_correct(catalog):
    env = make_env("E_CART", catalog)
    oracle = OraclePolicy(env)
    failures = []
    for d in (0, 2, 4, 6, 8, 10, 12):
        for seed in range(20):
            obs, info = run_episode(env, oracle, seed, d)
            if not info["reward"]["is_correct"]:
                failures.append((d, seed, info["reward"]))
    assert failures == []


DETERMINISM_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    sys.path.insert(0, {root!r})
    from ecomrlve.catalog_service import Catalog
    from ecomrlve.envs import make_env, ENV_IDS
    from ecomrlve.envs.registry import env_class
    from ecomrlve.policies.oracle import OraclePolicy
    catalog = Catalog.synthetic(n_products=5000, seed=1)
    digests = {{}}
    for env_id in {env_ids!r}:
        env = make_env(env_id, catalog)
        policy = OraclePolicy(env)
        h = hashlib.sha256()
        for seed in range(3):
            for d in (1, 7, 12):
                obs, info = env.reset(seed=seed, options={{"difficulty": d}})
                policy.reset()
                done = False
                while not done:
                    obs, r, term, trunc, info = env.step(policy.act(obs))
                    done = term or trunc
                h.update(env.transcript().encode())
        digests[env_id] = h.hexdigest()
    print(json.dumps(digests))
    """
)


def _available_envs() -> list[str]:
    out = []
    for env_id in ENV_IDS:
        try:
            from ecomrlve.envs.registry import env_class

            env_class(env_id)
            from ecomrlve.envs.registry import resolve, spec_for

            resolve(spec_for(env_id).planner)
            out.append(env_id)
        except ImportError:
            continue
    return out


def test_same_episode_is_byte_identical_across_processes_and_hash_seeds(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(DETERMINISM_SCRIPT.format(root=str(ROOT), env_ids=_available_envs()))
    outputs = []
    for hash_seed in ("1", "98765"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        outputs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1]
    assert "E_CART" in outputs[0]


def test_transcript_is_a_pure_function_of_the_episode(catalog):
    env_a, env_b = make_env("E_CART", catalog), make_env("E_CART", catalog)
    digests = []
    for env in (env_a, env_b):
        run_episode(env, OraclePolicy(env), seed=9, difficulty=9)
        digests.append(hashlib.sha256(env.transcript().encode()).hexdigest())
    assert digests[0] == digests[1]
