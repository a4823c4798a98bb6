"""The one rollout path (`ecomrlve.actors.rollout`): `Episode`, the loops and the record, and
the shopper's wording injected into the env (`ecomrlve.envs.shopper.Phraser`). No Ray."""

from __future__ import annotations

import asyncio
import json

import pytest

from ecomrlve.actors.rollout import Episode, play, play_async
from ecomrlve.actors.run_dir import TRAJECTORY_SCHEMA
from ecomrlve.actors.shopper_service import LocalShopperClient, register_backend
from ecomrlve.envs import make_env
from ecomrlve.envs.shopper import TEMPLATE_PHRASER
from ecomrlve.policies import HeuristicPolicy, OraclePolicy

TASK = {"env_id": "E_CART", "difficulty": 4, "seed": 21, "task_id": 3, "episode_id": 3001}


class _Bracket:
    """A phrasing backend that changes the text: every message becomes ``<<text>>``."""

    def __init__(self):
        self.contexts = []

    def phrase(self, utterance, context):
        self.contexts.append(context)
        return f"<<{utterance.text}>>"


class _Watching:
    """The oracle, remembering the shopper messages each observation showed it."""

    def __init__(self, env):
        self.oracle, self.seen = OraclePolicy(env), []

    def act(self, obs):
        self.seen.append([m["content"] for m in obs["messages"] if m["role"] == "user"])
        return self.oracle.act(obs)


def _users(messages):
    return [m["content"] for m in messages if m["role"] == "user"]


def test_the_env_writes_the_phrased_text_and_the_agent_sees_it(catalog):
    phraser = _Bracket()
    episode = Episode(TASK, catalog=catalog, phraser=phraser)
    watchers = []
    play([episode], lambda e: watchers.append(_Watching(e.env)) or watchers[-1])
    env = episode.env
    users = _users(env.messages)
    assert len(users) >= 2 and all(u.startswith("<<") and u.endswith(">>") for u in users)
    # before every agent step, the transcript already held the phrased shopper messages
    assert watchers[0].seen[0] == users[:1]
    assert all(all(u.startswith("<<") for u in seen) for seen in watchers[0].seen)
    # the recorded utterances hold the words said; the clean text is the template's
    assert [u.text for u in env.utterances] == users
    assert all(u.clean_text and not u.clean_text.startswith("<<") for u in env.utterances)
    rec = episode.record("oracle", "test")
    assert _users(json.loads(rec["messages"])) == users
    assert rec["is_correct"] and rec["termination_reason"] == "answered"
    # the context: the episode's identity, agent turns so far (0 for the opening), typo rate, slots
    ctx = phraser.contexts
    assert (ctx[0].env_id, ctx[0].seed, ctx[0].difficulty, ctx[0].turn) == ("E_CART", 21, 4, 0)
    assert [c.turn for c in ctx] == sorted(set(c.turn for c in ctx)) and 1 <= ctx[-1].turn <= rec["turns"]
    assert ctx[0].noise == env.axes.p_noise and ctx[-1].slots is env.shopper.slots and ctx[-1].slots
    assert episode.timing["shopper_ms"] > 0


def test_template_phrasing_is_byte_identical(catalog):
    plain = Episode(TASK, catalog=catalog)
    templ = Episode(TASK, catalog=catalog, phraser=TEMPLATE_PHRASER)
    for e in (plain, templ):
        play([e], lambda e: OraclePolicy(e.env))
    assert plain.env.transcript() == templ.env.transcript()
    env = make_env("E_CART", catalog)
    env.reset(seed=21, options={"difficulty": 4})
    oracle = OraclePolicy(env)
    while not env.done:
        env.step(oracle.act(env._obs()))
    assert env.transcript() == plain.env.transcript()


def test_the_shopper_service_request_carries_the_check_context(catalog):
    requests = []

    class Recording:
        name = "recording"

        def phrase(self, request):
            requests.append(request)
            return request["text"].upper()

    register_backend("recording", lambda **_: Recording())
    episode = Episode(TASK, catalog=catalog, phraser=LocalShopperClient("recording").for_episode(TASK["task_id"]))
    play([episode], lambda e: OraclePolicy(e.env))
    first = requests[0]
    utt = episode.env.utterances[0]
    assert {k: first[k] for k in ("env_id", "turn", "episode_id", "difficulty", "seed", "kind")} == {
        "env_id": "E_CART", "turn": 0, "episode_id": 3, "difficulty": 4, "seed": 21, "kind": utt.kind}
    assert first["clean_text"] == utt.clean_text and first["slots"] == list(utt.slots)
    assert first["mentioned_ids"] == list(utt.mentioned_ids) and first["noise"] == episode.env.axes.p_noise
    assert first["slot_phrases"] and all(isinstance(v, str) for v in first["slot_phrases"].values())
    assert _users(episode.env.messages) == [r["text"].upper() for r in requests]


class _Boom(RuntimeError):
    pass


class _Raising:
    def __init__(self, after):
        self.after, self.n = after, 0

    def act(self, obs):
        self.n += 1
        if self.n > self.after:
            raise _Boom("policy bug")
        return {"assistant_message": "Let me look into that."}


def test_a_policy_exception_is_a_recorded_failure(catalog):
    episode = Episode(TASK, catalog=catalog)
    play([episode], lambda e: _Raising(after=1))
    rec = episode.record("x", 0)
    assert rec["termination_reason"] == "error: _Boom: policy bug" and not rec["is_correct"]
    assert rec["r_total"] == -1.0 and len(json.loads(rec["actions"])) == 1
    assert set(rec) == set(TRAJECTORY_SCHEMA.names)
    bad = Episode({**TASK, "env_id": "E_NOPE"}, catalog=catalog)
    play([bad], lambda e: _Raising(after=9))
    assert bad.record("x", 0)["termination_reason"].startswith("error: ValueError: unknown env_id 'E_NOPE'")


def test_an_episode_that_never_ends_fails_at_max_steps(catalog):
    episode = Episode({**TASK, "axes": {"T_max": 30}}, catalog=catalog, max_steps=3)

    class Silent:
        def act(self, obs):
            return {"tool_calls": [{"name": "cart_view", "args": {}}]}

    play([episode], lambda e: Silent())
    assert episode.error == "episode did not end within 3 steps" and len(episode.actions) == 3


class _Batch:
    """`act_batch` over heuristics, counting calls."""

    def __init__(self, fail=False):
        self.calls, self.fail, self.policies = [], fail, {}

    def act_batch(self, observations, keys):
        self.calls.append(list(keys))
        if self.fail:
            raise _Boom("engine down")
        return [self.policies.setdefault(k, HeuristicPolicy()).act(o) for o, k in zip(observations, keys)]


def test_play_batches_the_live_episodes_each_turn(catalog):
    tasks = [{**TASK, "seed": s, "episode_id": s} for s in range(4)]
    policy = _Batch()
    episodes = [Episode(t, catalog=catalog) for t in tasks]
    play(episodes, policy)
    assert policy.calls[0] == [0, 1, 2, 3] and len(policy.calls) == max(len(e.actions) for e in episodes)
    # the same episodes one at a time, with per-episode heuristics: identical transcripts
    for t, e in zip(tasks, episodes):
        alone = Episode(t, catalog=catalog)
        play([alone], lambda _: HeuristicPolicy())
        assert alone.env.transcript() == e.env.transcript()
    failing = [Episode(t, catalog=catalog) for t in tasks]
    play(failing, _Batch(fail=True))
    assert all(e.error == "_Boom: engine down" and e.actions == [] for e in failing)


def test_play_async_awaits_a_coroutine_policy_and_splits_the_time(catalog):
    class Remote:
        def __init__(self, env):
            self.oracle = OraclePolicy(env)

        async def act(self, obs):
            await asyncio.sleep(0.002)
            return self.oracle.act(obs)

    async def run(fn, *args):
        return fn(*args)

    episode = Episode(TASK, catalog=catalog)
    asyncio.run(play_async(episode, lambda e: Remote(e.env), run))
    assert episode.record("llm", 1)["is_correct"]
    assert episode.timing["policy_ms"] >= 2.0 * len(episode.actions) and episode.timing["env_ms"] > 0


@pytest.mark.parametrize("env_id", ["E_JOURNEY", "E_RETURN"])
def test_phrased_text_reaches_every_env_message(catalog, env_id):
    episode = Episode({**TASK, "env_id": env_id, "difficulty": 6}, catalog=catalog, phraser=_Bracket())
    play([episode], lambda e: OraclePolicy(e.env))
    users = _users(episode.env.messages)
    assert users and all(u.startswith("<<") for u in users)
