"""Probing order ids does not pay: the shopper is no yes/no oracle over ids it never had.

`ConfirmEachIdPolicy` is `HeuristicPolicy` plus id probing ("Is it order W...?" for each
listed order). The honest baseline is therefore the heuristic itself: the same agent
without the probing, which asks plainly "Which order do you mean?" when the shopper named
none, so any gain would come from the probing alone (the oracle reads the hidden goal and
beats both by construction, which would prove nothing). Must hold in
E_STATUS and E_RETURN at d in {0, 3, 6, 9, 12}: the prober's success and mean r_total are
at most the heuristic's.
"""

from __future__ import annotations

import pytest

from ecomrlve.envs import make_env
from ecomrlve.envs.orders import known_ids
from ecomrlve.policies import HeuristicPolicy
from ecomrlve.policies.probing import ConfirmEachIdPolicy

from conftest import run_episode

DIFFICULTIES = (0, 3, 6, 9, 12)


def scores(env, policy, seeds, d) -> tuple[float, float]:
    rewards = [run_episode(env, policy, seed, d)[1]["reward"] for seed in seeds]
    return (sum(r["is_correct"] for r in rewards) / len(rewards),
            sum(r["r_total"] for r in rewards) / len(rewards))


def check(catalog, seeds) -> None:
    for env_id in ("E_STATUS", "E_RETURN"):
        env = make_env(env_id, catalog)
        for d in DIFFICULTIES:
            honest = scores(env, HeuristicPolicy(), seeds, d)
            probing = scores(env, ConfirmEachIdPolicy(), seeds, d)
            assert probing[0] <= honest[0] and probing[1] <= honest[1], (env_id, d, probing, honest)


def test_confirming_each_id_does_not_beat_the_honest_heuristic(catalog):
    check(catalog, range(12))


@pytest.mark.slow
def test_confirming_each_id_does_not_beat_the_honest_heuristic_over_40_seeds(catalog):
    check(catalog, range(40))


def test_the_prober_learns_nothing_from_an_id_question(catalog):
    """Described by item or date, the target order's id and a wrong id get the same reply."""
    env = make_env("E_STATUS", catalog)
    for seed in range(10):
        env.reset(seed=seed, options={"difficulty": 8, "axes": {"p_ref": 1.0, "p_missing": 0.0}})
        if len(env.world.orders) < 2 or known_ids(env.goal.order_ref):
            continue
        replies = []
        for order in env.world.orders:
            env.reset(seed=seed, options={"difficulty": 8, "axes": {"p_ref": 1.0, "p_missing": 0.0}})
            env.step({"assistant_message": f"Is it order {order.order_id}?"})
            replies.append(env.messages[-1]["content"])
        assert len(set(replies)) == 1, replies
