"""Reward integrity: no policy earns more by not doing the task.

Each test is an attack an RL optimiser would find, kept so that it can never work again:
giving up, answering with everything, asking one vague question for every hidden slot,
forcing a journey to drop its requests. The reward rules they check are documented in
`ecomrlve.envs.reward` (bands, efficiency against the oracle's minimal plan) and `ecomrlve.envs.shopper`
(questions reveal what they name; omitted slots leave a visible hint)."""

from __future__ import annotations

import statistics

import pytest

from ecomrlve.envs import ENV_IDS, make_env
from ecomrlve.envs.shopper import names_slot, plural_phrase
from ecomrlve.policies import HeuristicPolicy, OraclePolicy
from ecomrlve.policies.oracle.common import slot_question

DIFFICULTIES = (0, 3, 6, 9, 12)
SEEDS = range(30)
VAGUE = "Tell me everything about what you need."
NESTED_SHOPPER_ENVS = tuple(e for e in ENV_IDS if e != "E_JOURNEY")


def play(env, act, seed: int, d: int, axes: dict | None = None) -> dict:
    obs, _ = env.reset(seed=seed, options={"difficulty": d} | ({"axes": axes} if axes else {}))
    for _ in range(100):
        obs, _, terminated, truncated, info = env.step(act(obs))
        if terminated or truncated:
            return info["reward"]
    raise AssertionError("episode did not end")


def do_nothing(_obs):
    return {"answer": {}}


@pytest.fixture(scope="module", params=ENV_IDS)
def env(request, catalog):
    return make_env(request.param, catalog)


def test_ordering_and_the_same_ceiling_everywhere(env):
    """Per env x d x 30 seeds: every correct episode beats every incorrect one on the same
    task; doing nothing is invalid (-1) and so no higher than any honest failure; it has the
    lowest mean of {do-nothing, heuristic, oracle}; the oracle reaches r_eff = 1 and the same
    r_total (0.90) everywhere."""
    oracle = OraclePolicy(env)
    failures = []
    for d in DIFFICULTIES:
        means = {"oracle": [], "heuristic": [], "do_nothing": []}
        for seed in SEEDS:
            heuristic = HeuristicPolicy()
            runs = {
                "oracle": play(env, oracle.act, seed, d),
                "heuristic": play(env, heuristic.act, seed, d),
                "do_nothing": play(env, do_nothing, seed, d),
            }
            for name, r in runs.items():
                means[name].append(r["r_total"])
            o = runs["oracle"]
            if not (o["is_correct"] and o["r_eff"] == 1.0 and o["r_total"] == pytest.approx(0.9)):
                failures.append(("oracle", d, seed, o))
            if runs["do_nothing"]["r_total"] != -1.0 or runs["do_nothing"]["is_correct"]:
                failures.append(("do_nothing", d, seed, runs["do_nothing"]))
            correct = [r["r_total"] for r in runs.values() if r["is_correct"]]
            incorrect = [r["r_total"] for r in runs.values() if not r["is_correct"]]
            if correct and incorrect and min(correct) <= max(incorrect):
                failures.append(("order", d, seed, runs))
            if any(not r["is_correct"] and r["r_eff"] > -1.0 and r["r_total"] > -1.0 for r in runs.values()):
                failures.append(("efficiency paid on failure", d, seed, runs))
        mean = {k: statistics.fmean(v) for k, v in means.items()}
        if not mean["do_nothing"] <= min(mean.values()):
            failures.append(("do-nothing is not the lowest mean", d, mean))
    assert failures == []


def test_a_cart_stock_out_lands_the_turn_after_the_agent_first_sees_the_product(catalog):
    """E_CART's stock-out is timed by the agent's progress, not the clock: an agent that
    starts late still sees the product in stock first, so it pays the same turns to tell the
    shopper (a fixed turn-1 stock-out let a late agent fold the telling into a turn it needed
    anyway, and a wasted first turn cost nothing)."""
    env = make_env("E_CART", catalog)
    next(s for s in range(200) if env.reset(seed=s, options={"difficulty": 6}) and env.goal.stockout)
    so = env.goal.stockout
    env.step({"assistant_message": "One moment please."})  # turn 0 shows nothing
    assert env.world.scheduled_stockouts == [] and env.world.in_stock(so.row)
    env.step({"tool_calls": [{"name": "user_get_visit_history", "args": {}}]})  # turn 1 shows it
    assert env.world.scheduled_stockouts == [(2, so.row)] and env.world.in_stock(so.row)
    env.step({"tool_calls": [{"name": "cart_view", "args": {}}]})
    assert not env.world.in_stock(so.row)


def test_an_extra_turn_of_the_agents_lowers_efficiency(catalog):
    """The oracle with one wasted turn of its own (a message with nothing to act on) is still
    correct but no longer earns the maximum r_eff."""
    env = make_env("E_CART", catalog)
    checked = 0
    for seed in range(40):
        oracle = OraclePolicy(env)
        first = [True]

        def act(obs):
            if first[0]:
                first[0] = False
                return {"assistant_message": "Let me think about this for a moment."}
            return oracle.act(obs)

        r = play(env, act, seed, 6)
        if r["is_correct"]:
            checked += 1
            assert r["r_eff"] < 1.0 and r["r_total"] < 0.9
    assert checked >= 10


def test_a_vague_question_reveals_nothing_and_is_the_agents_turn(catalog):
    revealed_by_vague = total = 0
    for env_id in NESTED_SHOPPER_ENVS:
        env = make_env(env_id, catalog)
        for seed in range(25):
            env.reset(seed=seed, options={"difficulty": 8, "axes": {"p_missing": 1.0}})
            before = list(env.shopper.omitted)
            if not before:
                continue
            env.step({"tool_calls": [{"name": "ask_user", "args": {"question": VAGUE}}]})
            total += len(before)
            revealed_by_vague += len(before) - len(env.shopper.omitted)
            assert 0 not in env.shopper.caused_turns, (env_id, seed)
    assert total > 50 and revealed_by_vague == 0


def test_a_question_reveals_exactly_the_slots_it_names(catalog):
    """Naming one omitted slot reveals that slot (and any other slot its words name), not
    the rest; the turn is the shopper's. Naming all of them reveals all of them."""
    checked = 0
    for env_id in NESTED_SHOPPER_ENVS:
        env = make_env(env_id, catalog)
        for seed in range(25):
            env.reset(seed=seed, options={"difficulty": 8, "axes": {"p_missing": 1.0}})
            omitted = list(env.shopper.omitted)
            if len(omitted) < 2:
                continue
            slot = env.shopper.slots[omitted[0]]
            question = f"Could you tell me {slot.keywords[0]}?"
            named = {n for n in omitted if names_slot(question.lower(), env.shopper.slots[n])}
            env.step({"tool_calls": [{"name": "ask_user", "args": {"question": question}}]})
            assert set(omitted) - set(env.shopper.omitted) == named, (env_id, seed, question)
            assert set(env.shopper.omitted) == set(omitted) - named
            assert 0 in env.shopper.caused_turns
            checked += 1 if set(env.shopper.omitted) else 0
        env.reset(seed=1, options={"difficulty": 8, "axes": {"p_missing": 1.0}})
        if env.shopper.omitted:
            env.step({"tool_calls": [{"name": "ask_user", "args": {"question": slot_question(env.shopper)}}]})
            assert env.shopper.omitted == []
    assert checked >= 20


def _omission_cases(catalog, difficulties, seeds):
    for env_id in NESTED_SHOPPER_ENVS:
        env = make_env(env_id, catalog)
        for d in difficulties:
            for seed in seeds:
                env.reset(seed=seed, options={"difficulty": d})
                yield env_id, d, seed, env


def _check_visible_omissions(catalog, difficulties, seeds) -> int:
    """Every omitted slot's hint is in the opening (so it never reads as a stated default)
    and names the slot (so the agent can ask for it by the hint's own word)."""
    n = 0
    for env_id, d, seed, env in _omission_cases(catalog, difficulties, seeds):
        opening = env.utterances[0].clean_text
        for name in env.shopper.omitted:
            slot = env.shopper.slots[name]
            assert slot.hint and slot.hint.lower() in opening.lower(), (env_id, d, seed, name, opening)
            if name != "item" and name != "order":  # "something I bought", "my order": asked by "which"
                assert names_slot(slot.hint.lower(), slot), (env_id, name, slot.hint)
            n += 1
    return n


def test_omissions_are_visible(catalog):
    assert _check_visible_omissions(catalog, range(0, 13, 2), range(15)) > 300


@pytest.mark.slow
def test_omissions_are_visible_everywhere(catalog):
    assert _check_visible_omissions(catalog, range(13), range(200)) > 10_000


def test_an_omitted_quantity_never_reads_as_one(catalog):
    env = make_env("E_CART", catalog)
    seen = 0
    for seed in range(300):
        env.reset(seed=seed, options={"difficulty": 9})
        opening = env.utterances[0].clean_text
        for i, item in enumerate(env.goal.items):
            if item.quantity > 1 and f"quantity:{i}" in env.shopper.omitted:
                seen += 1
                assert f"a few of {plural_phrase(item.phrase)}" in opening
    assert seen > 20


def _check_journeys_keep_a_request(catalog, seeds) -> None:
    env = make_env("E_JOURNEY", catalog)
    for seed in seeds:
        env.reset(seed=seed, options={"difficulty": seed % 13, "axes": {"p_switch": 1.0}})
        assert not all(t.drop for t in env.subtasks), seed


def test_no_journey_drops_every_request(catalog):
    _check_journeys_keep_a_request(catalog, range(200))


@pytest.mark.slow
def test_no_journey_of_2000_drops_every_request(catalog):
    _check_journeys_keep_a_request(catalog, range(2000))


def test_the_agent_cannot_force_a_drop(catalog):
    """Starting the return on the first E_RETURN turn (which makes a method change moot) no
    longer drops the request: the change just does not happen."""
    env = make_env("E_JOURNEY", catalog)
    tried = 0
    for seed in range(300):
        env.reset(seed=seed, options={"difficulty": 6, "axes": {"p_switch": 1.0, "B_tool": 3}})
        if env.subtasks[0].kind != "E_RETURN" or env.subtasks[0].drop:
            continue
        g = env.active.env.goal
        env.step({"tool_calls": [
            {"name": "order_list", "args": {}},
            {"name": "return_initiate", "args": {"order_id": g.order_id, "line_id": g.line_id,
                                                 "reason": "other", "method": "mail"}},
        ]})
        assert not env.subtasks[0].dropped
        tried += 1
    assert tried >= 3


def test_answering_with_more_than_k_ids_is_penalised(catalog):
    env = make_env("E_PD", catalog)
    for seed in range(10):
        oracle = OraclePolicy(env)
        obs, _ = env.reset(seed=seed, options={"difficulty": 3})
        while True:
            action = oracle.act(obs)
            answer = action.get("answer")
            if answer:
                break
            obs, *_ = env.step(action)
        ids = answer["recommended_product_ids"]
        padded = ids + [p for p in sorted(env.seen_ids) if env.world.row(p) is not None and p not in ids]
        if len(padded) == len(ids):
            continue
        obs, reward, *_, info = env.step({"answer": {"recommended_product_ids": padded}})
        r = info["reward"]
        extra = len(padded) - env.goal.k
        assert not r["is_correct"] and r["details"]["n_extra"] == extra
        assert r["r_total"] < 0.9 * 0.25  # an incorrect episode's ceiling


def test_the_reward_modules_worked_example(catalog):
    """E_CART at d = 0 (T_max 4, minimal plan 3: history, variants, add + done). The agent adds
    the item and says so; the shopper volunteers "That looks right"; the agent answers done in
    a fourth turn, which is the shopper's: T_eff = 3 = T_min, r_eff = 1, r_total = 0.90. Saying
    the same thing again earns no second free turn."""
    env = make_env("E_CART", catalog)
    for seed in range(50):
        env.reset(seed=seed, options={"difficulty": 0, "axes": {"p_oos": 0.0}})
        item = env.goal.items[0]
        if env.shopper.omitted or item.quantity != 1 or not env.world.variants_of(item.product_id):
            continue
        assert (env.axes.T_max, env._minimal_turns()) == (4, 3)
        variant = item.variant_id or env.world.variants_of(item.product_id)[0].variant_id
        env.step({"tool_calls": [{"name": "user_get_visit_history", "args": {}}]})
        env.step({"tool_calls": [{"name": "catalog_get_variants", "args": {"product_id": item.product_id}}]})
        env.step({"assistant_message": "I've added it.", "tool_calls": [
            {"name": "cart_add", "args": {"product_id": item.product_id, "variant_id": variant, "quantity": 1}}]})
        assert env.utterances[-1].kind == "confirm"
        *_, info = env.step({"answer": {"done": True}})
        r = info["reward"]
        assert r["is_correct"] and r["r_eff"] == 1.0 and r["r_total"] == pytest.approx(0.9)
        return
    raise AssertionError("no plain one-item cart among 50 seeds")


def test_a_repeated_confirmation_is_not_a_free_turn(catalog):
    env = make_env("E_CART", catalog)
    oracle = OraclePolicy(env)
    for seed in range(50):
        obs, _ = env.reset(seed=seed, options={"difficulty": 6, "axes": {"p_oos": 0.0}})
        actions = []
        while True:
            action = oracle.act(obs)
            if action.get("answer"):
                break
            obs, *_ = env.step(action)
            actions.append(action)
        if env.turn + 3 > env.axes.T_max:
            continue
        calls = action.get("tool_calls", [])
        if calls:
            obs, *_ = env.step({"tool_calls": calls, "assistant_message": "Added."})
        if env.utterances[-1].kind != "confirm":
            continue
        env.step({"assistant_message": "Is that everything?"})  # the first confirmation's turn: free
        env.step({"assistant_message": "Anything else?"})  # the same cart confirmed again: the agent's
        *_, info = env.step({"answer": {"done": True}})
        r = info["reward"]
        assert r["is_correct"] and r["r_eff"] < 1.0
        return
    raise AssertionError("no episode with room for the check")


def test_asking_one_open_slot_a_turn_excuses_only_one_turn(catalog):
    """One question could name every open slot, so an agent that asks them one turn at a time
    (to make each working turn look shopper-caused) is excused one turn, not one per slot."""
    checked = 0
    for env_id in NESTED_SHOPPER_ENVS:
        env = make_env(env_id, catalog)
        for seed in range(25):
            env.reset(seed=seed, options={"difficulty": 8, "axes": {"p_missing": 1.0, "T_max": 12}})
            if len(env.shopper.omitted) < 2:
                continue
            for turn, name in enumerate(list(env.shopper.omitted)[:2]):
                slot = env.shopper.slots[name]
                if name not in env.shopper.omitted:
                    break
                env.step({"tool_calls": [{"name": "ask_user", "args": {"question": f"Which {slot.keywords[0]}?"}}]})
            else:
                assert env.shopper.caused_turns & {0, 1} == {0}, (env_id, seed, env.shopper.caused_turns)
                checked += 1
    assert checked >= 20
