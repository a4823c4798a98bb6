"""E_RETURN: order history, eligibility at the window edge, the verifier, shopper reactions,
the oracle (and the order generator it shares with E_STATUS)."""

from __future__ import annotations

import json
import re
from fractions import Fraction

import pytest

from ecomrlve.envs import make_env
from ecomrlve.envs.orders import OPEN_STATUSES, generate_orders, mentions, quoted_title, unique_item_phrases
from ecomrlve.envs.returns import METHOD_PHRASES, REASON_PHRASES
from ecomrlve.envs.tools import return_eligibility
from ecomrlve.envs.world import ORDER_STATUSES, RETURN_METHODS, RETURN_REASONS
from ecomrlve.policies import OraclePolicy

from conftest import run_episode

DIFFICULTIES = (0, 2, 4, 6, 8, 10, 12)


@pytest.fixture()
def env(catalog):
    return make_env("E_RETURN", catalog)


def find(env, pred, d=6, axes=None, limit=400):
    """Reset `env` to the first seed whose episode satisfies `pred(env)`; return the reset
    arguments (seed, options) to replay it."""
    options = {"difficulty": d, "axes": dict(axes or {})}
    for seed in range(limit):
        env.reset(seed=seed, options=options)
        if pred(env):
            return seed, options
    raise AssertionError("no seed found")


NO_OMISSION = {"p_missing": 0.0}


def tool(name, **args):
    return {"name": name, "args": args}


def step(env, *calls, answer=None, message=None):
    action = {"tool_calls": list(calls)}
    if answer is not None:
        action["answer"] = answer
    if message is not None:
        action["assistant_message"] = message
    return env.step(action)


def read_target(env):
    """Agent-side reads that show the target's ids (order_list, order_get), one per turn."""
    g = env.goal
    step(env, tool("order_list"))
    step(env, tool("order_get", order_id=g.order_id))


def other_eligible_line(env):
    g = env.goal
    for order in env.world.orders:
        for line in order.lines:
            if (order.order_id, line.line_id) != (g.order_id, g.line_id):
                if return_eligibility(env.world, order, line)["eligible"]:
                    return order, line
    return None


def plain(env):
    """Nothing omitted, no replacement: the simplest episodes to script."""
    return env.goal.replacement is None and not env.shopper.omitted


# --------------------------------------------------------------------------- acceptance

def test_oracle_solves_every_episode_within_budget(catalog, env):
    oracle = OraclePolicy(env)
    for d in DIFFICULTIES:
        for seed in range(20):
            obs, info = run_episode(env, oracle, seed, d)
            reward = info["reward"]
            assert reward["is_correct"], (d, seed, reward)
            assert reward["r_hall"] == 0.0, (d, seed)  # only ids it had seen
            assert info["turn"] <= env.axes.T_max
            for m in obs["messages"]:
                assert len(m.get("tool_calls", [])) <= env.axes.B_tool
            names = [c["function"]["name"] for m in obs["messages"] for c in m.get("tool_calls", [])]
            assert names[0] == "order_list" and names.index("order_get") < names.index("return_check_eligibility")


def test_same_seed_same_transcript(catalog):
    a, b = make_env("E_RETURN", catalog), make_env("E_RETURN", catalog)
    for env in (a, b):
        run_episode(env, OraclePolicy(env), 5, 10)
    assert a.transcript() == b.transcript()


# --------------------------------------------------------------------------- order history

def test_history_has_H_orders_with_consistent_timelines(env):
    for d in DIFFICULTIES:
        for seed in range(10):
            env.reset(seed=seed, options={"difficulty": d})
            world, today = env.world, env.world.clock.today()
            assert len(world.orders) == 1 + d // 2
            ids = [o.order_id for o in world.orders]
            lines = [ln.line_id for o in world.orders for ln in o.lines]
            assert len(set(ids)) == len(ids) and all(re.fullmatch(r"W\d{7}", i) for i in ids)
            assert len(set(lines)) == len(lines) and all(re.fullmatch(r"OL\d+", i) for i in lines)
            placed = [o.placed_at for o in world.orders]
            assert placed == sorted(placed, reverse=True) and len(set(placed)) == len(placed)
            for o in world.orders:
                assert o.status in ORDER_STATUSES and 1 <= len(o.lines) <= 3
                assert o.placed_at < today
                if o.status in OPEN_STATUSES:
                    assert o.eta is not None and o.eta >= today and o.delivered_at is None
                else:
                    assert o.eta is None
                if o.status in ("delivered", "returned"):
                    assert o.placed_at < o.delivered_at <= today
                assert (o.carrier is None) == (o.status in ("placed", "cancelled"))
                assert (o.tracking_number is None) == (o.carrier is None)
                for ln in o.lines:
                    row = world.row(ln.product_id)
                    assert ln.unit_price == round(float(world.catalog.numeric("price")[row]), 2)
                    assert ln.category_l3 == world.catalog.value("category_l3", row)
                    assert ln.quantity >= 1
                    if world.variants_of(ln.product_id):
                        assert world.variant(ln.product_id, ln.variant_id) is not None
                    else:
                        assert ln.variant_id is None


def test_orders_are_generated_once_and_shared_with_the_tools(env):
    env.reset(seed=3, options={"difficulty": 8})
    orders = env.world.orders
    snapshot = [(o.order_id, o.status, [ln.line_id for ln in o.lines]) for o in orders]
    obs, *_ = step(env, tool("order_list"))
    listed = [o["order_id"] for o in json.loads(obs["messages"][-1]["content"])["orders"]]
    assert listed == [o.order_id for o in orders]
    step(env, tool("order_get", order_id=env.goal.order_id))
    assert env.world.orders is orders
    assert [(o.order_id, o.status, [ln.line_id for ln in o.lines]) for o in orders] == snapshot


def test_generate_orders_is_a_pure_function_of_its_rng(catalog):
    import numpy as np

    from ecomrlve.envs.world import SimClock, World

    def make():
        rng = np.random.default_rng(11)
        world = World(catalog, SimClock.from_rng(np.random.default_rng(1)))
        return generate_orders(catalog, world.clock, rng, 5, world=world)

    a, b = make(), make()
    assert [(o.order_id, o.placed_at, o.status, o.tracking_number, [(ln.line_id, ln.product_id, ln.variant_id)
             for ln in o.lines]) for o in a] == [(o.order_id, o.placed_at, o.status, o.tracking_number,
                                                  [(ln.line_id, ln.product_id, ln.variant_id) for ln in o.lines])
                                                 for o in b]


def test_reset_never_searches_the_catalog(catalog):
    class NoSearch:
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            if name == "search":
                raise AssertionError("reset must not search the catalog")
            return getattr(self._inner, name)

        def __len__(self):
            return len(self._inner)

    for env_id in ("E_RETURN", "E_STATUS"):
        env = make_env(env_id, NoSearch(catalog))
        for d in DIFFICULTIES:
            for seed in range(5):
                env.reset(seed=seed, options={"difficulty": d})


# --------------------------------------------------------------------------- the target

def test_item_reference_names_exactly_the_target(env):
    for seed in range(40):
        env.reset(seed=seed, options={"difficulty": 10, "axes": {"p_ref": 1.0}})
        g, world = env.goal, env.world
        order = world.order(g.order_id)
        line = order.line(g.line_id)
        ref = g.item_ref
        if " I bought " in ref:
            phrase = ref.split(" I bought ")[0]
            assert phrase in unique_item_phrases(world, order, line, "line"), (seed, ref)
        else:  # fallback: the exact day it was ordered, or the title with the order id
            assert " I ordered " in ref or g.order_id in ref or quoted_title(line.title) in ref


def test_p_ref_axis_switches_direct_and_indirect_references(env):
    for seed in range(15):
        env.reset(seed=seed, options={"difficulty": 6, "axes": {"p_ref": 0.0}})
        line = env.world.order(env.goal.order_id).line(env.goal.line_id)
        assert not env.goal.indirect and env.goal.item_ref.startswith(quoted_title(line.title))
        assert ": " not in env.goal.item_ref  # no raw "(color: Black)" suffix
        env.reset(seed=seed, options={"difficulty": 6, "axes": {"p_ref": 1.0}})
        assert env.goal.indirect and not env.goal.item_ref.startswith('the "')


def test_H_axis_sets_the_number_of_orders(env):
    for h in (1, 3, 6):
        env.reset(seed=2, options={"difficulty": 4, "axes": {"H": h}})
        assert len(env.world.orders) == h


def test_p_edge_places_the_target_one_day_from_the_window_edge(env):
    seen = set()
    for seed in range(30):
        env.reset(seed=seed, options={"difficulty": 6, "axes": {"p_edge": 1.0}})
        g, world = env.goal, env.world
        order = world.order(g.order_id)
        line = order.line(g.line_id)
        window = world.policy.return_window(line, world.membership_tier)
        days = (world.clock.today() - order.delivered_at).days
        verdict = return_eligibility(world, order, line)
        assert g.case in ("edge_in", "edge_out")
        assert days in ((window - 1, window) if g.case == "edge_in" else (window + 1,))
        assert verdict["eligible"] is g.eligible is (g.case == "edge_in")
        assert verdict["days_since_delivery"] == days and verdict["window_days"] == window
        seen.add(g.case)
    assert seen == {"edge_in", "edge_out"}
    for seed in range(30):
        env.reset(seed=seed, options={"difficulty": 6, "axes": {"p_edge": 0.0}})
        assert env.goal.case in ("eligible", "expired", "not_delivered")


def test_eligibility_holds_for_the_whole_episode(env):
    """Near midnight the clock may cross a day boundary mid-episode; the truth must not flip."""
    for seed in range(60):
        env.reset(seed=seed, options={"difficulty": 8, "axes": {"p_edge": 1.0}})
        world, g = env.world, env.goal
        order = world.order(g.order_id)
        line = order.line(g.line_id)
        for turn in range(0, 40, 3):
            world.clock.turn = turn
            assert return_eligibility(world, order, line)["eligible"] is g.eligible
        world.clock.turn = 0


def test_reason_and_method_phrases_map_to_the_schema_values():
    assert set(REASON_PHRASES) <= set(RETURN_REASONS)
    assert set(METHOD_PHRASES) == set(RETURN_METHODS)
    phrases = [p for v in REASON_PHRASES.values() for p in v] + [p for v in METHOD_PHRASES.values() for p in v]
    assert len(phrases) == len(set(phrases))


# --------------------------------------------------------------------------- the verifier

def finish_eligible(env, reason=None, method=None, extra_calls=(), answer_patch=None):
    g = env.goal
    read_target(env)
    calls = [tool("return_initiate", order_id=g.order_id, line_id=g.line_id, reason=reason or g.reason,
                  method=method or g.method), *extra_calls]
    answer = {"selected_order_id": g.order_id, "selected_line_id": g.line_id, "eligible": True} | (answer_patch or {})
    for c in calls[:-1]:
        step(env, c)
    *_, info = step(env, calls[-1], answer=answer)
    return info["reward"]


def test_correct_return_is_correct(env):
    find(env, lambda e: e.goal.eligible and plain(e), axes=NO_OMISSION)
    reward = finish_eligible(env)
    assert reward["is_correct"] and reward["details"]["verifier_r_task"] == 1.0


def test_wrong_reason_or_method_is_not_correct(env):
    seed, options = find(env, lambda e: e.goal.eligible and plain(e), axes=NO_OMISSION)
    wrong_reason = next(r for r in RETURN_REASONS if r != env.goal.reason)
    reward = finish_eligible(env, reason=wrong_reason)
    assert not reward["is_correct"]
    assert reward["details"]["verifier_r_task"] == float(Fraction(2 * 6, 7) - 1)  # 6 of 7 checks
    assert reward["details"]["checks"]["reason"] is False
    env.reset(seed=seed, options=options)
    wrong_method = next(m for m in RETURN_METHODS if m != env.goal.method)
    reward = finish_eligible(env, method=wrong_method)
    assert not reward["is_correct"] and reward["details"]["checks"]["method"] is False
    assert reward["details"]["verifier_r_task"] == float(Fraction(5, 7))


def test_collateral_return_of_another_line_is_not_correct(env):
    find(env, lambda e: e.goal.eligible and plain(e) and other_eligible_line(e) is not None, d=10, axes=NO_OMISSION)
    order, line = other_eligible_line(env)
    extra = tool("return_initiate", order_id=order.order_id, line_id=line.line_id, reason="other", method="mail")
    step(env, tool("order_list"))
    step(env, tool("order_get", order_id=order.order_id))
    reward = finish_eligible(env, extra_calls=[extra])
    assert len(env.world.returns) == 2
    assert not reward["is_correct"] and reward["details"]["verifier_r_task"] == -1.0
    assert reward["details"]["collateral_returns"] == [f"{order.order_id}/{line.line_id}"]


def test_wrong_selected_line_is_not_correct(env):
    find(env, lambda e: e.goal.eligible and plain(e), axes=NO_OMISSION)
    reward = finish_eligible(env, answer_patch={"selected_line_id": "OL999"})
    # the answer does not identify the item to return: nothing it did counts
    assert not reward["is_correct"] and reward["details"]["verifier_r_task"] == -1.0


def test_ineligible_target_refusing_is_correct(env):
    find(env, lambda e: not e.goal.eligible and plain(e), axes=NO_OMISSION)
    g = env.goal
    read_target(env)
    obs, *_ = step(env, tool("return_check_eligibility", order_id=g.order_id, line_id=g.line_id))
    assert '"eligible": false' in obs["messages"][-1]["content"]
    obs, *_ = step(env, message="I'm sorry, this item is not eligible for return anymore.")
    assert env.utterances[-1].kind == "accept_refusal" and env.shopper.annoyance == 0
    *_, info = step(env, answer={"selected_order_id": g.order_id, "selected_line_id": g.line_id, "eligible": False})
    reward = info["reward"]
    assert reward["is_correct"] and reward["details"]["verifier_r_task"] == 1.0 and env.world.returns == []


def test_ineligible_target_cannot_be_returned_and_claiming_eligible_is_wrong(env):
    find(env, lambda e: not e.goal.eligible and plain(e), axes=NO_OMISSION)
    g = env.goal
    read_target(env)
    obs, *_ = step(env, tool("return_initiate", order_id=g.order_id, line_id=g.line_id, reason=g.reason,
                             method=g.method))
    assert "not eligible for return" in obs["messages"][-1]["content"] and env.world.returns == []
    *_, info = step(env, answer={"selected_order_id": g.order_id, "selected_line_id": g.line_id, "eligible": True})
    assert not info["reward"]["is_correct"]
    assert info["reward"]["details"]["verifier_r_task"] == float(Fraction(2 * 4, 5) - 1)  # eligible flag wrong: 4 of 5


def test_ineligible_target_returning_anything_is_wrong(env):
    find(env, lambda e: not e.goal.eligible and plain(e) and other_eligible_line(e) is not None, d=10,
         axes=NO_OMISSION)
    g = env.goal
    order, line = other_eligible_line(env)
    step(env, tool("order_list"))
    step(env, tool("order_get", order_id=order.order_id))
    step(env, tool("return_initiate", order_id=order.order_id, line_id=line.line_id, reason=g.reason,
                   method=g.method))
    *_, info = step(env, answer={"selected_order_id": g.order_id, "selected_line_id": g.line_id, "eligible": False})
    assert not info["reward"]["is_correct"] and info["reward"]["details"]["verifier_r_task"] == -1.0


def test_no_answer_is_not_correct(env):
    find(env, lambda e: e.goal.eligible and plain(e), d=0, axes=NO_OMISSION)
    for _ in range(env.axes.T_max):
        *_, truncated, info = step(env, tool("order_list"))
    assert truncated and not info["reward"]["is_correct"]


# --------------------------------------------------------------------------- replacement

def replacement_episode(env):
    return find(env, lambda e: e.goal.replacement is not None and e.goal.eligible, d=10, axes=NO_OMISSION)


def test_replacement_request_is_said_and_checked(env):
    replacement_episode(env)
    g = env.goal
    opening = env.utterances[0].clean_text
    assert "replacement" in opening and g.replacement.constraints[0].slot().phrase in opening
    rep = g.replacement
    assert env.replacement_ok(rep.product_id, _good_variant(env, rep.product_id))
    # a product of another leaf category does not satisfy the constraints
    other = next(r for r in range(len(env.catalog))
                 if env.catalog.value("category_l3", r) != rep.constraints[0].value and env.world.in_stock(r))
    pid = env.catalog.product_id(other)
    assert not any(env.replacement_ok(pid, v.variant_id) for v in env.world.variants_of(pid))
    assert not env.replacement_ok(pid, None)


def _good_variant(env, pid):
    for v in env.world.variants_of(pid):
        if env.replacement_ok(pid, v.variant_id):
            return v.variant_id
    return None


def test_missing_or_wrong_replacement_is_not_correct(env):
    seed, options = replacement_episode(env)
    reward = finish_eligible(env)  # return done, nothing in the cart
    assert not reward["is_correct"] and reward["details"]["checks"]["replacement"] is False
    # two units of a good product: not exactly one replacement
    env.reset(seed=seed, options=options)
    rep = env.goal.replacement
    env.seen_ids.add(rep.product_id)
    vid = _good_variant(env, rep.product_id)
    add = tool("cart_add", product_id=rep.product_id, quantity=2, **({"variant_id": vid} if vid else {}))
    reward = finish_eligible(env, extra_calls=[add])
    assert not reward["is_correct"] and reward["details"]["checks"]["replacement"] is False
    # exactly one unit: correct
    env.reset(seed=seed, options=options)
    env.seen_ids.add(rep.product_id)
    add = tool("cart_add", product_id=rep.product_id, quantity=1, **({"variant_id": vid} if vid else {}))
    reward = finish_eligible(env, extra_calls=[add])
    assert reward["is_correct"], reward


def test_replacement_variant_must_carry_a_constrained_value(env):
    for seed in range(400):
        env.reset(seed=seed, options={"difficulty": 12})
        rep = env.goal.replacement
        if rep is None:
            continue
        variants = env.world.variants_of(rep.product_id)
        constrained = {c.attribute: c.value for c in rep.constraints if c.kind == "attribute"}
        if variants and variants[0].attribute in constrained:
            for v in variants:
                assert env.replacement_ok(rep.product_id, v.variant_id) == (v.value == constrained[v.attribute])
            return
    pytest.skip("no episode with a constrained variant attribute")


# --------------------------------------------------------------------------- shopper reactions

def test_shopper_answers_which_item_when_it_was_omitted(env):
    find(env, lambda e: "item" in e.shopper.omitted, d=8)
    g = env.goal
    assert g.item_ref not in env.utterances[0].clean_text
    obs, *_ = step(env, tool("ask_user", question="Which item would you like to return?"))
    assert env.utterances[-1].clean_text.startswith(f"It's {g.item_ref}.")
    assert 0 in env.shopper.caused_turns and "item" not in env.shopper.omitted


def test_shopper_denies_a_wrong_item_and_confirms_the_right_one(env):
    """By title (what the shopper bought) it confirms or denies; asked about ids it was
    never given it does not know them and repeats its description, at the agent's cost."""
    find(env, lambda e: len(e.world.orders) >= 3 and plain(e) and "order W" not in e.goal.item_ref, d=8,
         axes=NO_OMISSION)
    g = env.goal
    line = env.world.order(g.order_id).lines
    mine = next(ln for ln in line if ln.line_id == g.line_id)
    wrong = next(ln for o in env.world.orders for ln in o.lines if ln.title != mine.title)
    step(env, tool("order_list"))
    step(env, message=f'Is it the "{wrong.title}"?')
    assert env.utterances[-1].clean_text == f"No, that's not it. I mean {g.item_ref}."
    step(env, tool("ask_user", question=f'Do you mean the "{mine.title}"?'))
    assert env.utterances[-1].clean_text == "Yes, that's the one."
    assert env.shopper.annoyance == 0
    for text in (f"Is it order {g.order_id}?", f"Do you mean line {g.line_id}?", f"Is it {g.product_id}?"):
        step(env, tool("ask_user", question=text))
        assert env.utterances[-1].clean_text == f"Sorry, I don't know order numbers. I mean {g.item_ref}."
        assert env.utterances[-1].kind == "unknown_id"
    assert env.shopper.caused_turns == set()


def test_shopper_pushes_back_on_refusing_an_eligible_item(env):
    find(env, lambda e: e.goal.eligible and plain(e), axes=NO_OMISSION)
    step(env, message="Sorry, this item cannot be returned.")
    assert env.utterances[-1].kind == "push_back" and env.shopper.annoyance == 1


def test_mentions_finds_orders_and_lines(env):
    env.reset(seed=1, options={"difficulty": 8})
    o = env.world.orders[0]
    ln = o.lines[0]
    orders, lines = mentions(f"Order {o.order_id}: line {ln.line_id}.", env.world.orders)
    assert orders == [o.order_id] and (o.order_id, ln.line_id) in lines
    assert mentions(f"X{o.order_id}9 and {ln.line_id}A", env.world.orders) == ([], [])


# --------------------------------------------------------------------------- any store policy

def test_works_with_whatever_windows_the_policy_gives(catalog, monkeypatch):
    """Per-category windows (short and long), a membership bonus and non-returnable leaf
    categories: the edge still sits one day from the real window and the oracle still solves
    every episode."""
    import ecomrlve.envs.base
    from ecomrlve.envs.world import StorePolicy

    leaves = list(catalog.codes("category_l3")[1])
    departments = sorted({str(v).lower() for v in catalog.codes("category_l1")[1]})
    windows = {dep: (7, 14, 45, 90)[i % 4] for i, dep in enumerate(departments)}

    def policy(rng):
        return StorePolicy(return_windows=windows, default_return_window=30,
                           membership_bonus_days={"standard": 3}, non_returnable_l3=frozenset(leaves[::3]))

    monkeypatch.setattr(ecomrlve.envs.base, "generate_policy", policy)
    env = make_env("E_RETURN", catalog)
    oracle = OraclePolicy(env)
    used = set()
    for d in DIFFICULTIES:
        for seed in range(20):
            run_episode(env, oracle, seed, d)
            assert env.reward_info.is_correct, (d, seed, env.reward_info)
            g, world = env.goal, env.world
            line = world.order(g.order_id).line(g.line_id)
            assert g.window == windows.get(line.category_l1.lower(), 30) + 3
            used.add(g.window)
            if g.case in ("edge_in", "edge_out", "eligible"):
                assert line.category_l3 not in leaves[::3]
            if g.case == "edge_out":
                assert g.delivered_days_ago == g.window + 1
            if g.case == "edge_in":
                assert g.delivered_days_ago in (g.window - 1, g.window)
    assert len(used) >= 3
