"""`ecomrlve serve`: the OpenEnv wire protocol, request limits, isolated concurrent sessions.

The server runs in a thread on 127.0.0.1 (random port); nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
requests = pytest.importorskip("requests")

from ecomrlve.envs import ENV_IDS, env_class, make_env  # noqa: E402


def _available_envs() -> list[str]:
    out = []
    for env_id in ENV_IDS:
        try:
            env_class(env_id)
            out.append(env_id)
        except ImportError:
            pass
    return out


def _canon(obj):
    return json.loads(json.dumps(obj, ensure_ascii=False, default=str))


@pytest.fixture(scope="module")
def server(catalog):
    from ecomrlve.actors.openenv_server import ServerConfig, create_app, start_background

    app = create_app(ServerConfig(env_id="E_CART", difficulty=2, max_body_bytes=64 * 1024), catalog=catalog)
    srv, thread, url = start_background(app)
    yield url
    srv.should_exit = True
    thread.join(timeout=10)


def test_health_metadata_schema_state(server):
    assert requests.get(server + "/health", timeout=10).json() == {"status": "healthy"}
    meta = requests.get(server + "/metadata", timeout=10).json()
    assert meta["name"] == "ecomrlve" and set(meta) == {"name", "description", "readme_content", "version", "author",
                                                        "documentation_url"}
    schema = requests.get(server + "/schema", timeout=10).json()
    assert set(schema) == {"action", "observation", "state"}
    assert {"assistant_message", "tool_calls", "answer"} <= set(schema["action"]["properties"])
    assert {"messages", "tools", "turn", "env_id", "info"} <= set(schema["observation"]["properties"])
    state = requests.get(server + "/state", timeout=10).json()
    assert state["episode_id"] is None and state["step_count"] == 0


def test_http_episode(server, catalog):
    r = requests.post(server + "/reset", json={"seed": 5, "env_id": "E_CART", "difficulty": 1}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reward"] is None and body["done"] is False
    obs = body["observation"]
    eid = obs["episode_id"]
    direct = make_env("E_CART", catalog, difficulty=1)
    direct_obs, _ = direct.reset(seed=5, options={"difficulty": 1})
    assert obs["messages"] == _canon(direct_obs["messages"]) and obs["info"]["seed"] == 5
    action = {"tool_calls": [{"name": "cart_view", "args": {}}], "metadata": {}}
    r = requests.post(server + "/step", json={"action": action, "episode_id": eid}, timeout=30)
    assert r.status_code == 200 and r.json()["observation"]["messages"][-1]["role"] == "tool"
    st = requests.get(server + "/state", params={"episode_id": eid}, timeout=10).json()
    assert st["step_count"] == 1 and st["env_id"] == "E_CART" and st["done"] is False
    # a bad *agent* action is a normal observation: r = -1, done
    r = requests.post(server + "/step", json={"action": {"tool_calls": [{"name": "rm_rf"}]}, "episode_id": eid},
                      timeout=30)
    assert r.status_code == 200
    assert r.json()["reward"] == -1.0 and r.json()["done"] is True
    assert "rm_rf" in r.json()["observation"]["info"]["reward"]["termination_reason"]


@pytest.mark.parametrize("path, body, status, words", [
    ("/reset", b"{not json", 400, "not valid JSON"),
    ("/reset", b"[1, 2]", 422, "JSON object"),
    ("/reset", {"seed": -3}, 422, "seed"),
    ("/reset", {"seed": 1, "colour": "red"}, 422, "colour"),
    ("/reset", {"env_id": "E_NOPE"}, 422, "env_id"),
    ("/reset", {"difficulty": "hard"}, 422, "difficulty"),
    ("/reset", {"axes": {"warp_speed": 9}}, 422, "warp_speed"),
    ("/step", b"", 400, "JSON object is required"),
    ("/step", {"action": {"assistant_message": "hi"}}, 400, "episode_id"),
    ("/step", {"action": {"assistant_message": "hi"}, "episode_id": "nope"}, 404, "nope"),
    ("/step", {"action": "hello", "episode_id": "x"}, 422, "action"),
    ("/step", {"episode_id": "x"}, 422, "action"),
    ("/step", b'{"action": {"assistant_message": "' + b"a" * 70_000 + b'"}}', 413, "too large"),
])
def test_malformed_requests_get_4xx_naming_the_problem(server, path, body, status, words):
    kwargs = {"data": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, bytes) else {"json": body}
    r = requests.post(server + path, timeout=30, **kwargs)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


def test_step_after_done_is_409(server):
    eid = requests.post(server + "/reset", json={"seed": 1}, timeout=30).json()["observation"]["episode_id"]
    r = requests.post(server + "/step", json={"action": {"raw": "oops"}, "episode_id": eid}, timeout=30)
    assert r.json()["reward"] == -1.0 and "malformed JSON" in r.json()["observation"]["info"]["reward"]["termination_reason"]
    r = requests.post(server + "/step", json={"action": {"assistant_message": "hi"}, "episode_id": eid}, timeout=30)
    assert r.status_code == 409 and "reset" in r.json()["detail"]


# --------------------------------------------------------------------------- WebSocket


def test_ws_protocol_errors_keep_the_session(server):
    pytest.importorskip("websockets")
    from websockets.sync.client import connect

    ws_url = server.replace("http://", "ws://") + "/ws"
    with connect(ws_url, open_timeout=10, max_size=None) as ws:
        def ask(raw):
            ws.send(raw if isinstance(raw, str) else json.dumps(raw))
            return json.loads(ws.recv(timeout=30))

        assert ask("{nope")["data"]["code"] == "INVALID_JSON"
        assert ask({"type": "fly"})["data"]["code"] == "UNKNOWN_TYPE"
        err = ask({"type": "step", "data": {"assistant_message": "hi"}})
        assert err["type"] == "error" and "reset" in err["data"]["message"]
        err = ask({"type": "reset", "data": {"seed": "x"}})
        assert err["data"]["code"] == "VALIDATION_ERROR" and "seed" in err["data"]["message"]
        err = ask({"type": "step", "data": [1]})
        assert err["data"]["code"] == "VALIDATION_ERROR"
        err = ask({"type": "reset", "data": {"seed": 1, "episode_id": "a" * 80_000}})
        assert "too large" in err["data"]["message"]
        ok = ask({"type": "reset", "data": {"seed": 3, "env_id": "E_CART"}})
        assert ok["type"] == "observation" and ok["data"]["observation"]["info"]["seed"] == 3
        st = ask({"type": "state"})
        assert st["type"] == "state" and st["data"]["seed"] == 3
        ws.send(json.dumps({"type": "close"}))


def test_ws_capacity(catalog):
    pytest.importorskip("websockets")
    from websockets.sync.client import connect

    from ecomrlve.actors.openenv_server import ServerConfig, create_app, start_background

    srv, thread, url = start_background(create_app(ServerConfig(max_sessions=1), catalog=catalog))
    try:
        ws_url = url.replace("http://", "ws://") + "/ws"
        with connect(ws_url, open_timeout=10) as first:
            first.send(json.dumps({"type": "reset", "data": {"seed": 0}}))
            assert json.loads(first.recv(timeout=30))["type"] == "observation"
            with connect(ws_url, open_timeout=10) as second:
                reply = json.loads(second.recv(timeout=30))
                assert reply["data"]["code"] == "CAPACITY_REACHED"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def test_openenv_client_32_concurrent_sessions_without_cross_talk(server, catalog):
    openenv_core = pytest.importorskip("openenv.core", reason="openenv-core not installed")
    from ecomrlve.policies import HeuristicPolicy

    GenericEnvClient = openenv_core.GenericEnvClient
    envs = _available_envs()
    plans = [{"env_id": envs[i % len(envs)], "difficulty": (i * 3) % 10, "seed": 1000 + i, "bad_at": 1 if i % 8 == 3 else None}
             for i in range(32)]

    async def play(plan):
        actions = []
        async with GenericEnvClient(base_url=server, message_timeout_s=120) as client:
            result = await client.reset(seed=plan["seed"], env_id=plan["env_id"], difficulty=plan["difficulty"])
            assert result.observation["env_id"] == plan["env_id"]
            policy = HeuristicPolicy()
            for step in range(64):
                await asyncio.sleep(0)  # interleave the sessions
                action = {"assistant_message": 42} if step == plan["bad_at"] else policy.act(result.observation)
                actions.append(action)
                result = await client.step(action)
                if result.done:
                    break
            state = await client.state()
        return actions, result, state

    async def main():
        return await asyncio.gather(*(play(p) for p in plans))

    outcomes = asyncio.run(main())
    for plan, (actions, result, state) in zip(plans, outcomes):
        env = make_env(plan["env_id"], catalog, difficulty=plan["difficulty"])
        env.reset(seed=plan["seed"], options={"difficulty": plan["difficulty"]})
        for a in actions:
            _, reward, *_ = env.step(a)
        obs = result.observation
        assert obs["messages"] == _canon(env.messages), plan
        assert obs["info"]["reward"] == _canon(env.reward_info.as_dict()), plan
        assert result.reward == reward and result.done
        assert state["seed"] == plan["seed"] and state["step_count"] == len(actions)
        if plan["bad_at"] is not None:
            assert result.reward == -1.0 and "assistant_message" in obs["info"]["reward"]["termination_reason"]


# --------------------------------------------------------------------------- the play page's API (fast; the browser test is slow)


def test_play_api_sessions_are_isolated(catalog):
    from ecomrlve.actors.openenv_server import start_background
    from ecomrlve.actors.play import COOKIE, PlayConfig, create_play_app

    srv, thread, url = start_background(create_play_app(PlayConfig(), catalog=catalog))
    try:
        page = requests.get(url + "/", timeout=10)
        assert page.status_code == 200 and "<script src=\"/static/play.js\">" in page.text
        assert requests.get(url + "/static/play.js", timeout=10).headers["content-type"].startswith("text/javascript")
        assert requests.get(url + "/static/../play.py", timeout=10).status_code == 404
        alice, bob = requests.Session(), requests.Session()
        envs = alice.get(url + "/api/envs", timeout=30).json()["envs"]
        cart = next(e for e in envs if e["env_id"] == "E_CART")
        assert cart["available"] and set(cart["answer_schema"]["properties"]) == {"done"}  # the page sets env
        assert any(t["function"]["name"] == "catalog_search" for t in cart["tools"])
        a = alice.post(url + "/api/reset", json={"env_id": "E_CART", "difficulty": 2, "seed": 4}, timeout=30).json()
        b = bob.post(url + "/api/reset", json={"env_id": "E_CART", "difficulty": 2, "seed": 9}, timeout=30).json()
        assert alice.cookies[COOKIE] != bob.cookies[COOKIE]
        assert a["seed"] == 4 and b["seed"] == 9 and a["messages"] != b["messages"]
        a2 = alice.post(url + "/api/step", json={"action": {"tool_calls": [{"name": "cart_view", "args": {}}]}},
                        timeout=30).json()
        assert a2["turn"] == 1 and a2["messages"][-1]["role"] == "tool"
        assert bob.get(url + "/api/state", timeout=10).json()["turn"] == 0  # bob's episode did not move
        goal = alice.get(url + "/api/goal", timeout=10).json()
        assert goal["seed"] == 4 and "items" in goal["goal"]
        done = alice.post(url + "/api/step", json={"action": '{"answer": {"done": true}}'}, timeout=30).json()
        assert done["done"] and done["reward"]["termination_reason"] == "answered"
        assert alice.post(url + "/api/step", json={"action": {"assistant_message": "hi"}}, timeout=30).status_code == 409
        for body, status in (({"env_id": "E_NOPE"}, 422), ({"env_id": "E_CART", "difficulty": 99}, 422),
                             ({"env_id": "E_CART", "sneaky": 1}, 422)):
            r = bob.post(url + "/api/reset", json=body, timeout=30)
            assert r.status_code == status and r.json()["detail"], r.text
        assert bob.post(url + "/api/step", data=b"{", timeout=30).status_code == 400
        assert requests.get(url + "/api/state", timeout=10).status_code == 404  # a new browser: no episode
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
