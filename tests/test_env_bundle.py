"""E_BUNDLE: one product per required category of a project, within a budget (envs/bundle.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from ecomrlve.envs import make_env
from ecomrlve.envs.bundle import (
    GENERIC_PROJECT,
    MAX_S_REQ,
    PROJECT_TEMPLATES,
    BundleEnv,
    money,
    nice_budget_cents,
    resolve_projects,
)
from ecomrlve.envs.reward import f1_score
from ecomrlve.policies import OraclePolicy
from ecomrlve.policies.oracle.bundle import BundlePlanner

from conftest import run_episode

DIFFICULTIES = (0, 2, 4, 6, 8, 10, 12)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def env(catalog):
    return make_env("E_BUNDLE", catalog)


def _reset(env, seed, d, **axes):
    env.reset(seed=seed, options={"difficulty": d, "axes": axes})
    return env


def _expected(n_tp: int, n_pred: int, n_gold: int, over: bool = False) -> float:
    r = 2 * f1_score(n_tp, n_pred, n_gold) - 1 - (Fraction(1, 2) if over else 0)
    return float(max(Fraction(-1), min(Fraction(1), r)))


def _prepare(env, seed, d, **axes) -> list[str]:
    """Reset and let the oracle act until its next action is the answer; return the ids
    it would answer (the episode is still running)."""
    _reset(env, seed, d, **axes)
    planner = BundlePlanner(env)
    while True:
        action = planner.next_action()
        if "answer" in action:
            return action["answer"]["recommended_product_ids"]
        obs, reward, terminated, truncated, info = env.step(action)
        assert not (terminated or truncated), info


def _answer(env, ids) -> dict:
    obs, reward, terminated, truncated, info = env.step({"answer": {"recommended_product_ids": ids}})
    assert terminated and not truncated
    return info["reward"]


def _search_leaf(env, leaf, **filters) -> list[dict]:
    """Run one agent search for `leaf` (unfiltered unless told) and return its results."""
    env.step({"tool_calls": [{"name": "catalog_search", "args": {"query": leaf, "filters": filters, "top_k": 200}}]})
    return json.loads(env.messages[-1]["content"])["results"]


# --------------------------------------------------------------------------- acceptance

def test_oracle_solves_every_seed_and_difficulty(env):
    oracle = OraclePolicy(env)
    failures = []
    for d in DIFFICULTIES:
        for seed in range(20):
            obs, info = run_episode(env, oracle, seed, d)
            r = info["reward"]
            if not (r["is_correct"] and r["details"]["verifier_r_task"] == 1.0 and r["r_hall"] == 0.0):
                failures.append((d, seed, r["termination_reason"], r["details"]))
            assert len(env.goal.requirements) == env.axes.S_req
            assert info["turn"] <= env.axes.T_max
    assert failures == []


def test_cheapest_bundle_always_fits_the_budget(env):
    for d in DIFFICULTIES:
        for seed in range(20):
            _reset(env, seed, d)
            cheapest = env.min_bundle_cents()
            assert cheapest is not None and cheapest <= env.goal.budget_cents
            for req in env.goal.requirements:
                assert env.feasible_mask(req).any()
                for c in req.constraints:  # a stated constraint excludes some options, keeps >= 2
                    assert 2 <= int(env.requirement_mask(req).sum()) < len(req.rows)


# --------------------------------------------------------------------------- projects

def test_projects_resolve_against_the_synthetic_taxonomy(catalog):
    index = resolve_projects(catalog)
    assert resolve_projects(catalog) is index  # cached per catalog
    leaves = set(catalog.codes("category_l3")[1])
    for project, template in PROJECT_TEMPLATES.items():
        assert set(template) <= leaves, (project, set(template) - leaves)
        assert index.projects[project] == tuple(template)  # exact names, template order
        assert len(template) >= MAX_S_REQ
    for project in ("home office", "camping", "baking", "painting", "fitness", "nursery"):
        assert project in index.projects
    from ecomrlve.catalog_service.taxonomy import PROJECTS  # the copy in envs/bundle.py must not drift

    for project, leaves in PROJECTS.items():
        assert PROJECT_TEMPLATES[project] == tuple(leaves), project


def test_keyword_fallback_for_other_leaf_names(catalog):
    """A catalog with other leaf names (as Amazebay has) still resolves by normalised
    names and keywords."""
    rename = {"Tents": "Backpacking Tent", "Sleeping Bags": "sleeping bag", "Headlamps": "LED Headlamp",
              "Coolers": "Ice Chest Cooler", "Camp Chairs": "Folding Camp Chair", "Hammocks": "Portable Hammock",
              "Trekking Poles": "Adjustable Trekking Pole", "Camping Lanterns": "Lantern",
              "Multi-Tools": "Pocket Knife",
              "Rain Jackets": "Shell", "Water Bottles": "Flask"}

    class Renamed:
        def __init__(self, inner):
            self.inner = inner
            codes, values = inner.codes("category_l3")
            self.values = tuple(rename.get(v, v) for v in values)
            self.back = {rename.get(v, v): v for v in values}
            self.codes_ = (codes, self.values)

        def codes(self, name):
            return self.codes_ if name == "category_l3" else self.inner.codes(name)

        def category_rows(self, leaf):
            return self.inner.category_rows(self.back.get(leaf, leaf))

        def __getattr__(self, name):
            return getattr(self.inner, name)

    index = resolve_projects(Renamed(catalog))
    camping = index.projects["camping"]
    assert camping[0] == "sleeping bag"  # plural/case-insensitive template match, in template order
    keyword_matches = ("Adjustable Trekking Pole", "Backpacking Tent", "Folding Camp Chair", "Ice Chest Cooler",
                       "LED Headlamp", "Lantern", "Portable Hammock")
    assert camping[-len(keyword_matches):] == keyword_matches  # keyword matches, appended by name
    assert "Pocket Knife" not in camping and "Flask" not in camping
    assert "home office" in index.projects and index.projects["home office"] == PROJECT_TEMPLATES["home office"]


def test_generic_project_when_no_project_is_large_enough(env, catalog):
    n = 25
    _reset(env, 3, 4, S_req=n)
    assert env.goal.project == GENERIC_PROJECT
    assert len(env.goal.requirements) == n
    assert len({r.leaf for r in env.goal.requirements}) == n


# --------------------------------------------------------------------------- the S_req axis

def test_S_req_axis_changes_the_episode(env):
    seen = {}
    for s in (3, 5, 8, 12):
        _reset(env, 11, 6, S_req=s)
        reqs = env.goal.requirements
        assert len(reqs) == s
        opening = env.utterances[0].clean_text
        assert all(r.leaf in opening for r in reqs)
        assert set(r.leaf for r in reqs) <= set(resolve_projects(env.catalog).projects[env.goal.project])
        seen[s] = opening
    assert len(set(seen.values())) == 4
    for d in DIFFICULTIES:
        _reset(env, 0, d)
        assert len(env.goal.requirements) == min(12, 3 + d // 2)


# --------------------------------------------------------------------------- verifier, exact

def test_full_bundle_is_correct_and_budget_is_exact_cents(env):
    ids = _prepare(env, 4, 0)
    total = sum(env.price_cents(env.world.row(i)) for i in ids)
    assert total <= env.goal.budget_cents
    env.goal.budget_cents = total  # exactly at the budget is within it
    r = _answer(env, ids)
    assert r["is_correct"] and r["details"]["verifier_r_task"] == 1.0 and r["details"]["total_cents"] == total

    ids = _prepare(env, 4, 0)
    env.goal.budget_cents = total - 1  # one cent over
    r = _answer(env, ids)
    assert not r["is_correct"]
    assert r["details"]["verifier_r_task"] == _expected(3, 3, 3, over=True) == 0.5
    assert r["details"]["over_budget"]


def test_missing_category_is_not_correct(env):
    for d in (0, 6, 12):
        ids = _prepare(env, 2, d)
        n = len(env.goal.requirements)
        r = _answer(env, ids[:-1])
        assert not r["is_correct"]
        assert r["details"]["verifier_r_task"] == _expected(n - 1, n - 1, n)
        assert r["details"]["n_covered"] == n - 1


def test_extra_and_duplicate_items_reduce_precision(env):
    ids = _prepare(env, 5, 2)
    n = len(env.goal.requirements)
    other = next(leaf for leaf in env.projects.all_leaves if leaf not in env.goal.by_leaf)
    extra = _search_leaf(env, other, in_stock=True)[0]["product_id"]
    # a second in-stock product of a required category
    first = env.goal.requirements[0]
    dup = next(h["product_id"] for h in _search_leaf(env, first.leaf, in_stock=True)
               if h["product_id"] not in ids and env.broken_constraint(first, env.world.row(h["product_id"])) is None)
    env.goal.budget_cents = 10**9  # isolate the F1 part
    r = _answer(env, ids + [extra, dup])
    assert not r["is_correct"]
    assert r["details"]["verifier_r_task"] == _expected(n, n + 2, n)
    assert r["details"]["status"][-2:] == ["not_requested", "duplicate_category"]


def test_out_of_stock_item_after_a_mid_episode_stockout(env):
    """With p_oos = 1, the first search schedules a found feasible product to sell out at
    the next turn; answering it anyway is not correct."""
    seed = 0
    _reset(env, seed, 6, p_oos=1.0)
    goal = env.goal
    req = goal.requirements[0]
    turn = env.world.clock.turn
    env.step({"tool_calls": [BundlePlanner(env).search_call(req)]})
    hits = json.loads(env.messages[-1]["content"])["results"]
    assert goal.oos_row is not None
    assert (turn + 1, goal.oos_row) in env.world.scheduled_stockouts
    victim = env.catalog.product_id(goal.oos_row)
    assert victim in [h["product_id"] for h in hits]
    assert env.world.in_stock(goal.oos_row)
    assert env.feasible_mask(env.requirement_of(goal.oos_row), True, drop=goal.oos_row).any()
    assert env.min_bundle_cents(drop=goal.oos_row) <= goal.budget_cents

    ids = _prepare(env, seed, 6, p_oos=1.0)  # the oracle avoids the victim
    victim = env.catalog.product_id(env.goal.oos_row)
    assert victim not in ids
    n = len(env.goal.requirements)
    j = env.goal.by_leaf[env.catalog.value("category_l3", env.goal.oos_row)]
    leaf = env.goal.requirements[j].leaf
    swapped = [victim if env.catalog.value("category_l3", env.world.row(i)) == leaf else i for i in ids]
    env.goal.budget_cents = 10**9
    r = _answer(env, swapped)
    assert not env.world.in_stock(env.goal.oos_row)  # it did sell out
    assert not r["is_correct"]
    assert r["details"]["verifier_r_task"] == _expected(n - 1, n, n)
    assert "out_of_stock" in r["details"]["status"]


def test_broken_stated_constraint_is_not_correct(env):
    for seed in range(40):
        ids = _prepare(env, seed, 8)
        constrained = [r for r in env.goal.requirements if r.constraints]
        if constrained:
            break
    req = constrained[0]
    hits = _search_leaf(env, req.leaf, in_stock=True, category=req.path)
    bad = next(h["product_id"] for h in hits if env.broken_constraint(req, env.world.row(h["product_id"])))
    swapped = [bad if env.requirement_of(env.world.row(i)) is req else i for i in ids]
    n = len(env.goal.requirements)
    env.goal.budget_cents = 10**9
    r = _answer(env, swapped)
    assert not r["is_correct"]
    assert r["details"]["verifier_r_task"] == _expected(n - 1, n, n)
    assert "constraint_broken" in r["details"]["status"]


def test_arbitrary_ids_score_low_and_are_hallucinated(env, catalog):
    _reset(env, 1, 4)
    other = next(leaf for leaf in env.projects.all_leaves if leaf not in env.goal.by_leaf)
    ids = [catalog.product_id(int(r)) for r in catalog.category_rows(other)[:3]] + ["p9999999", "nonsense"]
    r = _answer(env, ids)
    assert r["details"]["verifier_r_task"] == -1.0 and not r["is_correct"]
    assert r["r_hall"] == -1.0
    assert r["r_total"] < 0


def test_right_products_never_searched_are_not_correct(env):
    ids = _prepare(env, 3, 2)
    _reset(env, 3, 2)  # same episode, but answer at once without searching
    r = _answer(env, ids)
    assert r["details"]["verifier_r_task"] == 1.0  # the right products...
    assert not r["is_correct"] and not r["details"]["all_searched"]  # ...never retrieved
    assert r["r_hall"] == -1.0


def test_no_answer_scores_minus_one(env):
    _reset(env, 0, 0)
    for _ in range(env.axes.T_max):
        obs, reward, terminated, truncated, info = env.step({"assistant_message": "Let me think."})
        if terminated or truncated:
            break
    assert info["reward"]["details"]["verifier_r_task"] == -1.0 and not info["reward"]["is_correct"]


# --------------------------------------------------------------------------- shopper

def test_omitted_slots_are_exactly_the_phrases_missing_from_the_opening(env):
    n_omitted = 0
    for d in range(0, 13):
        for seed in range(10):
            _reset(env, seed, d)
            sh = env.shopper
            opening = env.utterances[0]
            for name, slot in sh.slots.items():
                assert (slot.phrase in opening.clean_text) == (name not in sh.omitted), (d, seed, name)
            assert set(opening.slots) == {n for n in sh.slots if n not in sh.omitted}
            n_omitted += len(sh.omitted)
    assert n_omitted > 50
    _reset(env, 2, 6, p_missing=1.0)
    assert set(env.shopper.omitted) == {n for n in env.shopper.slots if not n.startswith("category:")}


def test_omissions_are_dropped_when_the_plan_cannot_fit(env):
    # d=0: S_req=3 searches at B_tool=1 plus the answer fill T_max=4; an ask would not fit
    _reset(env, 0, 0, p_missing=1.0)
    assert env.shopper.omitted == []
    assert money(env.goal.budget_cents) in env.utterances[0].clean_text
    _reset(env, 0, 0, p_missing=1.0, T_max=5)
    assert env.shopper.omitted == ["budget"]


def test_no_stockout_without_p_oos(env):
    _reset(env, 0, 6, p_oos=0.0)
    for req in env.goal.requirements:
        env.step({"tool_calls": [BundlePlanner(env).search_call(req)]})
    assert env.goal.oos_row is None and env.world.scheduled_stockouts == []


def test_ask_user_reveals_the_asked_slot(env):
    _reset(env, 2, 8, p_missing=1.0)
    sh = env.shopper
    assert "budget" in sh.omitted
    env.step({"tool_calls": [{"name": "ask_user", "args": {"question": "What's your total budget?"}}]})
    assert "budget" not in sh.omitted
    assert sh.slots["budget"].reply in env.utterances[-1].clean_text
    assert money(env.goal.budget_cents) in env.utterances[-1].clean_text
    assert 0 in sh.caused_turns


def test_shopper_reacts_to_proposed_products(env):
    ids = _prepare(env, 6, 4)
    env.step({"assistant_message": f"How about {ids[0]} and {ids[1]}?"})
    assert env.utterances[-1].kind == "confirm"
    env.goal.budget_cents = 1
    env.step({"assistant_message": f"How about {ids[0]} and {ids[1]}?"})
    assert env.utterances[-1].kind == "over_budget"


def test_no_braces_in_shopper_messages(env):
    oracle = OraclePolicy(env)
    for d in range(0, 13):
        for seed in range(5):
            obs, info = run_episode(env, oracle, seed, d)
            for u in env.utterances:
                assert "{" not in u.clean_text and "}" not in u.clean_text, u.clean_text
                assert "{" not in u.text and "}" not in u.text
            # reactions and questions in text
            _reset(env, seed, d)
            env.step({"assistant_message": "Any brand or color preferences? What is your budget?"})
            env.step({"assistant_message": "I found p0000001 for you."})
            for u in env.utterances:
                assert "{" not in u.clean_text and "}" not in u.clean_text, u.clean_text


def test_switch_goal_raises_the_budget(env):
    _reset(env, 0, 6)
    before = env.goal.budget_cents
    utt = env._switch_goal(np.random.default_rng(0))
    assert env.goal.budget_cents > before
    assert money(env.goal.budget_cents) in utt.clean_text and "budget" not in env.shopper.omitted


def test_budget_rounding():
    assert nice_budget_cents(1) == 500
    assert nice_budget_cents(9_501) == 10_000
    assert nice_budget_cents(10_001) == 11_000
    assert nice_budget_cents(123_456) == 125_000
    assert money(125_000) == "$1,250" and money(1999) == "$19.99"


# --------------------------------------------------------------------------- determinism

def test_same_seed_same_transcript(catalog):
    def play():
        env = make_env("E_BUNDLE", catalog)
        oracle = OraclePolicy(env)
        out = []
        for d in (3, 8, 12):
            run_episode(env, oracle, 5, d)
            out.append(env.transcript())
        return out

    assert play() == play()
    assert isinstance(make_env("E_BUNDLE", catalog), BundleEnv)


def test_transcript_identical_across_processes(catalog):
    """Another process with another PYTHONHASHSEED plays the same episode byte for byte."""
    code = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from ecomrlve.catalog_service import Catalog\nfrom ecomrlve.envs import make_env\nfrom ecomrlve.policies import OraclePolicy\n"
        "from conftest import run_episode\n"
        "env = make_env('E_BUNDLE', Catalog.synthetic(n_products=20_000, seed=0))\n"
        "run_episode(env, OraclePolicy(env), 5, 10)\nsys.stdout.write(env.transcript())\n"
    )
    hash_seed = "987" if os.environ.get("PYTHONHASHSEED") != "987" else "1"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ, PYTHONHASHSEED=hash_seed),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    env = make_env("E_BUNDLE", catalog)
    run_episode(env, OraclePolicy(env), 5, 10)
    assert res.stdout == env.transcript()
