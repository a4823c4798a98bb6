"""Hallucination is never diluted: the claim checker parses a sentence right or leaves it
alone (a hand-written battery with expected verdicts), true statements never move r_hall,
and every id an answer or a write tool uses must have been shown."""

from __future__ import annotations

import json

import pytest

from ecomrlve.envs import ENV_IDS, make_env
from ecomrlve.envs.adversarial import CLAIM_BATTERY, claim_battery_env, claim_verdict
from ecomrlve.envs.claims import sentence_verdicts, sentences
from ecomrlve.policies import OraclePolicy

from conftest import run_episode


@pytest.fixture(scope="module")
def battery(catalog):
    return claim_battery_env(catalog)


def test_battery_has_every_kind_of_sentence():
    kinds = [expected for _, expected in CLAIM_BATTERY]
    assert len(CLAIM_BATTERY) >= 40
    assert kinds.count("true") >= 15 and kinds.count("false") >= 10 and kinds.count("unscored") >= 15


@pytest.mark.parametrize("template,expected", CLAIM_BATTERY, ids=[f"{i}:{t[:48]}" for i, (t, _) in enumerate(CLAIM_BATTERY)])
def test_claim_battery(battery, template, expected):
    env, values = battery
    assert claim_verdict(env, template.format(**values)) == expected


def test_sentences_split_on_terminators_but_keep_prices():
    assert sentences("A costs $12.50. B is in stock; C is sold out! Is D? E") == [
        "A costs $12.50.", "B is in stock;", "C is sold out!", "Is D?", "E"]


def test_a_message_is_scored_sentence_by_sentence(battery):
    env, v = battery
    text = f"{v['IN']} is in stock. {v['OUT']} is in stock. Is {v['IN']} in stock? {v['IN']} costs {v['P']}."
    assert [verdicts for _, verdicts in sentence_verdicts(text, env.world, env.seen_ids)] == [[True], [False], [],
                                                                                                [True]]


def _false_claim_episode(env, padding: int):
    """E_PD seed 3 d 3: search, then answer with the first result, one false price claim
    about it and `padding` true stock sentences."""
    env.reset(seed=3, options={"difficulty": 3})
    obs, *_ = env.step({"tool_calls": [{"name": "catalog_search", "args": {"query": env.goal.leaf}}]})
    results = json.loads(obs["messages"][-1]["content"])["results"]
    first = results[0]
    in_stock = [r["product_id"] for r in results if r["in_stock"]]
    pad = " ".join(f"{in_stock[i % len(in_stock)]} is in stock." for i in range(padding))
    lie = f"{first['product_id']} costs ${first['price'] + 1:.2f}."
    obs, reward, term, trunc, info = env.step({"assistant_message": f"{pad} {lie}".strip(),
                                              "answer": {"recommended_product_ids": [first["product_id"]]}})
    assert term
    return info["reward"], env


def test_true_sentences_never_dilute_r_hall(catalog):
    env = make_env("E_PD", catalog)
    bare, _ = _false_claim_episode(env, 0)
    padded, env = _false_claim_episode(env, 150)
    assert env.claims_checked == 151 and env.claims_false == 1
    assert bare["r_hall"] == padded["r_hall"] == -0.5  # one false claim, no hallucinated id
    assert bare["r_total"] == padded["r_total"]


def test_honest_oracle_has_zero_r_hall(catalog):
    for env_id in ENV_IDS:
        env = make_env(env_id, catalog)
        oracle = OraclePolicy(env)
        for d in (0, 6, 12):
            for seed in range(2):
                _, info = run_episode(env, oracle, seed, d)
                assert info["reward"]["r_hall"] == 0.0, (env_id, d, seed)


def test_unseen_selected_line_id_is_hallucinated(catalog):
    env = make_env("E_RETURN", catalog)
    env.reset(seed=0, options={"difficulty": 0})
    order = env.world.orders[0]
    env.seen_ids.add(order.order_id)  # the order was shown, its lines never were
    _, _, _, _, info = env.step({"answer": {"selected_order_id": order.order_id,
                                            "selected_line_id": order.lines[0].line_id, "eligible": False}})
    assert env.used_ids == {order.order_id: False, order.lines[0].line_id: True}
    assert info["reward"]["r_hall"] == -0.5  # one of the two ids used was never shown


def test_write_tools_count_unseen_line_ids(catalog):
    env = make_env("E_RETURN", catalog)
    env.reset(seed=0, options={"difficulty": 0})
    order = env.world.orders[0]
    env.seen_ids.add(order.order_id)
    env.step({"tool_calls": [{"name": "return_initiate", "args": {
        "order_id": order.order_id, "line_id": order.lines[0].line_id, "reason": "damaged", "method": "mail"}}]})
    assert env.used_ids == {order.order_id: False, order.lines[0].line_id: True}


def test_each_ungrounded_answer_counts_as_hallucinated(catalog):
    env = make_env("E_CART", catalog)
    env.reset(seed=0, options={"difficulty": 0})
    env.ungrounded.append("an answer no retrieved fact supports")
    _, _, _, _, info = env.step({"answer": {"done": True}})
    assert info["reward"]["r_hall"] == -1.0  # a whole answer made up: the most hallucinated there is
    env.reset(seed=0, options={"difficulty": 0})
    assert env.ungrounded == []
    _, _, _, _, info = env.step({"answer": {"done": True}})
    assert info["reward"]["r_hall"] == 0.0


def test_journey_sub_tasks_share_the_ungrounded_list(catalog):
    env = make_env("E_JOURNEY", catalog)
    env.reset(seed=0, options={"difficulty": 6})
    assert all(task.env.ungrounded is env.ungrounded for task in env.subtasks)


def test_a_stock_out_the_agent_has_not_been_shown_is_not_held_against_it(catalog):
    env = make_env("E_PD", catalog)
    env.reset(seed=0, options={"difficulty": 0})
    row = next(r for r in range(len(catalog)) if env.world.in_stock(r))
    pid = catalog.product_id(row)
    env.seen_ids.add(pid)
    env.world.scheduled_stockouts = [(1, row)]
    env.step({"assistant_message": f"{pid} is in stock."})  # turn 0: true
    assert (env.claims_checked, env.claims_false) == (1, 0)
    env.step({"assistant_message": f"{pid} is in stock."})  # turn 1: sold out as the turn began, unseen
    assert (env.claims_checked, env.claims_false) == (1, 0)
    env.step({"assistant_message": f"{pid} is in stock."})  # turn 2: stale, scored false
    assert (env.claims_checked, env.claims_false) == (2, 1)
