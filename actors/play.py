"""``ecomrlve play``: play an environment yourself in the browser.

    ecomrlve play --port 8001        # then open http://127.0.0.1:8001/

A FastAPI app and one static page (``actors/static/``: HTML, JS, CSS; no CDN, everything is
served from this package). Pick an environment and a difficulty, reset, read the shopper's
messages, call tools through forms generated from the tools' JSON schemas, answer, and read
the reward breakdown. "Reveal hidden goal" shows ``env.goal`` as JSON (debugging: it is the
privileged state the verifier scores against).

Each browser session (cookie ``ecomrlve_play``, HttpOnly, SameSite=Strict) has its own
episode; sessions live in an LRU of ``--max-sessions``. JSON API used by the page:

    GET  /api/envs    environments: tools (OpenAI schemas), answer schema, task brief; and
                      "state": this session's current view (null before a reset)
    POST /api/reset   {"env_id", "difficulty", "seed"?}         -> view
    POST /api/step    {"action": {...} | "<JSON text>"}         -> view
    GET  /api/state   the current view (404 before a reset)
    GET  /api/goal    {"goal": <env.goal as JSON>}

A bad action is the env's normal outcome (the episode ends with r_total = -1); a bad request
is a 4xx with a message naming the problem.
"""

import secrets
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from ecomrlve.catalog_service.catalog import CatalogDir

from ecomrlve.envs import ENV_IDS, make_env
from ecomrlve.envs.actions import answer_model
from ecomrlve.envs.difficulty import MAX_DIFFICULTY

from .evaluate import DEFAULT_CATALOG_SIZE, jsonable, load_catalog
from .config import add_command, arg, require_extra
from .openenv_server import MAX_BODY_BYTES, RequestError, install_error_handlers, known_env, read_json
from .rollout import Episode

STATIC_DIR = Path(__file__).with_name("static")
STATIC_FILES = {"play.html": "text/html", "play.js": "text/javascript", "play.css": "text/css"}
COOKIE = "ecomrlve_play"
DEFAULT_PORT = 8001
DEFAULT_MAX_SESSIONS = 256

__all__ = ["create_play_app", "add_play_commands", "PlayConfig"]


class PlayConfig(BaseModel):
    """``ecomrlve play``: the page's preselection, the catalog, the session limit and where it listens."""

    model_config = ConfigDict(extra="forbid")

    host: str = arg("127.0.0.1", "interface")
    port: int = arg(DEFAULT_PORT, "port", ge=0, le=65535)
    default_env: Annotated[str, AfterValidator(known_env)] = arg("E_CART", "environment preselected on the page",
                                                                  flag="--env")
    default_difficulty: int = arg(0, "difficulty preselected on the page", flag="--difficulty", ge=0,
                                  le=MAX_DIFFICULTY)
    catalog_size: int = arg(DEFAULT_CATALOG_SIZE, "products of the synthetic catalog", ge=1)
    catalog_seed: int = arg(0, "synthetic catalog seed")
    catalog_dir: CatalogDir = arg(None, "a catalog directory from `ecomrlve catalog build`", flag="--catalog")
    max_sessions: int = arg(DEFAULT_MAX_SESSIONS, "browser sessions kept (LRU)", ge=1)


class ResetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    env_id: str
    difficulty: int = Field(0, ge=0, le=MAX_DIFFICULTY)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)


class StepBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: dict[str, Any] | str


def answer_schema(fields: tuple[str, ...]) -> dict:
    """The Answer JSON schema restricted to `fields`. ``answer.env`` is not among them: the
    page knows the environment and sets it (a free-text field could only get it wrong)."""
    schema = answer_model().model_json_schema()
    keep = set(fields)
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k in keep}
    schema.pop("required", None)
    return schema


class PlaySession:
    def __init__(self):
        self.env = None  # the current episode's env
        self.episode: Episode | None = None
        self.envs: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.last_reward: float | None = None
        self.terminated = self.truncated = False


class Player:
    def __init__(self, config: PlayConfig, catalog=None):
        self.config = config
        self.catalog = catalog if catalog is not None else load_catalog(config.catalog_dir, config.catalog_size,
                                                                         config.catalog_seed)
        self.sessions: OrderedDict[str, PlaySession] = OrderedDict()
        self._lock = threading.Lock()
        self._seed = 0
        self._catalogue: list[dict] | None = None

    def session(self, token: str | None) -> tuple[str, PlaySession]:
        with self._lock:
            if token and token in self.sessions:
                self.sessions.move_to_end(token)
                return token, self.sessions[token]
            token = secrets.token_urlsafe(18)
            sess = PlaySession()
            self.sessions[token] = sess
            while len(self.sessions) > self.config.max_sessions:
                self.sessions.popitem(last=False)
            return token, sess

    def env_catalogue(self) -> list[dict]:
        if self._catalogue is None:
            out = []
            for env_id in ENV_IDS:
                try:
                    env = make_env(env_id, self.catalog)
                except ImportError as exc:
                    out.append({"env_id": env_id, "available": False, "error": str(exc)})
                    continue
                out.append({"env_id": env_id, "available": True, "task_brief": env.task_brief,
                            "tools": env._tool_schemas, "answer_fields": list(env.answer_fields),
                            "answer_schema": answer_schema(env.answer_fields)})
            self._catalogue = out
        return self._catalogue

    def next_seed(self) -> int:
        with self._lock:
            self._seed += 1
            return self._seed - 1

    # ---------------------------------------------------------------- episode ops (in a thread)
    def reset(self, sess: PlaySession, body: ResetBody) -> dict:
        if body.env_id not in ENV_IDS:
            raise RequestError(f"env_id: unknown environment {body.env_id!r}; known: {', '.join(ENV_IDS)}")
        with sess.lock:
            env = sess.envs.get(body.env_id)
            if env is None:
                try:
                    env = make_env(body.env_id, self.catalog)
                except ImportError as exc:
                    raise RequestError(f"env_id: {body.env_id} is not available in this installation ({exc})",
                                       status=503) from None
                sess.envs[body.env_id] = env
            seed = body.seed if body.seed is not None else self.next_seed()
            episode = Episode({"env_id": body.env_id, "seed": seed, "difficulty": body.difficulty}, env=env)
            if episode.reset() is None:
                if isinstance(episode.exception, ValueError):
                    raise RequestError(str(episode.exception))
                raise RequestError(f"reset failed: {episode.error}", status=500)
            sess.env, sess.episode = env, episode
            sess.last_reward, sess.terminated, sess.truncated = None, False, False
            return self.view(sess)

    def step(self, sess: PlaySession, action: Any) -> dict:
        with sess.lock:
            episode = sess.episode
            if episode is None:
                raise RequestError("no episode: reset first", status=409)
            if episode.done:
                raise RequestError("episode is over: start a new one", status=409)
            out = episode.step(action)
            if out is None:
                raise RequestError(f"step failed: {episode.error}", status=500)
            _, reward, terminated, truncated, _ = out
            sess.last_reward, sess.terminated, sess.truncated = float(reward), bool(terminated), bool(truncated)
            return self.view(sess)

    def view(self, sess: PlaySession) -> dict:
        env = sess.env
        if env is None:
            raise RequestError("no episode: reset first", status=404)
        reward = env.reward_info.as_dict() if env.reward_info is not None else None
        return jsonable({
            "env_id": env.env_id, "difficulty": env.difficulty, "seed": env.seed, "turn": env.turn,
            "T_max": env.axes.T_max, "B_tool": env.axes.B_tool, "done": env.done,
            "terminated": sess.terminated, "truncated": sess.truncated, "last_reward": sess.last_reward,
            "messages": env.messages, "tools": env._tool_schemas, "answer_fields": list(env.answer_fields),
            "answer_schema": answer_schema(env.answer_fields), "reward": reward, "task_brief": env.task_brief,
        })

    def current_view(self, sess: PlaySession) -> dict | None:
        """The session's view, or None before its first reset."""
        with sess.lock:
            return None if sess.env is None else self.view(sess)

    def goal(self, sess: PlaySession) -> dict:
        with sess.lock:
            if sess.env is None:
                raise RequestError("no episode: reset first", status=404)
            return {"env_id": sess.env.env_id, "seed": sess.env.seed, "difficulty": sess.env.difficulty,
                    "goal": jsonable(getattr(sess.env, "goal", None))}


def create_play_app(config: PlayConfig | None = None, catalog=None):
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
    from starlette.concurrency import run_in_threadpool

    player = Player(config or PlayConfig(), catalog)
    app = FastAPI(title="ecomrlve play", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.player = player
    install_error_handlers(app)

    def respond(request: Request, token: str, payload: Any, status: int = 200) -> JSONResponse:
        resp = JSONResponse(payload, status_code=status)
        if request.cookies.get(COOKIE) != token:
            resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.get("/")
    async def index():
        return RedirectResponse("/static/play.html")

    @app.get("/static/{name}")
    async def static(name: str):
        if name not in STATIC_FILES:
            raise RequestError(f"no static file {name!r}", status=404, code="NOT_FOUND")
        return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name],
                            headers={"Cache-Control": "no-cache"})

    @app.get("/api/envs")
    async def envs(request: Request):
        token, sess = player.session(request.cookies.get(COOKIE))
        payload = {"envs": await run_in_threadpool(player.env_catalogue), "max_difficulty": MAX_DIFFICULTY,
                   "default_env": player.config.default_env, "default_difficulty": player.config.default_difficulty,
                   "state": await run_in_threadpool(player.current_view, sess)}
        return respond(request, token, payload)

    @app.post("/api/reset")
    async def reset(request: Request):
        token, sess = player.session(request.cookies.get(COOKIE))
        data = await read_json(request, MAX_BODY_BYTES)
        try:
            body = ResetBody.model_validate(data)
        except ValidationError as exc:
            raise RequestError(_message(exc)) from None
        return respond(request, token, await run_in_threadpool(player.reset, sess, body))

    @app.post("/api/step")
    async def step(request: Request):
        token, sess = player.session(request.cookies.get(COOKIE))
        data = await read_json(request, MAX_BODY_BYTES)
        try:
            body = StepBody.model_validate(data)
        except ValidationError as exc:
            raise RequestError(_message(exc)) from None
        return respond(request, token, await run_in_threadpool(player.step, sess, body.action))

    @app.get("/api/state")
    async def state(request: Request):
        token, sess = player.session(request.cookies.get(COOKIE))
        return respond(request, token, await run_in_threadpool(player.view, sess))

    @app.get("/api/goal")
    async def goal(request: Request):
        token, sess = player.session(request.cookies.get(COOKIE))
        return respond(request, token, await run_in_threadpool(player.goal, sess))

    return app


def _message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())


# --------------------------------------------------------------------------- CLI


def add_play_commands(subparsers) -> None:
    add_command(subparsers, "play", PlayConfig, cmd_play,
                help="play an environment in the browser (tool forms, reward breakdown, hidden goal)",
                description="A local web page to play the environments by hand. Binds 127.0.0.1 unless --host says "
                            "otherwise; everything (HTML, JS, CSS) is served locally.")


def cmd_play(config: PlayConfig) -> int:
    require_extra(("fastapi", "uvicorn"), "serve", "`ecomrlve play`")
    import uvicorn
    from rich.console import Console

    app = create_play_app(config)
    Console(stderr=True).print(f"ecomrlve play: open http://{config.host}:{config.port}/")
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")
    return 0
