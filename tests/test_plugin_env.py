"""A ninth environment is one module: a toy environment, defined entirely in this file and
registered with `register_env`, runs through `make_env`, `gymnasium.make`, a collection,
the oracle, the heuristic, a journey, the curriculum and the OpenEnv server, with no edit to
the package.

The toy, E_TOY_PRICE: the shopper names `toy_items` products by id (its own difficulty
axis, 1 + d//4, at most 3) and asks what they cost together. Tools: `catalog_get_product`.
Answer: `total_price` (its own answer field), correct within half a cent.
"""

from __future__ import annotations

import json
import math

import pytest
from pydantic import BaseModel, Field

from ecomrlve.envs import ENV_IDS, InvalidAction, ShopEnv, make_env, parse_action, resolve_envs
from ecomrlve.envs.difficulty import AxisSpec, axes_for
from ecomrlve.envs.registry import EnvSpec, register_env, unregister_env
from ecomrlve.envs.reward import TaskScore
from ecomrlve.policies import HeuristicPolicy, OraclePolicy
from ecomrlve.scheduler.curriculum import Curriculum, CurriculumConfig

from conftest import run_episode

TOY = "E_TOY_PRICE"
BUILTIN = ("E_PD", "E_SUB", "E_CART", "E_RETURN", "E_STATUS", "E_POLICY", "E_BUNDLE", "E_JOURNEY")


# --------------------------------------------------------------------------- the toy environment
class ToyAnswer(BaseModel):
    """The answer fields the toy's verifier reads."""

    total_price: float | None = Field(None, ge=0, description=f"{TOY}: the products' total price.")


class ToyPriceEnv(ShopEnv):
    env_id = TOY
    tools = ("catalog_get_product",)
    answer_fields = ("total_price",)
    task_brief = "The shopper names products by id; tell them what the products cost together (total_price)."

    def _generate(self):
        rng = self.rand("goal")
        rows = rng.choice(len(self.catalog), size=self.axes.toy_items, replace=False)
        self.goal = [self.catalog.product_id(int(r)) for r in rows]
        self.plan_turns = math.ceil(len(self.goal) / self.axes.B_tool) + 1
        named = " and ".join(f"({pid})" for pid in self.goal)
        return self.shopper.say(f"Hi, what do the products {named} cost in total?", "opening", ids=tuple(self.goal))

    def _score(self, answer):
        total = round(sum(self.catalog.product(self.world.row(p))["price"] for p in self.goal), 2)
        ok = answer is not None and answer.total_price is not None and abs(answer.total_price - total) < 0.005
        return TaskScore(1.0 if ok else -1.0, ok, {"total": total})


class ToyPlanner:
    """The oracle: read each product (within the tool budget), then answer the sum."""

    def __init__(self, env):
        self.env = env
        self.turns_planned = 0
        self.todo = list(env.goal)

    def next_action(self) -> dict:
        if self.todo:
            taken, self.todo = self.todo[: self.env.axes.B_tool], self.todo[self.env.axes.B_tool:]
            return {"tool_calls": [{"name": "catalog_get_product", "args": {"product_id": p}} for p in taken]}
        total = sum(self.env.catalog.product(self.env.world.row(p))["price"] for p in self.env.goal)
        return {"answer": {"total_price": round(total, 2)}}


def toy_strategy(t) -> dict:
    """The heuristic: the ids in parentheses of the shopper's words -> read them -> sum."""
    ids = [w.strip("()?,.") for text in t.user_texts() for w in text.split() if w.startswith("(p")]
    got = {r["product_id"]: r["price"] for r in t.results("catalog_get_product") if "price" in r}
    todo = [i for i in ids if i not in got]
    if todo:
        return {"tool_calls": [{"name": "catalog_get_product", "args": {"product_id": i}}
                               for i in todo[: t.tool_budget]]}
    return {"answer": {"total_price": round(sum(got.values()), 2)}}


TOY_SPEC = EnvSpec(
    TOY, ToyPriceEnv, answer_model=ToyAnswer, planner=ToyPlanner, heuristic=toy_strategy,
    intent_words=("cost in total",), intent_rank=50,
    axes=(AxisSpec("toy_items", lambda d: min(3, 1 + d // 4), "products priced: min(3, 1 + d//4)", int, 1, 3),),
    journey=True, journey_rank=50,
)


@pytest.fixture
def toy():
    """The toy registered for one test, unregistered after it (other tests see the eight)."""
    register_env(TOY_SPEC)
    yield TOY
    unregister_env(TOY)
    assert tuple(ENV_IDS) == BUILTIN


# --------------------------------------------------------------------------- the tests
def test_registered_everywhere_then_gone(toy):
    assert tuple(ENV_IDS) == BUILTIN + (TOY,) and TOY in ENV_IDS
    assert resolve_envs([TOY, "C1"]) == (TOY, "E_CART")
    assert (axes_for(0).toy_items, axes_for(12).toy_items) == (1, 3)
    assert axes_for(6, {"toy_items": 3}).toy_items == 3
    assert parse_action({"answer": {"total_price": 1.5}}).answer.total_price == 1.5
    with pytest.raises(ValueError, match="already registered"):
        register_env(TOY_SPEC)
    with pytest.raises(ValueError, match="env_class: ToyPriceEnv.env_id is not 'E_OTHER'"):
        register_env(EnvSpec("E_OTHER", ToyPriceEnv))
    with pytest.raises(ValueError, match="built in"):
        unregister_env("E_CART")


def test_unregistered_toy_leaves_no_trace():
    """Outside the fixture (and after it) the toy's id, answer field and axis are unknown."""
    assert tuple(ENV_IDS) == BUILTIN
    with pytest.raises(InvalidAction, match="total_price"):
        parse_action({"answer": {"total_price": 1.5}})
    with pytest.raises(ValueError, match="unknown axis 'toy_items'"):
        axes_for(0, {"toy_items": 1})
    with pytest.raises(ValueError, match=TOY):
        make_env(TOY, None)


def test_make_env_and_oracle(toy, catalog):
    env = make_env(toy, catalog)
    oracle = OraclePolicy(env)
    turns = []
    for d in (0, 4, 8, 12):
        for seed in range(5):
            obs, info = run_episode(env, oracle, seed, d)
            assert info["reward"]["is_correct"], (d, seed, info["reward"])
            assert info["reward"]["r_eff"] == 1.0
            turns.append(obs["turn"])
    assert len(env.goal) == 3  # d=12: three products
    assert turns[:5] == [2] * 5 and turns[-5:] == [2] * 5  # B_tool at d=12 is 7: one read turn


def test_the_env_checks_its_own_answer_field(toy, catalog):
    env = make_env(toy, catalog)
    env.reset(seed=3)
    _, reward, terminated, _, info = env.step({"answer": {"done": True}})
    assert (reward, terminated) == (-1.0, True)
    assert info["reward"]["termination_reason"] == f"invalid_action: answer.done is not an answer field of {TOY}"


def test_heuristic_uses_the_declared_strategy(toy, catalog):
    env = make_env(toy, catalog)
    wins = [run_episode(env, HeuristicPolicy(), seed, 0)[1]["reward"]["is_correct"] for seed in range(5)]
    assert wins == [True] * 5


def test_gymnasium_make(toy, catalog):
    gym = pytest.importorskip("gymnasium")
    from ecomrlve.envs import gym_api

    genv = gym.make(f"ecomrlve/{toy}-v0", catalog=catalog, difficulty=0)
    obs_text, info = genv.reset(seed=1)
    direct, _ = make_env(toy, catalog).reset(seed=1)
    assert gym_api.decode_observation(obs_text) == json.loads(json.dumps(direct))
    policy = HeuristicPolicy()
    for _ in range(8):
        obs_text, reward, term, trunc, info = genv.step(json.dumps(policy.act(gym_api.decode_observation(obs_text))))
        if term or trunc:
            break
    assert info["reward"]["is_correct"] and reward > 0


def test_gymnasium_id_goes_with_the_env():
    gym = pytest.importorskip("gymnasium")
    import ecomrlve.envs.gym_api  # noqa: F401

    assert f"ecomrlve/{TOY}-v0" not in gym.registry


def _journey_with_toy_first(catalog) -> tuple:
    env = make_env("E_JOURNEY", catalog)
    for seed in range(40):
        env.reset(seed=seed, options={"difficulty": 0})
        if env.subtasks[0].kind == TOY:
            return env, seed
    raise AssertionError("no journey of seeds 0..39 starts with the toy")


def test_journey_chains_the_toy(toy, catalog):
    env, seed = _journey_with_toy_first(catalog)
    assert env.kinds[-1] == TOY and "total_price" in env.answer_fields
    obs, info = run_episode(env, OraclePolicy(env), seed, 0)
    assert info["reward"]["is_correct"] and len(env.subtasks) == 2
    assert [t.score.is_correct for t in env.subtasks] == [True, True]
    obs, info = run_episode(env, HeuristicPolicy(), seed, 0)
    first_answer = next(m["answer"] for m in obs["messages"] if m["role"] == "assistant" and "answer" in m)
    assert first_answer["env"] == TOY and env.subtasks[0].score.is_correct


def test_curriculum_schedules_the_toy(toy, catalog):
    cur = Curriculum([toy, "E_CART"], CurriculumConfig(tau_num=4), seed=0)
    env = {e: make_env(e, catalog) for e in (toy, "E_CART")}
    leased = 0
    while cur.window(toy) == (0, 0):
        tasks = cur.lease(4)
        leased += len(tasks)
        outcomes = []
        for task in tasks:
            e = env[task.env_id]
            _, info = run_episode(e, OraclePolicy(e), task.seed, task.difficulty)
            outcomes.append({"env_id": task.env_id, "difficulty": task.difficulty,
                             "is_correct": info["reward"]["is_correct"], "task_id": task.task_id})
        assert cur.report(outcomes) == len(tasks)
        assert leased <= 40
    assert cur.window(toy) == (0, 1)
    assert cur.summary()[toy]["successes"] == cur.summary()[toy]["episodes"] > 0


def test_openenv_server_serves_the_toy(toy, catalog):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    requests = pytest.importorskip("requests")
    from ecomrlve.actors.openenv_server import ServerConfig, create_app, start_background

    app = create_app(ServerConfig(env_id=toy, difficulty=4), catalog=catalog)
    srv, thread, url = start_background(app)
    try:
        body = requests.post(url + "/reset", json={"seed": 2, "env_id": toy, "difficulty": 4}, timeout=30).json()
        obs, policy = body["observation"], HeuristicPolicy()
        assert (obs["env_id"], obs["turn_budget"], obs["tool_budget"], obs["turns_left"]) == (toy, 6, 3, 6)
        for _ in range(8):
            body = requests.post(url + "/step", json={"action": policy.act(obs), "episode_id": obs["episode_id"]},
                                 timeout=30).json()
            obs = body["observation"]
            if body["done"]:
                break
        assert body["done"] and obs["info"]["reward"]["is_correct"] and body["reward"] > 0
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
