"""``ecomrlve serve``: the environments behind an OpenEnv-compatible HTTP/WebSocket server.

    ecomrlve serve --port 8000 --env E_CART --difficulty 3

    from openenv.core import GenericEnvClient          # pip install openenv-core
    async with GenericEnvClient(base_url="http://127.0.0.1:8000") as env:
        r = await env.reset(seed=7, env_id="E_PD", difficulty=6)
        r = await env.step({"tool_calls": [{"name": "catalog_search", "args": {"query": "usb-c charger"}}]})
        r.observation["messages"], r.reward, r.done

Wire protocol (the one of openenv-core 0.3's ``HTTPEnvServer``; we follow it without
depending on the package, whose install pulls gradio, fastmcp, openai and ~110 packages):

- ``WS /ws``: one session (one episode state, isolated) per connection. Client messages
  ``{"type": "reset", "data": {...}}``, ``{"type": "step", "data": <action>}``,
  ``{"type": "state"}``, ``{"type": "close"}``; replies ``{"type": "observation", "data":
  {"observation": {...}, "reward": r, "done": b}}``, ``{"type": "state", "data": {...}}`` or
  ``{"type": "error", "data": {"message": ..., "code": ...}}`` (codes: INVALID_JSON,
  UNKNOWN_TYPE, VALIDATION_ERROR, EXECUTION_ERROR, CAPACITY_REACHED, SESSION_ERROR). An error
  never closes the session, except CAPACITY_REACHED.
- ``POST /reset`` (body: ResetRequest), ``POST /step`` (body ``{"action": {...}}``), ``GET
  /state``, ``GET /health``, ``GET /schema``, ``GET /metadata``. OpenEnv's HTTP reset/step
  are stateless (a fresh env per request); ours keep the episode: /reset returns
  ``observation.episode_id`` and /step, /state take ``episode_id`` to continue it (LRU of
  ``--max-http-episodes``). Without ``episode_id`` /step answers 400 naming it.

Reset parameters: ``seed`` (int >= 0), ``episode_id``, ``env_id`` (default: the server's
``--env``), ``difficulty`` (default ``--difficulty``), ``axes`` (axis overrides). Unknown
parameters are rejected with a 422 / VALIDATION_ERROR naming them.

Actions: the data of a step is the agent's action object (docs/architecture.md, "Agent action"); a ``metadata`` key
(which OpenEnv's typed Action base class adds) is dropped; ``{"raw": "<text>"}`` sends the
text as is (the env parses it: malformed JSON is an invalid action). A bad *agent* action is
a normal observation with reward -1 and done (the env contract); a bad *request* (body not
JSON, not an object, too large, unknown field, step before reset) is a 4xx / error reply
naming the problem, never a 500.

Observation: the env's observation (``messages``, ``tools``, ``turn``, ``env_id``) plus
``info`` (env_id, difficulty, seed, turn; ``reward`` breakdown at the end), ``terminated``,
``truncated``, ``episode_id``. ``reward`` is None after reset, the step reward after a step.

Limits: request bodies and WebSocket messages at most ``--max-body-bytes`` (default 256 KiB;
413 / VALIDATION_ERROR above), at most ``--max-sessions`` WebSocket sessions at once.
"""

import asyncio
import json
import secrets
import threading
import time
from collections import OrderedDict
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from ecomrlve.catalog_service.catalog import CatalogDir
from ecomrlve.envs import ENV_IDS, make_env
from ecomrlve.envs.actions import Action as AgentAction
from ecomrlve.envs.difficulty import MAX_DIFFICULTY

from .config import add_command, arg, require_extra
from .evaluate import DEFAULT_CATALOG_SIZE, jsonable, load_catalog
from .rollout import Episode

DEFAULT_PORT = 8000
MAX_BODY_BYTES = 256 * 1024
DEFAULT_MAX_SESSIONS = 256
DEFAULT_MAX_HTTP_EPISODES = 1024

__all__ = ["create_app", "EnvServer", "ServerConfig", "add_serve_commands", "start_background", "RequestError",
           "read_json", "install_error_handlers"]


# --------------------------------------------------------------------------- models (OpenEnv shapes)


class ResetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="Episode seed (non-negative).")
    episode_id: str | None = Field(None, min_length=1, max_length=255, description="Custom episode identifier.")
    env_id: str | None = Field(None, description=f"Environment: one of {', '.join(ENV_IDS)}.")
    difficulty: int | None = Field(None, ge=0, le=MAX_DIFFICULTY, description="Difficulty d.")
    axes: dict[str, Any] | None = Field(None, description="Axis overrides, e.g. {\"T_max\": 6}.")


class StepBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: dict[str, Any] = Field(description="The agent's action object (or {\"raw\": \"<text>\"}).")
    episode_id: str | None = Field(None, min_length=1, max_length=255, description="From /reset (HTTP only).")
    timeout_s: float | None = Field(None, gt=0, description="Accepted for OpenEnv compatibility; ignored.")
    request_id: str | None = Field(None, max_length=255, description="Accepted for OpenEnv compatibility.")


class ObservationModel(BaseModel):
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    turn: int
    env_id: str
    turn_budget: int
    tool_budget: int
    turns_left: int
    info: dict[str, Any]
    terminated: bool
    truncated: bool
    episode_id: str | None = None


class StateModel(BaseModel):
    model_config = ConfigDict(extra="allow")

    episode_id: str | None = None
    step_count: int = 0
    env_id: str | None = None
    difficulty: int | None = None
    seed: int | None = None
    turn: int | None = None
    done: bool | None = None
    reward: dict[str, Any] | None = None


class RequestError(Exception):
    """A client error: HTTP status + OpenEnv WebSocket error code + message."""

    def __init__(self, message: str, status: int = 422, code: str = "VALIDATION_ERROR"):
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


def _validation_message(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{prefix}{loc}: {err['msg']}" if loc else f"{prefix or 'body'}: {err['msg']}")
    return "; ".join(parts)


async def read_json(request, limit: int, allow_empty: bool = False) -> Any:
    """The JSON object body of a Starlette request, at most `limit` bytes; `RequestError`
    (400 / 413 / 422, naming the problem) otherwise."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RequestError("invalid Content-Length header", status=400) from None
        if size > limit:
            raise RequestError(f"body too large: {size} bytes > {limit}", status=413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestError(f"body too large: more than {limit} bytes", status=413)
    if not body.strip():
        if allow_empty:
            return {}
        raise RequestError("body: a JSON object is required", status=400)
    try:
        data = json.loads(bytes(body))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"body is not valid JSON: {exc}", status=400, code="INVALID_JSON") from None
    if not isinstance(data, dict):
        raise RequestError(f"body must be a JSON object, got {type(data).__name__}", status=422)
    return data


def install_error_handlers(app) -> None:
    """JSON errors ``{"detail": message, "code": ...}``: RequestError, request validation, HTTP."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(RequestError)
    async def _request_error(request, exc: RequestError):
        return JSONResponse(status_code=exc.status, content={"detail": exc.message, "code": exc.code})

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc: RequestValidationError):
        msg = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse(status_code=422, content={"detail": msg, "code": "VALIDATION_ERROR"})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail})


# --------------------------------------------------------------------------- sessions


class Session:
    """One isolated episode state (its own env objects; the catalog is shared read-only)."""

    def __init__(self, server: "EnvServer", episode_id: str | None = None):
        self.server = server
        self.env = None  # kept across resets of the same env_id
        self.episode: Episode | None = None
        self.episode_id = episode_id
        self.step_count = 0
        self.lock = threading.Lock()
        self.last_used = time.monotonic()

    def reset(self, data: dict) -> dict:
        try:
            params = ResetParams.model_validate(data)
        except ValidationError as exc:
            raise RequestError(_validation_message(exc)) from None
        env_id = params.env_id or self.server.config.env_id
        if env_id not in ENV_IDS:
            raise RequestError(f"env_id: unknown environment {env_id!r}; known: {', '.join(ENV_IDS)}")
        difficulty = params.difficulty if params.difficulty is not None else self.server.config.difficulty
        options: dict[str, Any] = {"difficulty": difficulty}
        if params.axes:
            options["axes"] = params.axes
        with self.lock:
            if self.env is None or self.env.env_id != env_id:
                try:
                    self.env = make_env(env_id, self.server.catalog, difficulty=difficulty)
                except ImportError as exc:
                    raise RequestError(f"env_id: {env_id} is not available in this installation ({exc})",
                                       status=503, code="EXECUTION_ERROR") from None
            seed = params.seed if params.seed is not None else self.server.next_seed()
            episode = Episode({"env_id": env_id, "seed": seed, "difficulty": difficulty, "axes": params.axes},
                              env=self.env)
            if episode.reset() is None:
                if isinstance(episode.exception, ValueError):
                    raise RequestError(str(episode.exception))
                raise RequestError(f"reset failed: {episode.error}", status=500, code="EXECUTION_ERROR")
            self.episode = episode
            self.episode_id = params.episode_id or self.episode_id or secrets.token_urlsafe(12)
            self.step_count = 0
            self.last_used = time.monotonic()
            return self._payload(episode.obs, None, False, False, episode.info)

    def step(self, action: Any) -> dict:
        if not isinstance(action, dict):
            raise RequestError(f"action must be a JSON object, got {type(action).__name__}")
        action = {k: v for k, v in action.items() if k != "metadata"}
        if set(action) == {"raw"}:
            if not isinstance(action["raw"], str):
                raise RequestError("action.raw must be a string")
            action = action["raw"]
        with self.lock:
            if self.episode is None:
                raise RequestError("no episode: send reset first", status=409, code="EXECUTION_ERROR")
            if self.episode.done:
                raise RequestError("episode is over: send reset to start a new one", status=409,
                                   code="EXECUTION_ERROR")
            out = self.episode.step(action)
            if out is None:
                raise RequestError(f"step failed: {self.episode.error}", status=500, code="EXECUTION_ERROR")
            obs, reward, terminated, truncated, info = out
            self.step_count += 1
            self.last_used = time.monotonic()
            return self._payload(obs, float(reward), terminated, truncated, info)

    def state(self) -> dict:
        with self.lock:
            env = self.env
            if env is None:
                return StateModel(episode_id=self.episode_id, step_count=0).model_dump()
            reward = env.reward_info.as_dict() if getattr(env, "reward_info", None) is not None else None
            return jsonable(StateModel(episode_id=self.episode_id, step_count=self.step_count, env_id=env.env_id,
                                       difficulty=env.difficulty, seed=env.seed, turn=env.turn, done=env.done,
                                       reward=reward).model_dump())

    def _payload(self, obs, reward, terminated, truncated, info) -> dict:
        observation = {**obs, "info": info, "terminated": bool(terminated), "truncated": bool(truncated),
                       "episode_id": self.episode_id}
        return jsonable({"observation": observation, "reward": reward, "done": bool(terminated or truncated)})


def known_env(env_id: str) -> str:
    """`env_id` when it names a registered environment, else ValueError listing the known ones."""
    if env_id not in ENV_IDS:
        raise ValueError(f"unknown environment {env_id!r}; known: {', '.join(ENV_IDS)}")
    return env_id


class ServerConfig(BaseModel):
    """``ecomrlve serve``: the server's defaults, catalog and limits, and where it listens."""

    model_config = ConfigDict(extra="forbid")

    host: str = arg("127.0.0.1", "interface (0.0.0.0 exposes it)")
    port: int = arg(DEFAULT_PORT, "port", ge=0, le=65535)
    env_id: Annotated[str, AfterValidator(known_env)] = arg("E_CART", "default environment of a reset", flag="--env")
    difficulty: int = arg(0, "default difficulty of a reset", ge=0, le=MAX_DIFFICULTY)
    catalog_size: int = arg(DEFAULT_CATALOG_SIZE, "products of the synthetic catalog", ge=1)
    catalog_seed: int = arg(0, "synthetic catalog seed")
    catalog_dir: CatalogDir = arg(None, "a catalog directory from `ecomrlve catalog build`", flag="--catalog")
    max_sessions: int = arg(DEFAULT_MAX_SESSIONS, "concurrent WebSocket sessions", ge=1)
    max_http_episodes: int = arg(DEFAULT_MAX_HTTP_EPISODES, "HTTP episodes kept (LRU)", ge=1)
    max_body_bytes: int = arg(MAX_BODY_BYTES, "largest request body / WebSocket message", ge=1024)


class EnvServer:
    """Sessions over one shared catalog."""

    def __init__(self, config: ServerConfig, catalog=None):
        self.config = config
        self.catalog = catalog if catalog is not None else load_catalog(config.catalog_dir, config.catalog_size,
                                                                         config.catalog_seed)
        self.ws_sessions = 0
        self.http: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()
        self._seed = 0

    def next_seed(self) -> int:
        with self._lock:
            self._seed += 1
            return self._seed - 1

    def http_session(self, episode_id: str | None, create: bool = False) -> Session:
        with self._lock:
            if episode_id is not None and episode_id in self.http:
                self.http.move_to_end(episode_id)
                return self.http[episode_id]
            if not create:
                if episode_id is None:
                    raise RequestError("episode_id: required over HTTP (take it from the /reset observation), or "
                                       "use the WebSocket /ws for a session", status=400)
                raise RequestError(f"episode_id: no episode {episode_id!r} (expired or never reset)", status=404,
                                   code="SESSION_ERROR")
            sess = Session(self, episode_id)
            return sess

    def remember(self, sess: Session) -> None:
        with self._lock:
            self.http[sess.episode_id] = sess
            self.http.move_to_end(sess.episode_id)
            while len(self.http) > self.config.max_http_episodes:
                self.http.popitem(last=False)

    def metadata(self) -> dict:
        try:
            from importlib.metadata import version

            ver = version("ecomrlve")
        except Exception:  # noqa: BLE001
            ver = None
        return {"name": "ecomrlve", "description": "Adaptive, verifiable e-commerce shopping environments "
                f"({', '.join(ENV_IDS)}); default {self.config.env_id} at d={self.config.difficulty}.",
                "readme_content": None, "version": ver, "author": "ecomrlve", "documentation_url": None}

    @staticmethod
    def schema() -> dict:
        action = AgentAction.model_json_schema()
        action.setdefault("description", "One agent action per step (docs/architecture.md); or {\"raw\": \"<JSON text>\"}.")
        return {"action": action, "observation": ObservationModel.model_json_schema(),
                "state": StateModel.model_json_schema()}


# --------------------------------------------------------------------------- app


def create_app(config: ServerConfig | None = None, catalog=None):
    """The FastAPI app (OpenEnv wire protocol)."""
    from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    server = EnvServer(config or ServerConfig(), catalog)
    limit = server.config.max_body_bytes
    app = FastAPI(title="ecomrlve OpenEnv server", version=server.metadata()["version"] or "0",
                  description="OpenEnv-compatible HTTP/WebSocket server for the ecomrlve environments.")
    app.state.server = server

    install_error_handlers(app)

    @app.post("/reset", summary="Reset: start an episode (returns observation.episode_id)")
    async def reset(request: Request):
        data = await read_json(request, limit, allow_empty=True)
        sess = server.http_session(data.get("episode_id") if isinstance(data.get("episode_id"), str) else None,
                                   create=True)
        payload = await run_in_threadpool(sess.reset, data)
        server.remember(sess)
        return JSONResponse(payload)

    @app.post("/step", summary="Step: one agent action in the episode episode_id")
    async def step(request: Request):
        data = await read_json(request, limit)
        try:
            body = StepBody.model_validate(data)
        except ValidationError as exc:
            raise RequestError(_validation_message(exc)) from None
        sess = server.http_session(body.episode_id)
        payload = await run_in_threadpool(sess.step, body.action)
        return JSONResponse(payload)

    @app.get("/state", summary="State of the episode episode_id (an empty state without it)")
    async def state(episode_id: str | None = None):
        if episode_id is None:
            return JSONResponse(StateModel().model_dump())
        return JSONResponse(server.http_session(episode_id).state())

    @app.get("/health")
    async def health():
        return {"status": "healthy"}

    @app.get("/metadata")
    async def metadata():
        return server.metadata()

    @app.get("/schema")
    async def schema():
        return server.schema()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket):
        await websocket.accept()

        async def send_error(message: str, code: str, **extra) -> None:
            await websocket.send_text(json.dumps({"type": "error", "data": {"message": message, "code": code, **extra}}))

        with server._lock:
            full = server.ws_sessions >= server.config.max_sessions
            if not full:
                server.ws_sessions += 1
        if full:
            await send_error(f"server at capacity: {server.config.max_sessions} sessions", "CAPACITY_REACHED",
                             active_sessions=server.ws_sessions, max_sessions=server.config.max_sessions)
            await websocket.close(code=1013)
            return
        sess = Session(server)
        try:
            while True:
                msg = await websocket.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                raw = msg.get("text")
                if raw is None:
                    raw_bytes = msg.get("bytes") or b""
                    if len(raw_bytes) > limit:
                        await send_error(f"message too large: {len(raw_bytes)} bytes > {limit}", "VALIDATION_ERROR")
                        continue
                    try:
                        raw = raw_bytes.decode("utf-8")
                    except UnicodeDecodeError:
                        await send_error("message is not UTF-8 text", "INVALID_JSON")
                        continue
                if len(raw) > limit:
                    await send_error(f"message too large: {len(raw)} characters > {limit}", "VALIDATION_ERROR")
                    continue
                try:
                    message = json.loads(raw)
                except json.JSONDecodeError as exc:
                    await send_error(f"Invalid JSON: {exc}", "INVALID_JSON")
                    continue
                if not isinstance(message, dict):
                    await send_error(f"message must be a JSON object, got {type(message).__name__}", "VALIDATION_ERROR")
                    continue
                kind = message.get("type", "")
                extra = sorted(set(message) - {"type", "data"})
                try:
                    if extra:
                        raise RequestError(f"unknown message field(s): {', '.join(extra)}")
                    if kind == "reset":
                        data = message.get("data", {})
                        if data is None:
                            data = {}
                        if not isinstance(data, dict):
                            raise RequestError(f"data must be an object, got {type(data).__name__}")
                        reply = {"type": "observation", "data": await run_in_threadpool(sess.reset, data)}
                    elif kind == "step":
                        if "data" not in message:
                            raise RequestError("data: the action is required")
                        reply = {"type": "observation", "data": await run_in_threadpool(sess.step, message["data"])}
                    elif kind == "state":
                        reply = {"type": "state", "data": await run_in_threadpool(sess.state)}
                    elif kind == "close":
                        break
                    else:
                        await send_error(f"Unknown message type: {kind}", "UNKNOWN_TYPE")
                        continue
                except RequestError as exc:
                    await send_error(exc.message, exc.code)
                    continue
                except Exception as exc:  # noqa: BLE001 - a server bug answers this session, never kills others
                    await send_error(f"{type(exc).__name__}: {exc}", "EXECUTION_ERROR")
                    continue
                await websocket.send_text(json.dumps(reply, ensure_ascii=False))
        except WebSocketDisconnect:
            pass
        finally:
            with server._lock:
                server.ws_sessions -= 1
            try:
                await websocket.close()
            except (RuntimeError, asyncio.CancelledError):
                pass

    return app


# --------------------------------------------------------------------------- running


def start_background(app, host: str = "127.0.0.1", port: int = 0, ws_max_size: int = 4 * MAX_BODY_BYTES):
    """Run `app` with uvicorn in a daemon thread; returns (server, thread, base_url). Stop it
    with ``server.should_exit = True; thread.join()``."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", ws_max_size=ws_max_size,
                            lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    sock = server.servers[0].sockets[0].getsockname()
    return server, thread, f"http://{sock[0]}:{sock[1]}"


def add_serve_commands(subparsers) -> None:
    add_command(subparsers, "serve", ServerConfig, cmd_serve,
                help="serve the environments over HTTP/WebSocket (OpenEnv-compatible)",
                description="An OpenEnv-compatible server (reset, step, state, health, schema, metadata; WebSocket "
                            "sessions at /ws). Binds 127.0.0.1 unless --host says otherwise.")


def cmd_serve(config: ServerConfig) -> int:
    require_extra(("fastapi", "uvicorn"), "serve", "`ecomrlve serve`")
    import uvicorn
    from rich.console import Console

    app = create_app(config)
    Console(stderr=True).print(f"ecomrlve OpenEnv server on http://{config.host}:{config.port} (WebSocket /ws; "
                               f"default {config.env_id} d={config.difficulty})")
    uvicorn.run(app, host=config.host, port=config.port, ws_max_size=4 * config.max_body_bytes, log_level="info")
    return 0
