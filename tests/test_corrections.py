"""E_CART's shopper reviews the cart whenever the agent writes to it (or shows the cart with
`cart_view`) once something is in the cart, and names EVERY wrong line in one message: a
wrong variant, a wrong quantity, a missing item, an item it never asked for. No word of the
agent's message decides whether it looks. The answer stays terminal and is scored on the cart."""

from __future__ import annotations

import pytest

from ecomrlve.envs import make_env
from ecomrlve.envs.cart import CART_RIGHT, CART_RIGHT_UNTHANKED

# three items: 3 x electric toothbrush (Black), 2 x hiking backpack (any variant), 1 x trekking pole (Blue,
# its colour omitted at first); no stock-out
SEED, D, AXES = 14827, 8, {"p_missing": 0.3, "p_oos": 0.0}


def _add(env, adds):
    """Put (product, variant, quantity) lines in the cart without a message (no reaction)."""
    calls = [{"name": "cart_add", "args": {"product_id": p, "variant_id": v, "quantity": q}} for p, v, q in adds]
    for i in range(0, len(calls), env.axes.B_tool):
        n_user = len(env.utterances)
        env.step({"tool_calls": calls[i : i + env.axes.B_tool]})
        assert len(env.utterances) == n_user  # tools alone: the shopper stays silent


def _broken(env):
    """Wrong variant of item 0, three backpacks instead of two, no trekking pole, one extra."""
    g, world = env.goal, env.world
    brush, backpack, pole = g.items
    wrong = next(v for v in world.variants_of(brush.product_id) if v.variant_id != brush.variant_id)
    backpack_v = world.variants_of(backpack.product_id)
    extra = g.distractors[0]
    extra_v = world.variants_of(extra)
    env.step({"tool_calls": [{"name": "user_get_visit_history", "args": {}}]})
    _add(env, [(brush.product_id, wrong.variant_id, 3),
               (backpack.product_id, backpack_v[0].variant_id if backpack_v else None, 3),
               (extra, extra_v[0].variant_id if extra_v else None, 1)])
    return wrong


@pytest.fixture
def env(catalog):
    e = make_env("E_CART", catalog)
    e.reset(seed=SEED, options={"difficulty": D, "axes": AXES})
    assert [(it.phrase, it.quantity, it.variant_value) for it in e.goal.items] == [
        ("the Philips Sonicare electric toothbrush", 3, "Black"), ("the Mystery Ranch hiking backpack", 2, None),
        ("the Black Diamond trekking pole", 1, "Blue")]
    assert e.goal.stockout is None and e.shopper.omitted == ["variant:2"]
    return e


EXPECTED = (
    "You added the Blue version of the Philips Sonicare electric toothbrush; I need it in Black. "
    "I need two of the Mystery Ranch hiking backpacks, not three. "
    "I still need the Black Diamond trekking pole in Blue. "
    "I didn't ask for the Oral-B electric toothbrush, please take it out."
)


@pytest.mark.parametrize("action", [
    {"assistant_message": "Done, added it."},  # no word "cart"
    {"assistant_message": "I've updated your cart."},
    {"tool_calls": [{"name": "cart_view", "args": {}}]},  # the cart shown, no message
])
def test_every_wrong_line_is_named_in_one_message(env, action):
    _broken(env)
    n_user, turn = len(env.utterances), env.turn
    caused = set(env.shopper.caused_turns)
    env.step(action)
    new = env.utterances[n_user:]
    assert len(new) == 1  # at most one correction message per agent turn
    utt = new[0]
    assert utt.kind == "correction"
    assert utt.clean_text.endswith(EXPECTED)
    assert utt.clean_text[: -len(EXPECTED)].strip() in ("Not quite.", "Hmm, a few things are off.",
                                                         "That's not quite right.")
    # the omitted pole variant was said out loud: no longer tracked as omitted
    assert "variant:2" in utt.slots and env.shopper.omitted == []
    assert env.shopper.caused_turns == caused and turn not in env.shopper.caused_turns  # the agent's turn
    assert not env.done


def test_a_correct_cart_is_confirmed_and_thanks_need_a_message(env):
    g = env.goal
    env.step({"tool_calls": [{"name": "user_get_visit_history", "args": {}}]})
    pole_v = g.items[2].variant_id
    backpack_v = env.world.variants_of(g.items[1].product_id)
    _add(env, [(g.items[0].product_id, g.items[0].variant_id, 3),
               (g.items[1].product_id, backpack_v[0].variant_id if backpack_v else None, 2),
               (g.items[2].product_id, pole_v, 1)])
    n_user = len(env.utterances)
    env.step({"tool_calls": [{"name": "cart_view", "args": {}}]})
    assert env.utterances[-1].kind == "confirm" and env.utterances[-1].clean_text in CART_RIGHT_UNTHANKED
    env.step({"assistant_message": "All done."})
    assert env.utterances[-1].kind == "confirm" and env.utterances[-1].clean_text in CART_RIGHT
    assert len(env.utterances) == n_user + 2
    obs, reward, terminated, truncated, info = env.step({"answer": {"done": True}})
    assert terminated and info["reward"]["is_correct"]


def test_the_answer_stays_terminal_and_is_scored_on_the_cart(env):
    _broken(env)
    n_user = len(env.utterances)
    obs, reward, terminated, truncated, info = env.step({"assistant_message": "Done.", "answer": {"done": True}})
    assert terminated and not info["reward"]["is_correct"] and len(env.utterances) == n_user
    assert info["reward"]["r_task"] < 1.0


def test_an_empty_cart_is_not_reviewed(env):
    n_user = len(env.utterances)
    env.step({"tool_calls": [{"name": "cart_view", "args": {}}]})
    assert len(env.utterances) == n_user  # nothing shown yet: no review
    env.step({"assistant_message": "Let me look at what you viewed.",
              "tool_calls": [{"name": "user_get_visit_history", "args": {}}]})
    assert len(env.utterances) == n_user


def test_corrections_fix_the_cart_when_followed(env):
    """An agent that does what the correction says ends with a correct cart."""
    wrong = _broken(env)
    g, world = env.goal, env.world
    env.step({"assistant_message": "Done, added it."})
    lines = {(ln.product_id, ln.variant_id): ln.line_id for ln in world.cart}
    brush, backpack, pole = g.items
    backpack_v = world.variants_of(backpack.product_id)
    extra_v = world.variants_of(g.distractors[0])
    fix = [
        {"name": "cart_remove", "args": {"line_id": lines[(brush.product_id, wrong.variant_id)]}},
        {"name": "cart_add", "args": {"product_id": brush.product_id, "variant_id": brush.variant_id, "quantity": 3}},
        {"name": "cart_set_quantity", "args": {
            "line_id": lines[(backpack.product_id, backpack_v[0].variant_id if backpack_v else None)], "quantity": 2}},
        {"name": "cart_add", "args": {"product_id": pole.product_id, "variant_id": pole.variant_id, "quantity": 1}},
        {"name": "cart_remove", "args": {"line_id": lines[(g.distractors[0], extra_v[0].variant_id if extra_v else None)]}},
    ]
    env.step({"tool_calls": fix[: env.axes.B_tool]})
    env.step({"assistant_message": "Fixed everything.", "tool_calls": fix[env.axes.B_tool :]})
    assert env.utterances[-1].kind == "confirm"
    obs, reward, terminated, truncated, info = env.step({"answer": {"done": True}})
    assert info["reward"]["is_correct"]


def test_journey_cart_subtasks_get_the_same_review(catalog):
    env = make_env("E_JOURNEY", catalog)
    for seed in range(40):
        env.reset(seed=seed, options={"difficulty": 4})
        sub = env.subtasks[0]
        if sub.kind == "E_CART" and len(sub.env.goal.items) >= 2 and not sub.env.goal.stockout:
            break
    else:
        pytest.skip("no journey starting with a cart task")
    first = sub.env.goal.items[0]
    v = env.world.variants_of(first.product_id)
    n_user = len(env.utterances)
    env.step({"assistant_message": "Added it.", "tool_calls": [{"name": "cart_add", "args": {
        "product_id": first.product_id, "variant_id": first.variant_id or (v[0].variant_id if v else None),
        "quantity": first.quantity}}]})
    utt = env.utterances[n_user]
    assert utt.kind == "correction" and "I still need" in utt.clean_text
    assert sub.env.goal.items[1].phrase in utt.clean_text or "of " + sub.env.goal.items[1].phrase.split(" ", 1)[1] in utt.clean_text


def test_return_replacement_cart_gets_the_same_review(catalog):
    """E_RETURN's replacement: two units of a product that misses wanted features are both named."""
    env = make_env("E_RETURN", catalog)
    env.reset(seed=2, options={"difficulty": 10})
    rep = env.goal.replacement
    assert rep is not None
    rows = catalog.category_rows(catalog.value("category_l3", rep.row))
    for r in rows[:50]:
        pid = catalog.product_id(int(r))
        vs = env.world.variants_of(pid)
        vid = vs[0].variant_id if vs else None
        if not env.replacement_ok(pid, vid) and env.world.variant_in_stock(pid, vid):
            break
    env.step({"tool_calls": [{"name": "cart_add", "args": {"product_id": pid, "variant_id": vid, "quantity": 2}}]})
    n_user = len(env.utterances)
    env.step({"assistant_message": "I've put a replacement in your cart."})
    assert [u.clean_text for u in env.utterances[n_user:]] == [
        "I only need one replacement. The Logitech keyboard won't work: I need one from Microsoft."]
    assert env.utterances[-1].kind == "correction"


def test_a_wrong_variant_in_a_wrong_quantity_gets_both_named(env):
    g, world = env.goal, env.world
    brush = g.items[0]
    wrong = next(v for v in world.variants_of(brush.product_id) if v.variant_id != brush.variant_id)
    env.step({"tool_calls": [{"name": "user_get_visit_history", "args": {}}]})
    _add(env, [(brush.product_id, wrong.variant_id, 2)])
    env.step({"assistant_message": "Added."})
    text = env.utterances[-1].clean_text
    assert text.endswith("You added the Blue version of the Philips Sonicare electric toothbrush; I need it in Black. "
                         "I need three of the Philips Sonicare electric toothbrushes, not two. "
                         "I still need two of the Mystery Ranch hiking backpacks. "
                         "I still need the Black Diamond trekking pole in Blue.")
