"""Every difficulty axis changes what it claims to change (`envs/difficulty.py`), and
`options={"axes": {...}}` varies one axis alone."""

from __future__ import annotations

import pytest

from ecomrlve.envs import AXIS_NAMES, axes_for, make_env


def test_axis_formulas_at_reference_difficulties():
    a0, a6, a12 = axes_for(0), axes_for(6), axes_for(12)
    assert (a0.m, a6.m, a12.m) == (2, 5, 8)
    assert (a0.k, a6.k, a12.k) == (3, 5, 7)
    assert (a0.T_max, a6.T_max, a12.T_max) == (4, 7, 10)
    assert (round(a0.p_missing, 2), round(a6.p_missing, 2), round(a12.p_missing, 2)) == (0.05, 0.69, 0.8)
    assert (a0.p_noise, a6.p_noise, a12.p_noise) == (0.0, 0.06, 0.12)
    assert (round(a0.p_switch, 2), round(a6.p_switch, 2), round(a12.p_switch, 2)) == (0.05, 0.37, 0.58)
    assert (a0.top_k, a6.top_k, a12.top_k) == (200, 140, 80)
    assert (a0.eps_rank, a6.eps_rank, a12.eps_rank) == (0.0, 0.12, 0.24)
    assert (a0.p_oos, a6.p_oos, a12.p_oos) == (0.0, 0.30000000000000004, 0.5)
    assert (a0.H, a6.H, a12.H) == (1, 4, 7)
    assert (a0.B_branch, a6.B_branch, a12.B_branch) == (1, 3, 5)
    assert (a0.B_tool, a6.B_tool, a12.B_tool) == (1, 4, 7)
    assert (a0.cart_items, a6.cart_items, a12.cart_items) == (1, 3, 5)
    assert (round(a0.p_variant, 3), round(a6.p_variant, 3), round(a12.p_variant, 4)) == (0.209, 0.935, 0.9987)
    assert (a0.p_quantity, a6.p_quantity, a12.p_quantity) == (0.0, 0.5, 0.5)


def test_axis_override_changes_only_that_axis():
    base, changed = axes_for(6), axes_for(6, {"p_noise": 0.0})
    assert changed.p_noise == 0.0
    diff = [n for n in AXIS_NAMES if getattr(base, n) != getattr(changed, n)]
    assert diff == ["p_noise"]


@pytest.mark.parametrize("overrides,needle", [({"warp": 1}, "unknown axis 'warp'"), ({"p_noise": 2.0}, "p_noise")])
def test_bad_axis_override_names_the_axis(overrides, needle):
    with pytest.raises(ValueError, match=needle):
        axes_for(3, overrides)


def test_bad_difficulty_is_rejected():
    with pytest.raises(ValueError, match="difficulty"):
        axes_for(-1)
    with pytest.raises(ValueError, match="difficulty"):
        axes_for("3")  # type: ignore[arg-type]


def _cart(catalog, seed, d, **axes):
    env = make_env("E_CART", catalog)
    env.reset(seed=seed, options={"difficulty": d, "axes": axes})
    return env


def _search(env, query, top_k=200):
    obs, *_ = env.step({"tool_calls": [{"name": "catalog_search", "args": {"query": query, "top_k": top_k}}]})
    import json

    return json.loads(obs["messages"][-1]["content"])["results"]


def test_T_max_bounds_the_episode(catalog):
    for t_max in (2, 5):
        env = _cart(catalog, 0, 3, T_max=t_max)
        for _ in range(t_max):
            *_, terminated, truncated, info = env.step({"tool_calls": [{"name": "cart_view", "args": {}}]})
        assert truncated and info["turn"] == t_max


def test_B_tool_caps_tool_calls_per_turn(catalog):
    calls = {"tool_calls": [{"name": "cart_view", "args": {}}] * 3}
    for budget, refused in ((1, 2), (3, 0)):
        env = _cart(catalog, 0, 3, B_tool=budget)
        obs, *_ = env.step(calls)
        results = [m["content"] for m in obs["messages"] if m["role"] == "tool"]
        assert sum("tool budget exceeded" in r for r in results) == refused


def test_p_missing_omits_slots(catalog):
    none = [len(_cart(catalog, s, 9, p_missing=0.0).shopper.omitted) for s in range(30)]
    every = [_cart(catalog, s, 9, p_missing=1.0) for s in range(30)]
    assert sum(none) == 0
    # with p_missing = 1 every variant / quantity > 1 slot is omitted
    for env in every:
        details = [n for n in env.shopper.slots if n.startswith("variant:") or
                   (n.startswith("quantity:") and env.goal.items[int(n.split(":")[1])].quantity > 1)]
        assert sorted(env.shopper.omitted) == sorted(details)
    assert sum(len(e.shopper.omitted) for e in every) > 0


def test_p_noise_adds_typos(catalog):
    clean = _cart(catalog, 4, 6, p_noise=0.0)
    noisy = _cart(catalog, 4, 6, p_noise=0.12)
    assert clean.utterances[0].text == clean.utterances[0].clean_text
    assert noisy.utterances[0].clean_text == clean.utterances[0].clean_text  # same plan, own noise stream
    assert noisy.utterances[0].text != noisy.utterances[0].clean_text


def test_top_k_is_the_retrieval_depth(catalog):
    deep = _cart(catalog, 1, 0, top_k=200)
    shallow = _cart(catalog, 1, 0, top_k=20)
    assert len(_search(deep, "black")) > 20
    assert len(_search(shallow, "black")) == 20


def test_eps_rank_promotes_distractors(catalog):
    clean = [r["product_id"] for r in _search(_cart(catalog, 2, 0, eps_rank=0.0), "stainless steel", 50)]
    noisy = [r["product_id"] for r in _search(_cart(catalog, 2, 0, eps_rank=0.4), "stainless steel", 50)]
    assert len(clean) == len(noisy) == 50
    assert clean != noisy
    assert clean[0] in noisy  # results are promoted, not deleted at the top


def test_p_oos_schedules_stockouts(catalog):
    never = [_cart(catalog, s, 6, p_oos=0.0).goal.stockout for s in range(30)]
    always = [_cart(catalog, s, 6, p_oos=1.0).goal.stockout for s in range(30)]
    assert never.count(None) == 30
    assert sum(s is not None for s in always) >= 20


def test_cart_axes_change_the_goal(catalog):
    small = _cart(catalog, 0, 12, cart_items=1)
    big = _cart(catalog, 0, 12, cart_items=4)
    assert (len(small.goal.items), len(big.goal.items)) == (1, 4)
    no_qty = [it.quantity for s in range(20) for it in _cart(catalog, s, 9, p_quantity=0.0).goal.items]
    all_qty = [it.quantity for s in range(20) for it in _cart(catalog, s, 9, p_quantity=1.0).goal.items]
    assert set(no_qty) == {1} and min(all_qty) >= 2


def test_p_switch_makes_the_shopper_change_its_mind(catalog):
    from ecomrlve.policies import OraclePolicy

    env = make_env("E_JOURNEY", catalog)
    counts = {}
    for p in (0.0, 1.0):
        switched = 0
        for seed in range(8):
            obs, _ = env.reset(seed=seed, options={"difficulty": 4, "axes": {"p_switch": p}})
            oracle, done = OraclePolicy(env), False
            while not done:
                obs, _, term, trunc, info = env.step(oracle.act(obs))
                done = term or trunc
            assert info["reward"]["is_correct"], info["reward"]  # the updated goal stays solvable
            switched += sum(t["switched"] or t["dropped"] for t in info["reward"]["details"]["subtasks"])
        counts[p] = switched
    assert counts[0.0] == 0
    assert counts[1.0] >= 8  # every journey changes its mind at least once
