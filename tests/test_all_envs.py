"""Contracts every one of the eight built-in environments keeps."""

from __future__ import annotations

import re

import pytest

from ecomrlve.envs import C1, C2, C4, C8, ENV_IDS, make_env, resolve_envs
from ecomrlve.policies import HeuristicPolicy, OraclePolicy

from conftest import run_episode

DIFFICULTIES = (0, 2, 4, 6, 8, 10, 12)
PLACEHOLDER = re.compile(r"\{[a-z_0-9]*\}")


def test_collections():
    assert C1 == ("E_CART",)
    assert C2 == ("E_CART", "E_SUB")
    assert C4 == ("E_CART", "E_SUB", "E_PD", "E_RETURN")
    assert set(C8) == set(ENV_IDS) and len(C8) == 8
    assert resolve_envs("C2") == C2
    assert resolve_envs("C1,E_PD,E_CART") == ("E_CART", "E_PD")
    with pytest.raises(ValueError, match="E_NOPE"):
        resolve_envs("C1,E_NOPE")


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_oracle_solves_every_episode(catalog, env_id):
    env = make_env(env_id, catalog)
    oracle = OraclePolicy(env)
    failures = []
    for d in DIFFICULTIES:
        for seed in range(20):
            obs, info = run_episode(env, oracle, seed, d)
            if not info["reward"]["is_correct"]:
                failures.append((d, seed, info["reward"]["termination_reason"], info["reward"]["r_task"]))
    assert failures == []


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_no_placeholder_reaches_a_message(catalog, env_id):
    env = make_env(env_id, catalog)
    for policy in (HeuristicPolicy(), OraclePolicy(env)):
        for d in range(0, 13):
            for seed in range(6):
                obs, info = run_episode(env, policy, seed, d)
                for m in obs["messages"]:
                    if m["role"] in ("user", "system"):
                        assert not PLACEHOLDER.search(m["content"]), (env_id, d, seed, m["content"])
                for u in env.utterances:
                    assert "{" not in u.clean_text and "}" not in u.clean_text, (env_id, d, seed, u.clean_text)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_invalid_actions_in_every_env(catalog, env_id):
    env = make_env(env_id, catalog)
    for action in ("{oops", {"tool_calls": [{"name": "no_such_tool"}]}, {"answer": {"bogus": 1}}, ["x"]):
        env.reset(seed=1, options={"difficulty": 3})
        obs, reward, terminated, truncated, info = env.step(action)
        assert reward == -1.0 and terminated and not truncated
        assert info["reward"]["termination_reason"].startswith("invalid_action: ")


# the heuristic's successes out of seeds 0..9 at d = 0, 6, 12 on a 3,000-product catalog
HEURISTIC_SUCCESSES = {
    "E_PD": (7, 1, 0), "E_SUB": (3, 0, 0), "E_CART": (9, 0, 0), "E_RETURN": (10, 1, 0),
    "E_STATUS": (10, 9, 7), "E_POLICY": (2, 1, 3), "E_BUNDLE": (10, 0, 0), "E_JOURNEY": (6, 0, 0),
}


@pytest.fixture(scope="module")
def small_catalog():
    from ecomrlve.catalog_service import Catalog

    return Catalog.synthetic(n_products=3_000, seed=0)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_heuristic_success_is_pinned(small_catalog, env_id):
    """The heuristic reads only the observation (structured budgets, the transcript, JSON
    tool results); its success per difficulty on fixed seeds is exact."""
    env = make_env(env_id, small_catalog)
    successes = tuple(sum(run_episode(env, HeuristicPolicy(), seed, d)[1]["reward"]["is_correct"] for seed in range(10))
                      for d in (0, 6, 12))
    assert successes == HEURISTIC_SUCCESSES[env_id]
