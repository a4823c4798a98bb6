"""The generated store policy: size and topics, texts that state every clause and number,
return windows consistent with the texts and the return tools, determinism, and question
contexts decided by exactly one rule."""

from __future__ import annotations

import datetime as dt
import re
import numpy as np
import pytest

from ecomrlve.envs import make_env
from ecomrlve.envs.policy_kb import rank_rules
from ecomrlve.envs.store_policy import (
    DEPARTMENT_LEAVES,
    DEPARTMENTS,
    FINAL_SALE_POOL,
    MONEY_SLOTS,
    RULE_SPECS,
    UNKNOWN,
    _Draws,
    evaluate,
    generate_policy,
    max_depth,
    money,
    question_for,
    sample_question,
)
from ecomrlve.envs.tools import return_eligibility
from ecomrlve.envs.world import Order, OrderLine, SimClock, World
from ecomrlve.policies.oracle.policy import SEARCH_TOP_K, pick_query

TOPICS = {"returns", "shipping", "pricing", "membership", "warranty"}
SEEDS = range(40)


def policy(seed: int):
    return generate_policy(np.random.default_rng(seed))


def contains_number(text: str, number: str) -> bool:
    """`number` ("30", "$5.99", "15%") occurs in `text` as a whole number."""
    return re.search(r"(?<![\d.,])" + re.escape(number) + r"(?![\d]|[.,]\d)", text) is not None


def numbers_of(rule) -> list[str]:
    """Every number the rule's structured logic uses, as its text must write it."""
    kind = rule.param("kind")
    out = []
    for atoms, outcome in rule.param("clauses") + (((), rule.param("default")),):
        for slot, _, value in atoms:
            if isinstance(value, int):
                out.append(money(value) if slot in MONEY_SLOTS else str(value))
        if outcome[0] == "const" and isinstance(outcome[1], int):
            out.append(money(outcome[1]) if kind == "money" else str(outcome[1]))
        elif outcome[0] == "pct":
            out.append(f"{outcome[2]}%")
        elif outcome[0] == "rate":
            out.append(str(outcome[2]))
    return out


# --------------------------------------------------------------------------- the knowledge base

def test_size_topics_and_unique_scopes():
    for seed in SEEDS:
        p = policy(seed)
        assert len(p.rules) >= 60
        assert {r.topic for r in p.rules} == TOPICS
        assert len({r.rule_id for r in p.rules}) == len(p.rules)
        keys = [(r.param("question"), r.param("scope")) for r in p.rules]
        assert len(set(keys)) == len(keys), "two rules answer the same question in the same scope"
        for r in p.rules:
            assert r.title and r.text and r.param("clauses")
            assert max_depth(r) >= 3


def test_rule_texts_state_every_case_and_number():
    for seed in SEEDS:
        for r in policy(seed).rules:
            n = len(r.param("clauses"))
            for i in range(1, n + 1):
                assert f"({i}) " in r.text, (r.rule_id, i)
            assert f"({n + 1}) Otherwise: " in r.text
            nums = numbers_of(r)
            assert nums, r.rule_id
            for num in nums:
                assert contains_number(r.text, num), (r.rule_id, num, r.text)
            for text in (r.text, r.title):
                assert "{" not in text and "}" not in text


def test_return_windows_match_the_rule_texts():
    """The eligibility rule's notes state the windows, its decision list (whatever its form)
    says exactly "returnable iff not final sale and delivered at most window + bonus days
    ago", and the bonus rule states every tier's extra days."""
    for seed in SEEDS:
        p = policy(seed)
        rules = {r.rule_id: r for r in p.rules}
        bonus = p.membership_bonus_days
        assert set(p.return_windows) == set(DEPARTMENTS)
        assert 0 < bonus["standard"] < bonus["plus"] < bonus["premium"]
        final_sale = set()
        for dept in DEPARTMENTS:
            r = rules[f"returns-eligibility-{dept.replace(' & ', '-').replace(' ', '-')}"]
            w = p.return_windows[dept]
            assert r.param("window") == w
            assert (r.param("standard_bonus"), r.param("plus_bonus"), r.param("premium_bonus")) == (
                bonus["standard"], bonus["plus"], bonus["premium"])
            assert f"The base window is {w} days from delivery" in r.text
            for tier, name in (("standard", "standard accounts"), ("plus", "Plus members"),
                               ("premium", "Premium members")):
                assert f"{name} {bonus[tier]} extra days" in r.text or f"{name} get {bonus[tier]} extra days" in r.text
                assert f"({w + bonus[tier]} in total)" in r.text
            fs = r.param("final_sale")
            assert set(fs) <= set(FINAL_SALE_POOL[dept][0])
            for leaf in fs:
                assert leaf.lower() in r.text
            final_sale |= set(fs)
            leaves = DEPARTMENT_LEAVES[dept][:2] + tuple(fs)
            for leaf in leaves:
                for tier in ("standard", "plus", "premium"):
                    limit = w + bonus[tier]
                    for days in (1, w - 1, w, w + 1, limit - 1, limit, limit + 1, limit + 40):
                        ctx = {"question": "return_allowed", "department": dept, "item": leaf, "tier": tier,
                               "days_delivered": days}
                        want = "yes" if leaf not in fs and days <= limit else "no"
                        assert evaluate(r, ctx)[0] == want, (seed, dept, leaf, tier, days, r.text)
        assert final_sale == set(p.non_returnable_l3)
        b = rules["membership-return-bonus"]
        for tier in ("standard", "plus", "premium"):
            assert evaluate(b, {"question": "return_bonus_days", "tier": tier})[0] == bonus[tier]
            assert f"{bonus[tier]} extra days" in b.text


def test_eligibility_rule_agrees_with_the_return_tools():
    """The eligibility rule's logic, StorePolicy.return_window and the return tools' verdict
    (`return_eligibility`) agree on every department, leaf, tier and day around the edges."""
    for seed in range(8):
        p = policy(seed)
        rules = {r.param("scope"): r for r in p.rules if r.param("family") == "return_eligibility"}
        world = World(None, SimClock(dt.datetime(2026, 6, 1, 12, 0)), policy=p)
        today = world.clock.today()
        for dept in DEPARTMENTS:
            rule = rules[(("department", dept),)]
            leaves = DEPARTMENT_LEAVES[dept][:3] + tuple(r for r in rule.param("final_sale"))
            for leaf in leaves:
                line = OrderLine("L1", "p1", None, leaf, dept.title(), leaf, 1, 10.0)
                for tier in ("standard", "plus", "premium"):
                    world.membership_tier = tier
                    window = p.return_window(line, tier)
                    for days in sorted({1, window - 1, window, window + 1, window + 30}):
                        if days < 1:
                            continue
                        order = Order("W1", today - dt.timedelta(days=days + 3), "delivered", [line],
                                      delivered_at=today - dt.timedelta(days=days))
                        tool = return_eligibility(world, order, line)["eligible"]
                        ctx = {"question": "return_allowed", "department": dept, "item": leaf, "tier": tier,
                               "days_delivered": days}
                        answer, _ = evaluate(rule, ctx)
                        assert (answer == "yes") == tool, (seed, dept, leaf, tier, days, window)


def test_final_sale_leaves_exist_in_the_catalog(catalog):
    _, leaves = catalog.codes("category_l3")
    known = set(leaves)
    for dept, (pool, _, _) in FINAL_SALE_POOL.items():
        for leaf in pool:
            assert leaf in known, leaf
            rows = catalog.category_rows(leaf)
            assert len(rows) and catalog.value("category_l1", int(rows[0])).lower() == dept
    for dept, leaves_of in DEPARTMENT_LEAVES.items():
        assert set(leaves_of) <= known, dept


def test_generate_policy_is_deterministic_and_varies():
    a, b = policy(7), policy(7)
    assert [(r.rule_id, r.text, r.data) for r in a.rules] == [(r.rule_id, r.text, r.data) for r in b.rules]
    assert a.return_windows == b.return_windows and a.membership_bonus_days == b.membership_bonus_days
    assert a.non_returnable_l3 == b.non_returnable_l3
    texts = [tuple(r.text for r in policy(s).rules) for s in range(12)]
    assert len(set(texts)) == 12
    # every rule's parameters vary across stores (memorising one store does not answer another)
    texts_of: dict[str, set] = {}
    for s in range(12):
        for r in policy(s).rules:
            texts_of.setdefault(r.rule_id, set()).add(r.text)
    assert all(len(t) > 1 for t in texts_of.values()), [k for k, t in texts_of.items() if len(t) == 1]
    windows = {tuple(policy(s).return_windows.values()) for s in range(12)}
    assert len(windows) > 1


def test_rule_specs_say_what_each_rule_is():
    """`sample_question` picks question types from the specs before building any rule."""
    assert len(RULE_SPECS) == 64 and len({s.rule_id for s in RULE_SPECS}) == 64
    for seed in range(30):
        p = policy(seed)
        assert p.rule_ids == tuple(s.rule_id for s in RULE_SPECS)
        for spec, r in zip(RULE_SPECS, p.rules):
            assert (r.rule_id, r.topic, r.param("family"), r.param("question"), r.param("kind"), r.param("options")) \
                == (spec.rule_id, spec.topic, spec.family, spec.question, spec.kind, spec.options)
            if spec.family == "return_eligibility":
                assert 4 <= max_depth(r) <= spec.cases
            else:
                assert max_depth(r) == spec.cases, spec.rule_id


def test_a_rule_is_the_same_whichever_rules_were_built_before_it():
    for seed in range(6):
        every = policy(seed).rules
        lazy = policy(seed)
        order = [int(i) for i in np.random.default_rng(seed).permutation(len(every))]
        got = {i: lazy.rule_at(i) for i in order[:20]}  # a few, in a random order
        for i, r in got.items():
            assert (r.rule_id, r.text, r.data) == (every[i].rule_id, every[i].text, every[i].data)
        assert [(r.rule_id, r.text, r.data) for r in lazy.rules] == [(r.rule_id, r.text, r.data) for r in every]


def test_a_question_builds_only_the_rules_it_needs():
    made = []
    for seed in range(40):
        p = policy(seed)
        q = sample_question(p, 1 + seed % 5, np.random.default_rng(seed), stratum=seed)
        assert q.rule.rule_id in {p.rule_ids[i] for i in p._made}
        made.append(len(p._made))
    assert max(made) <= 9 and sum(made) / len(made) < 5, made  # at most one type of rules (9 departments)


def test_draws_continue_on_their_own_generator_when_the_row_runs_out():
    dr = _Draws([0.25, 0.5], lambda: np.random.default_rng(3))
    assert [dr.uniform() for _ in range(4)] == [0.25, 0.5] + np.random.default_rng(3).random(2).tolist()


def test_every_case_of_every_rule_is_reachable():
    for seed in range(10):
        p = policy(seed)
        rng = np.random.default_rng(seed)
        for r in p.rules:
            for depth in range(1, max_depth(r) + 1):
                q = question_for(p, r, depth, rng)
                assert q is not None, (r.rule_id, depth)
                assert evaluate(r, q.context) == (q.answer, depth)


def test_questions_are_decided_by_exactly_one_rule():
    for seed in range(60):
        p = policy(seed)
        for depth in range(1, 7):
            q = sample_question(p, depth, np.random.default_rng(seed * 31 + depth), p_edge=0.5)
            assert q.depth == min(depth, 6)
            for r in p.rules:
                got = evaluate(r, q.context)
                if r is q.rule:
                    assert got == (q.answer, q.depth)
                else:
                    assert got is None or got[0] == q.answer, (r.rule_id, q.rule.rule_id)
                assert got is None or got[0] != UNKNOWN


def test_the_oracle_query_surfaces_every_rule():
    for seed in range(8):
        p = policy(seed)
        for r in p.rules:
            query, k = pick_query(p.rules, r)
            assert k == SEARCH_TOP_K
            assert r in rank_rules(p.rules, query, k)


# --------------------------------------------------------------------------- E_POLICY questions

@pytest.fixture(scope="module")
def env(catalog):
    return make_env("E_POLICY", catalog)


def test_env_questions_are_consistent_at_every_difficulty(env):
    for d in range(13):
        for seed in range(30):
            env.reset(seed=seed, options={"difficulty": d})
            q = env.goal.question
            assert q.depth == 1 + d // 3
            ctx = q.context
            applying = []
            for r in env.world.policy.rules:
                got = evaluate(r, ctx)
                if got is not None:
                    applying.append(r)
                    assert got[0] == q.answer, (d, seed, r.rule_id, q.rule.rule_id)
            assert applying == [q.rule]
            assert evaluate(q.rule, ctx) == (q.answer, q.depth)


def test_generating_rules_are_diverse_at_every_difficulty(env):
    for d in range(13):
        rules = set()
        for seed in range(100):
            env.reset(seed=seed, options={"difficulty": d})
            rules.add(env.goal.rule_id)
        assert len(rules) >= 10, (d, len(rules))
