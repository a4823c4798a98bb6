"""World invariants: write tools change only what they name, and episodes never read the
wall clock or a global random generator.

The property test drives random sequences of the write tools (cart_add, cart_remove,
cart_set_quantity, return_initiate, return_exchange) over an E_RETURN world with several
orders, snapshots the world before and after each call, and checks the diff: other cart
lines, orders, earlier returns, stock, variants, policy and clock stay exactly as they were.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import random
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecomrlve.envs import make_env
from ecomrlve.envs.tools import MAX_QUANTITY, TOOLS, ToolContext, return_eligibility, validate_call
from ecomrlve.envs.world import RETURN_METHODS, RETURN_REASONS
from ecomrlve.policies import OraclePolicy

from conftest import run_episode

BOGUS = "zz-no-such-id"
N_PRODUCTS = 8  # product pool size; index N_PRODUCTS means a bogus product id
N_CART = 3  # cart-line index range; >= len(cart) means a bogus line id
N_LINES = 14  # order-line index range; >= number of lines means a bogus (order, line)

OPS = st.one_of(
    st.tuples(st.just("cart_add"), st.integers(0, N_PRODUCTS), st.integers(-1, 3), st.integers(1, 3)),
    st.tuples(st.just("cart_remove"), st.integers(0, N_CART)),
    st.tuples(st.just("cart_set_quantity"), st.integers(0, N_CART), st.integers(0, 4)),
    st.tuples(st.just("return_initiate"), st.integers(0, N_LINES), st.sampled_from(RETURN_REASONS),
              st.sampled_from(RETURN_METHODS)),
    st.tuples(st.just("return_exchange"), st.integers(0, N_LINES), st.integers(0, N_PRODUCTS), st.integers(-1, 3)),
)


# --------------------------------------------------------------------------- helpers

def snapshot(world) -> dict:
    return {
        "cart": [dataclasses.astuple(line) for line in world.cart],
        "orders": [dataclasses.asdict(o) for o in world.orders],
        "returns": [dataclasses.asdict(r) for r in world.returns],
        "stock": dict(world.stock),
        "variant_stock": dict(world.variant_stock),
        "variants": {pid: list(vs) for pid, vs in world.variants.items()},
        "policy": copy.deepcopy(world.policy),
        "clock": (world.clock.start, world.clock.turn),
        "tier": world.membership_tier,
        "visits": list(world.visit_history),
        "scheduled": list(world.scheduled_stockouts),
    }


def product_pool(env) -> list[str]:
    """Products of the orders (some with variants), in-stock catalog rows and one sold-out row."""
    world, cat = env.world, env.catalog
    pool = list(dict.fromkeys(ln.product_id for o in world.orders for ln in o.lines))[: N_PRODUCTS - 3]
    stock = cat.numeric("stock")
    rows = [r for r in range(0, len(cat), max(1, len(cat) // 50)) if stock[r] > 0]
    pool += [cat.product_id(r) for r in rows[:3]]
    pool = pool[:N_PRODUCTS]
    world.set_stock(world.row(pool[-1]), 0)  # one sold-out product
    return pool


def variant_of(world, pid: str, k: int) -> str | None:
    """-1: no variant; 0-2: one of the product's variants (none when it has none); 3: bogus."""
    if k < 0:
        return None
    if k >= 3:
        return f"{pid}-v9"
    variants = world.variants_of(pid) if world.row(pid) is not None else []
    return variants[k % len(variants)].variant_id if variants else None


def build_call(env, pool, op) -> tuple[str, dict]:
    world = env.world
    name = op[0]
    lines = [(o.order_id, ln.line_id) for o in world.orders for ln in o.lines]
    if name == "cart_add":
        pid = pool[op[1]] if op[1] < len(pool) else BOGUS
        return name, {"product_id": pid, "variant_id": variant_of(world, pid, op[2]), "quantity": op[3]}
    if name in ("cart_remove", "cart_set_quantity"):
        line_id = world.cart[op[1]].line_id if op[1] < len(world.cart) else "L999"
        return name, {"line_id": line_id} | ({"quantity": op[2]} if name == "cart_set_quantity" else {})
    order_id, line_id = lines[op[1]] if op[1] < len(lines) else ("W0000000", "OL999")
    if name == "return_initiate":
        return name, {"order_id": order_id, "line_id": line_id, "reason": op[2], "method": op[3]}
    pid = pool[op[2]] if op[2] < len(pool) else BOGUS
    return name, {"order_id": order_id, "line_id": line_id, "new_product_id": pid,
                  "new_variant_id": variant_of(world, pid, op[3])}


def eligible_now(world, order_id: str, line_id: str) -> bool:
    order = world.order(order_id)
    line = order.line(line_id) if order else None
    return bool(line and return_eligibility(world, order, line)["eligible"])


def check_diff(world, name: str, args: dict, result: dict, before: dict, after: dict, was_eligible: bool) -> None:
    # never touched by any write tool
    for key in ("orders", "stock", "variant_stock", "policy", "clock", "tier", "visits", "scheduled"):
        assert after[key] == before[key], (name, args, key)
    for pid, variants in before["variants"].items():  # variants are synthesized once, then stable
        assert after["variants"][pid] == variants
    b_cart, a_cart = before["cart"], after["cart"]
    b_ret, a_ret = before["returns"], after["returns"]
    ok = bool(result.get("ok"))
    assert ok != ("error" in result), result

    if name.startswith("cart_"):
        assert a_ret == b_ret, (name, args)
    if name == "cart_add":
        key = (args["product_id"], args["variant_id"])
        if not ok:
            assert a_cart == b_cart
            return
        same = [i for i, line in enumerate(b_cart) if (line[1], line[2]) == key]
        if same:
            i = same[0]
            want = list(b_cart)
            want[i] = b_cart[i][:3] + (min(MAX_QUANTITY, b_cart[i][3] + args["quantity"]),) + b_cart[i][4:]
            assert a_cart == want
        else:
            assert a_cart[:-1] == b_cart and len(a_cart) == len(b_cart) + 1
            new = a_cart[-1]
            assert (new[1], new[2], new[3]) == (*key, args["quantity"])
            assert new[0] not in {line[0] for line in b_cart}
            row = world.row(args["product_id"])
            assert new[4] == float(world.catalog.numeric("price")[row])
    elif name == "cart_remove":
        assert a_cart == [line for line in b_cart if line[0] != args["line_id"]]
        assert ok == any(line[0] == args["line_id"] for line in b_cart)
    elif name == "cart_set_quantity":
        assert ok == any(line[0] == args["line_id"] for line in b_cart)
        want = []
        for line in b_cart:
            if line[0] != args["line_id"]:
                want.append(line)
            elif args["quantity"] > 0:
                want.append(line[:3] + (args["quantity"],) + line[4:])
        assert a_cart == want
    else:  # returns
        assert a_cart == b_cart, (name, args)
        assert a_ret[: len(b_ret)] == b_ret
        if not ok:
            assert a_ret == b_ret
            return
        assert was_eligible, (name, args)
        assert len(a_ret) == len(b_ret) + 1
        new = a_ret[-1]
        assert (new["order_id"], new["line_id"]) == (args["order_id"], args["line_id"])
        if name == "return_initiate":
            assert (new["kind"], new["reason"], new["method"]) == ("refund", args["reason"], args["method"])
        else:
            assert new["kind"] == "exchange"
            assert (new["new_product_id"], new["new_variant_id"]) == (args["new_product_id"], args["new_variant_id"])
            assert world.variant_in_stock(args["new_product_id"], args["new_variant_id"])
        if name == "return_initiate":
            assert was_eligible


# --------------------------------------------------------------------------- the property

@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 40), ops=st.lists(OPS, min_size=1, max_size=25))
def test_write_tools_change_only_what_they_name(catalog, seed, ops):
    env = make_env("E_RETURN", catalog)
    env.reset(seed=seed, options={"difficulty": 10, "axes": {"H": 4, "p_edge": 0.5}})
    world = env.world
    pool = product_pool(env)
    ctx = ToolContext(world, env.axes, env.rand, 0)
    for pid in pool[-3:-1]:  # start from a cart with lines in it (in-stock catalog rows)
        args = validate_call("cart_add", {"product_id": pid, "variant_id": variant_of(world, pid, 0)}, tuple(TOOLS))
        assert TOOLS["cart_add"].fn(ctx, args)["ok"]
    for op in ops:
        name, raw = build_call(env, pool, op)
        args = validate_call(name, raw, tuple(TOOLS))
        was_eligible = "order_id" in raw and eligible_now(world, raw["order_id"], raw["line_id"])
        before = snapshot(world)
        result = TOOLS[name].fn(ctx, args)
        after = snapshot(world)
        check_diff(world, name, raw, result, before, after, was_eligible)
        if name == "return_initiate" and was_eligible:
            assert result.get("ok")  # an eligible line is always accepted


def test_a_line_is_returned_at_most_once(catalog):
    env = make_env("E_RETURN", catalog)
    for seed in range(50):
        env.reset(seed=seed, options={"difficulty": 6, "axes": {"p_edge": 0.0}})
        if env.goal.eligible:
            break
    g, ctx = env.goal, ToolContext(env.world, env.axes, env.rand, 0)
    args = validate_call("return_initiate", {"order_id": g.order_id, "line_id": g.line_id, "reason": g.reason,
                                             "method": g.method}, tuple(TOOLS))
    assert TOOLS["return_initiate"].fn(ctx, args)["ok"]
    second = TOOLS["return_initiate"].fn(ctx, args)
    assert "already initiated" in second["error"] and len(env.world.returns) == 1


# --------------------------------------------------------------------------- no wall clock, no global RNG

def _boom(*args, **kwargs):
    raise AssertionError("an episode read the wall clock or a global random generator")


class _NoNowDatetime(datetime.datetime):
    now = classmethod(_boom)
    utcnow = classmethod(_boom)
    today = classmethod(_boom)


class _NoTodayDate(datetime.date):
    today = classmethod(_boom)


def _seeded_default_rng(seed=None, *args, **kwargs):
    if seed is None:
        _boom()
    return _REAL_DEFAULT_RNG(seed, *args, **kwargs)


_REAL_DEFAULT_RNG = np.random.default_rng


@pytest.mark.parametrize("env_id", ["E_RETURN", "E_STATUS", "E_CART"])
def test_episodes_never_read_the_wall_clock_or_global_rngs(catalog, monkeypatch, env_id):
    env = make_env(env_id, catalog)
    oracle = OraclePolicy(env)
    expected = []
    for seed, d in ((0, 0), (1, 6), (2, 12)):  # reference run, outside the trap
        run_episode(env, oracle, seed, d)
        expected.append(env.transcript())
    with monkeypatch.context() as m:
        m.setattr(datetime, "datetime", _NoNowDatetime)
        m.setattr(datetime, "date", _NoTodayDate)
        for name in ("time", "time_ns", "localtime", "ctime"):
            m.setattr(time, name, _boom)
        for name in ("random", "randint", "randrange", "choice", "choices", "shuffle", "sample", "uniform",
                     "getrandbits", "seed"):
            m.setattr(random, name, _boom)
        for name in ("random", "rand", "randn", "randint", "choice", "shuffle", "permutation", "uniform",
                     "normal", "seed", "random_sample"):
            m.setattr(np.random, name, _boom)
        m.setattr(np.random, "default_rng", _seeded_default_rng)
        with pytest.raises(AssertionError):
            datetime.datetime.now()
        with pytest.raises(AssertionError):
            time.time()
        got = []
        for seed, d in ((0, 0), (1, 6), (2, 12)):
            run_episode(env, oracle, seed, d)
            got.append(env.transcript())
        # the agent asking for the time gets the simulated clock
        if "datetime_now" in env.tools:
            env.reset(seed=4, options={"difficulty": 3})
            obs, *_ = env.step({"tool_calls": [{"name": "datetime_now", "args": {}}]})
            assert env.world.clock.now().isoformat() in obs["messages"][-1]["content"]
    assert got == expected
