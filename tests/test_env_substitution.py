"""E_SUB: substitution for a sold-out product (envs/substitution.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ecomrlve.envs import make_env
from ecomrlve.policies import HeuristicPolicy, OraclePolicy
from ecomrlve.policies.oracle.substitution import SubstitutionPlanner

from conftest import run_episode

DIFFICULTIES = (0, 2, 4, 6, 8, 10, 12)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def env(catalog):
    return make_env("E_SUB", catalog)


def _reset(env, seed, d, **axes):
    env.reset(seed=seed, options={"difficulty": d, "axes": axes})
    return env


def _search_action(env) -> dict:
    """The oracle's filtered search (all constraints as filters) as an action."""
    return {"tool_calls": [SubstitutionPlanner(env)._search()]}


def _shown(env) -> list[str]:
    """Product ids of the last tool message's results."""
    content = json.loads(env.messages[-1]["content"])
    return [r["product_id"] for r in content.get("results", content.get("viewed_products", []))]


def _answer(env, ids):
    *_, info = env.step({"answer": {"recommended_product_ids": ids}})
    return info["reward"]


# --------------------------------------------------------------------------- acceptance

def test_oracle_solves_every_episode(env):
    oracle = OraclePolicy(env)
    failures = []
    for d in DIFFICULTIES:
        for seed in range(20):
            obs, info = run_episode(env, oracle, seed, d)
            r = info["reward"]
            if not r["is_correct"] or r["r_task"] < 0.9 or r["r_hall"] != 0:
                failures.append((d, seed, r["termination_reason"], r["r_task"], r["details"]))
    assert failures == []


def test_generated_goal_is_solvable_and_well_formed(env, catalog):
    for d in DIFFICULTIES:
        for seed in range(10):
            _reset(env, seed, d)
            goal = env.goal
            assert goal.constraints[0].kind == "category" and goal.constraints[0].value == goal.leaf
            assert 1 <= len(goal.constraints) <= env.axes.m
            assert not env.world.in_stock(goal.original_row)  # sold out by the overlay
            assert catalog.numeric("stock")[goal.original_row] > 0  # the catalog itself is untouched
            assert goal.original_id in goal.history
            assert [pid for pid, _ in env.world.visit_history] == goal.history
            ideal = env.ideal_rows()
            assert len(ideal) >= max(2, env.axes.k // 2)
            assert goal.original_row not in ideal
            for row in ideal[:5]:  # the vectorised masks agree with Constraint.holds
                assert all(c.holds(catalog, row) for c in goal.constraints)
            sims = [env.similarity_of(r) for r in ideal]
            assert sims == sorted(sims, reverse=True) and all(0 <= s <= 1 for s in sims)
            assert goal.phrase in env.utterances[0].clean_text


# --------------------------------------------------------------------------- verifier

def test_original_is_not_correct_and_scores_lower_than_a_compatible_one(env):
    for seed in range(8):
        d = 4
        results = {}
        for name in ("original", "compatible", "oracle", "oracle+original"):
            _reset(env, seed, d, p_oos=0.0, p_missing=0.0)
            env.step({"tool_calls": [{"name": "user_get_visit_history", "args": {}}]})
            env.step(_search_action(env))
            shown = _shown(env)
            ideal = [env.catalog.product_id(r) for r in env.ideal_rows()]
            best = [i for i in ideal if i in shown][: env.goal.k]
            ids = {
                "original": [env.goal.original_id],
                "compatible": best[:1],
                "oracle": best,
                "oracle+original": best + [env.goal.original_id],
            }[name]
            results[name] = _answer(env, ids)
        assert not results["original"]["is_correct"]
        assert results["original"]["details"]["original_recommended"]
        assert results["original"]["r_task"] < results["compatible"]["r_task"]
        assert results["oracle"]["is_correct"] and results["oracle"]["r_task"] == 1.0
        assert not results["oracle+original"]["is_correct"]
        assert results["oracle+original"]["r_task"] < results["oracle"]["r_task"]
        assert results["original"]["r_hall"] == 0  # the history showed it: a task error, not a hallucination


def test_incompatible_items_cost_and_are_not_correct(env, catalog):
    _reset(env, 2, 6, p_oos=0.0, p_missing=0.0)
    goal = env.goal
    env.step(_search_action(env))
    good = [catalog.product_id(r) for r in env.ideal_rows()][: goal.k]
    bad = next(int(r) for r in catalog.category_rows(goal.leaf)
               if int(r) != goal.original_row and env.broken_constraint(int(r)))
    env.seen_ids.add(catalog.product_id(bad))
    mixed = _answer(env, [good[0], catalog.product_id(bad)] + good[1:])
    assert not mixed["is_correct"] and mixed["details"]["n_incompatible"] == 1
    _reset(env, 2, 6, p_oos=0.0, p_missing=0.0)
    env.step(_search_action(env))
    clean = _answer(env, good)
    assert clean["is_correct"] and clean["r_task"] > mixed["r_task"]


def test_arbitrary_ids_score_near_minus_one(env, catalog):
    for seed in range(6):
        _reset(env, seed, 3)
        leaf = env.goal.leaf
        rng = np.random.default_rng(seed)
        others = [catalog.product_id(int(r)) for r in rng.integers(len(catalog), size=40)
                  if catalog.value("category_l3", int(r)) != leaf][:4]
        r = _answer(env, others + ["p9999999", "not-a-product"])
        assert r["r_task"] <= -0.9 and not r["is_correct"]
        assert r["r_hall"] < 0  # never shown to the agent


def test_top_pick_must_come_from_a_search(env, catalog):
    _reset(env, 5, 4, p_oos=0.0, p_missing=0.0)
    ids = [catalog.product_id(r) for r in env.ideal_rows()][: env.goal.k]
    r = _answer(env, ids)  # valid ids, but no search showed them
    assert not r["is_correct"] and not r["details"]["top_searched"]
    assert r["r_hall"] < 0


def test_no_answer_scores_minus_one(env):
    _reset(env, 1, 0, T_max=2)
    env.step({"tool_calls": [{"name": "user_get_visit_history", "args": {}}]})
    *_, truncated, info = env.step({"tool_calls": [{"name": "user_get_visit_history", "args": {}}]})
    assert truncated and info["reward"]["r_task"] == -1.0 and not info["reward"]["is_correct"]


# --------------------------------------------------------------------------- mid-episode stock-out

def test_first_search_schedules_a_stockout_that_leaves_an_alternative(env, catalog):
    hits = 0
    for seed in range(12):
        _reset(env, seed, 8, p_oos=1.0, p_missing=0.0)
        goal = env.goal
        env.step(_search_action(env))
        if goal.oos_row is None:
            continue
        hits += 1
        victim = catalog.product_id(goal.oos_row)
        assert victim in _shown(env) and env.world.in_stock(goal.oos_row)
        env.step(_search_action(env))  # next turn: sold out, gone from in-stock results
        assert not env.world.in_stock(goal.oos_row)
        assert victim not in _shown(env)
        assert any(env.is_valid(catalog.row_of(i)) for i in _shown(env))  # another one remains
        r = _answer(env, [victim] + _shown(env)[:2])
        assert not r["is_correct"] and r["details"]["n_out_of_stock"] == 1
    assert hits >= 8


# --------------------------------------------------------------------------- shopper

def test_omitted_slots_are_exactly_the_phrases_missing_from_the_opening(env):
    n_omitted = 0
    for d in range(0, 13):
        for seed in range(12):
            _reset(env, seed, d)
            sh = env.shopper
            opening = env.utterances[0].clean_text
            missing = {name for name, slot in sh.slots.items() if slot.phrase not in opening}
            assert missing == set(sh.omitted), (d, seed, opening)
            assert set(sh.slots) == {c.name for c in env.goal.constraints}
            assert "category" not in sh.omitted
            n_omitted += len(sh.omitted)
    assert n_omitted > 50


def test_ask_user_reveals_omitted_constraints(env):
    _reset(env, 0, 8, p_missing=1.0)
    sh = env.shopper
    assert len(sh.omitted) == len(env.goal.constraints) - 1
    price = next(c for c in env.goal.constraints if c.kind == "price_max")
    obs, *_ = env.step({"tool_calls": [{"name": "ask_user", "args": {"question": "What is your budget?"}}]})
    assert "price_max" not in sh.omitted
    assert sh.slots[price.name].reply in env.utterances[-1].clean_text
    assert obs["messages"][-1]["role"] == "user"


def test_shopper_reacts_to_proposals(env, catalog):
    _reset(env, 3, 8, p_oos=0.0, p_missing=1.0)
    goal, sh = env.goal, env.shopper
    env.step({"tool_calls": [{"name": "user_get_visit_history", "args": {}}]})
    env.step({"assistant_message": f"Would {goal.original_id} work for you?"})
    assert "sold out" in env.utterances[-1].clean_text
    bad = next(int(r) for r in catalog.category_rows(goal.leaf)
               if int(r) != goal.original_row and env.broken_constraint(int(r)))
    broken = env.broken_constraint(bad)
    env.seen_ids.add(catalog.product_id(bad))
    env.step({"assistant_message": f"How about {catalog.product_id(bad)}?"})
    assert env.utterances[-1].kind == "correction"
    assert sh.slots[broken.name].reply in env.utterances[-1].clean_text
    assert broken.name not in sh.omitted  # naming the broken constraint reveals it
    good = catalog.product_id(env.ideal_rows()[0])
    env.seen_ids.add(good)
    env.step({"assistant_message": f"How about {good}?"})
    assert env.utterances[-1].kind == "confirm"


def test_no_braces_in_shopper_messages(env):
    for policy in (HeuristicPolicy(), OraclePolicy(env)):
        for d in DIFFICULTIES:
            for seed in range(4):
                obs, info = run_episode(env, policy, seed, d)
                for u in env.utterances:
                    assert "{" not in u.clean_text and "}" not in u.clean_text
                for m in obs["messages"]:
                    if m["role"] == "user":
                        assert "{" not in m["content"] and "}" not in m["content"]


# --------------------------------------------------------------------------- axes

def test_axis_m_sets_the_number_of_constraints(env):
    few = [len(_reset(env, s, 6, m=2).goal.constraints) for s in range(15)]
    many = [len(_reset(env, s, 6, m=6).goal.constraints) for s in range(15)]
    assert set(few) == {2}
    assert min(many) >= 4 and sum(many) > sum(few) + 40


def test_axis_k_sets_the_list_length(env):
    for s in range(6):
        small, big = _reset(env, s, 6, k=3), None
        text_small, k_small = small.utterances[0].clean_text, small.goal.k
        big = _reset(env, s, 6, k=7)
        assert (k_small, big.goal.k) == (3, 7)
        assert "top 3 " in text_small and "top 7 " in big.utterances[0].clean_text


def test_axis_p_missing_omits_constraints(env):
    none = [len(_reset(env, s, 9, p_missing=0.0).shopper.omitted) for s in range(20)]
    every = [_reset(env, s, 9, p_missing=1.0) for s in range(20)]
    assert sum(none) == 0
    for e in every:
        assert e.shopper.omitted == [c.name for c in e.goal.constraints[1:]]


def test_axis_p_oos_sells_out_a_result_mid_episode(env):
    def run(p_oos):
        out = []
        for s in range(15):
            _reset(env, s, 8, p_oos=p_oos)
            oracle = OraclePolicy(env)
            obs = env._obs()
            while not env.done:
                obs, *_, info = env.step(oracle.act(obs))
            assert info["reward"]["is_correct"]
            out.append(env.goal.oos_row)
        return out

    assert run(0.0).count(None) == 15
    assert sum(r is not None for r in run(1.0)) >= 10


# --------------------------------------------------------------------------- determinism

def _episode_transcript(env, seed, d):
    oracle = OraclePolicy(env)
    run_episode(env, oracle, seed, d)
    return env.transcript()


def test_same_seed_same_transcript(catalog):
    a, b = make_env("E_SUB", catalog), make_env("E_SUB", catalog)
    for seed, d in ((0, 0), (3, 6), (7, 12)):
        assert _episode_transcript(a, seed, d) == _episode_transcript(b, seed, d)
        assert _episode_transcript(a, seed, d) == _episode_transcript(a, seed, d)
    assert _episode_transcript(a, 1, 6) != _episode_transcript(a, 2, 6)


def test_transcript_is_identical_across_processes():
    code = (
        "import sys, hashlib; sys.path.insert(0, 'tests')\n"
        "from ecomrlve.catalog_service import Catalog\nfrom ecomrlve.envs import make_env\nfrom ecomrlve.policies import OraclePolicy\n"
        "from conftest import run_episode\n"
        "env = make_env('E_SUB', Catalog.synthetic(n_products=3000, seed=1))\n"
        "for seed, d in ((4, 3), (5, 10)):\n"
        "    run_episode(env, OraclePolicy(env), seed, d)\n"
        "    print(hashlib.sha256(env.transcript().encode()).hexdigest())\n"
    )
    outs = []
    for hashseed in ("1", "987"):
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                              env=dict(os.environ, PYTHONHASHSEED=hashseed), timeout=120)
        assert proc.returncode == 0, proc.stderr
        outs.append(proc.stdout)
    assert outs[0] == outs[1] and len(outs[0].split()) == 2


def test_switch_goal_raises_the_budget_and_only_relaxes(env):
    switched = 0
    for seed in range(10):
        _reset(env, seed, 6, p_missing=1.0)
        before = set(env.ideal_rows())
        old = next((c for c in env.goal.constraints if c.kind == "price_max"), None)
        utt = env._switch_goal(np.random.default_rng(seed))
        if old is None:
            assert utt is None
            continue
        switched += 1
        new = next(c for c in env.goal.constraints if c.kind == "price_max")
        assert new.value > old.value and env.goal.version == 1
        assert env.shopper.slots["price_max"].phrase in utt.clean_text
        assert "price_max" not in env.shopper.omitted
        assert before <= set(env.ideal_rows())
    assert switched >= 5
