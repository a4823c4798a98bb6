"""E_STATUS: order references, the verifier (order, exact status, eta), ETA claims, shopper
reactions and the oracle."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest

from ecomrlve.envs import make_env
from ecomrlve.envs.orders import OPEN_STATUSES, known_ids, unique_item_phrases
from ecomrlve.envs.status import normalise_status
from ecomrlve.envs.world import ORDER_STATUSES
from ecomrlve.policies import OraclePolicy

from conftest import run_episode

DIFFICULTIES = (0, 2, 4, 6, 8, 10, 12)
NO_OMISSION = {"p_missing": 0.0}


@pytest.fixture()
def env(catalog):
    return make_env("E_STATUS", catalog)


def find(env, pred, d=6, axes=None, limit=400):
    options = {"difficulty": d, "axes": dict(axes or {})}
    for seed in range(limit):
        env.reset(seed=seed, options=options)
        if pred(env):
            return seed, options
    raise AssertionError("no seed found")


def tool(name, **args):
    return {"name": name, "args": args}


def play(env, answer, message=None):
    """order_list, order_get(target), then `answer` (with an optional message)."""
    env.step({"tool_calls": [tool("order_list")]})
    env.step({"tool_calls": [tool("order_get", order_id=env.goal.order_id)]})
    action = {"answer": answer}
    if message:
        action["assistant_message"] = message
    *_, info = env.step(action)
    return info["reward"]


def target(env):
    return env.world.order(env.goal.order_id)


# --------------------------------------------------------------------------- acceptance

def test_oracle_solves_every_episode_within_budget(env):
    oracle = OraclePolicy(env)
    for d in DIFFICULTIES:
        for seed in range(20):
            obs, info = run_episode(env, oracle, seed, d)
            reward = info["reward"]
            assert reward["is_correct"], (d, seed, reward)
            assert reward["r_hall"] == 0.0
            assert info["turn"] <= env.axes.T_max
            for m in obs["messages"]:
                assert len(m.get("tool_calls", [])) <= env.axes.B_tool
            names = [c["function"]["name"] for m in obs["messages"] for c in m.get("tool_calls", [])]
            assert names[0] == "order_list" and "order_get" in names


def test_every_status_is_a_target(env):
    statuses = set()
    for seed in range(80):
        env.reset(seed=seed, options={"difficulty": 4})
        statuses.add(target(env).status)
        assert env.goal.status == target(env).status
        if env.goal.eta_asked:
            assert target(env).status in OPEN_STATUSES and target(env).eta is not None
    assert statuses == set(ORDER_STATUSES)


# --------------------------------------------------------------------------- references

def test_p_ref_axis_switches_id_and_indirect_references(env):
    for seed in range(15):
        env.reset(seed=seed, options={"difficulty": 6, "axes": {"p_ref": 0.0, **NO_OMISSION}})
        assert env.goal.order_ref == f"order {env.goal.order_id}"
        assert env.goal.order_id in env.utterances[0].mentioned_ids
        env.reset(seed=seed, options={"difficulty": 6, "axes": {"p_ref": 1.0, **NO_OMISSION}})
        assert env.goal.order_ref.startswith("my order ")
        assert env.goal.order_id not in env.messages[-1]["content"]


def test_indirect_reference_names_exactly_one_order(env):
    kinds = set()
    for seed in range(60):
        env.reset(seed=seed, options={"difficulty": 10, "axes": {"p_ref": 1.0}})
        world, order, ref = env.world, target(env), env.goal.order_ref
        if ref.startswith("my order with "):
            phrase = ref.removeprefix("my order with ")
            assert any(phrase in unique_item_phrases(world, order, ln, "order") for ln in order.lines), ref
            kinds.add("item")
        elif ref.startswith("my order from "):
            same_day = [o for o in world.orders if o.placed_at == order.placed_at]
            assert same_day == [order]
            days = (world.clock.today() - order.placed_at).days
            when = ref.removeprefix("my order from ")
            if days == 1:
                assert when == "yesterday"
            elif days <= 6:
                assert when == order.placed_at.strftime("%A")
            else:
                assert when == f"{order.placed_at.strftime('%B')} {order.placed_at.day}"
            kinds.add("date")
    assert kinds == {"item", "date"}


# --------------------------------------------------------------------------- verifier

def test_right_order_and_status_is_correct(env):
    find(env, lambda e: not e.goal.eta_asked, axes=NO_OMISSION)
    reward = play(env, {"selected_order_id": env.goal.order_id, "order_status": target(env).status})
    assert reward["is_correct"] and reward["details"]["verifier_r_task"] == 1.0


def test_wrong_status_is_not_correct(env):
    find(env, lambda e: not e.goal.eta_asked, axes=NO_OMISSION)
    wrong = next(s for s in ORDER_STATUSES if s != target(env).status)
    reward = play(env, {"selected_order_id": env.goal.order_id, "order_status": wrong})
    assert not reward["is_correct"] and reward["details"]["verifier_r_task"] == 0.0  # 1 of 2 checks


def test_wrong_order_is_not_correct(env):
    find(env, lambda e: len(e.world.orders) >= 2 and not e.goal.eta_asked, axes=NO_OMISSION)
    other = next(o for o in env.world.orders if o.order_id != env.goal.order_id)
    reward = play(env, {"selected_order_id": other.order_id, "order_status": target(env).status})
    assert not reward["is_correct"] and reward["details"]["verifier_r_task"] == -1.0


def test_status_spelling_is_normalised_but_not_loosened(env):
    assert normalise_status(" In Transit ") == "in_transit"
    find(env, lambda e: target(e).status == "in_transit" and not e.goal.eta_asked, axes=NO_OMISSION)
    assert play(env, {"selected_order_id": env.goal.order_id, "order_status": "In transit"})["is_correct"]
    env.reset(seed=env.seed, options={"difficulty": 6, "axes": NO_OMISSION})
    assert not play(env, {"selected_order_id": env.goal.order_id, "order_status": "shipped"})["is_correct"]


def test_eta_is_required_when_asked(env):
    seed, options = find(env, lambda e: e.goal.eta_asked, axes=NO_OMISSION)
    order = target(env)
    base = {"selected_order_id": order.order_id, "order_status": order.status}
    reward = play(env, base)
    assert not reward["is_correct"] and reward["details"]["verifier_r_task"] == float(Fraction(2 * 2, 3) - 1)
    env.reset(seed=seed, options=options)
    wrong = order.eta + dt.timedelta(days=1)
    reward = play(env, base | {"eta": wrong.isoformat()})
    assert not reward["is_correct"] and reward["details"]["checks"]["eta"] is False
    env.reset(seed=seed, options=options)
    assert play(env, base | {"eta": order.eta.isoformat()})["is_correct"]


# --------------------------------------------------------------------------- claims

def test_eta_and_status_claims_in_text_count_as_hallucinations(env):
    seed, options = find(env, lambda e: e.goal.eta_asked, axes=NO_OMISSION)
    order = target(env)
    answer = {"selected_order_id": order.order_id, "order_status": order.status, "eta": order.eta.isoformat()}
    said = order.status.replace("_", " ")
    good = f"Order {order.order_id} is {said} and should arrive on {order.eta.isoformat()}."
    reward = play(env, answer, message=good)
    assert reward["r_hall"] == 0.0 and env.claims_checked == 2 and env.claims_false == 0
    env.reset(seed=seed, options=options)
    late = order.eta + dt.timedelta(days=2)
    bad = f"Order {order.order_id} is expected to arrive on {late.strftime('%B')} {late.day}."
    reward = play(env, answer, message=bad)
    assert env.claims_checked == 1 and env.claims_false == 1 and reward["r_hall"] < 0


# --------------------------------------------------------------------------- shopper reactions

def test_shopper_says_which_order_when_asked(env):
    find(env, lambda e: "order" in e.shopper.omitted, d=8)
    assert env.goal.order_ref not in env.utterances[0].clean_text
    env.step({"tool_calls": [tool("ask_user", question="Which order do you mean?")]})
    assert env.utterances[-1].clean_text == f"It's {env.goal.order_ref}."
    assert 0 in env.shopper.caused_turns


def test_shopper_denies_a_wrong_order_and_confirms_the_right_one(env):
    """With its order id in its own words the shopper confirms it and denies other ids."""
    find(env, lambda e: len(e.world.orders) >= 3, d=8, axes={"p_ref": 0.0, **NO_OMISSION})
    other = next(o for o in env.world.orders if o.order_id != env.goal.order_id)
    env.step({"tool_calls": [tool("order_list")]})
    env.step({"assistant_message": f"Is it order {other.order_id}?"})
    assert env.utterances[-1].clean_text == f"No, that's not the one. I mean {env.goal.order_ref}."
    env.step({"tool_calls": [tool("ask_user", question=f"Is it order {env.goal.order_id}?")]})
    assert env.utterances[-1].clean_text == "Yes, that's the one."
    assert env.shopper.annoyance == 0


def test_shopper_does_not_know_order_ids_it_was_never_given(env):
    """Described by item or date, the shopper cannot confirm ids: the right one and a wrong
    one get the same reply (it does not know order numbers, and repeats its description);
    those turns are the agent's. Its items named by title it does recognise."""
    find(env, lambda e: len(e.world.orders) >= 3, d=8, axes={"p_ref": 1.0, **NO_OMISSION})
    g = env.goal
    assert known_ids(g.order_ref) == frozenset()
    other = next(o for o in env.world.orders if o.order_id != g.order_id)
    env.step({"tool_calls": [tool("order_list")]})
    replies = []
    for order_id in (other.order_id, g.order_id):
        env.step({"assistant_message": f"Is it order {order_id}?"})
        replies.append(env.utterances[-1].clean_text)
    assert replies == [f"Sorry, I don't know order numbers. I mean {g.order_ref}."] * 2
    assert env.shopper.caused_turns == set() and env.shopper.annoyance == 2
    title = target(env).lines[0].title
    env.step({"tool_calls": [tool("ask_user", question=f'Is it the order with the "{title}"?')]})
    assert env.utterances[-1].clean_text in ("Yes, that's the one.", f"It's {g.order_ref}.")


def test_shopper_does_not_reveal_an_omitted_reference_to_an_id_question(env):
    find(env, lambda e: "order" in e.shopper.omitted, d=8, axes={"p_ref": 1.0})
    env.step({"assistant_message": f"Is it order {env.goal.order_id}?"})
    assert env.utterances[-1].clean_text == "Sorry, I don't know order numbers."
    assert "order" in env.shopper.omitted and env.shopper.caused_turns == set()
