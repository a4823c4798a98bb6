"""The shopper (user simulator) as a Ray Serve deployment.

Environments write what the shopper says (`ecomrlve.envs.shopper.TemplateShopper` decides *what*
is said: which slots are disclosed, typos, quits). This service decides *how it is
phrased*: a client's ``for_episode(episode_id)`` is the episode's `ecomrlve.envs.shopper.Phraser`,
so the environment itself sends every shopper message through ``phrase(request) -> text``
when it speaks, and its transcript and checks hold the phrased text. The env runs in an env
worker's thread pool, so the client waits for the Serve reply synchronously there (never on
the event loop).

- ``template`` backend (default): returns the template text unchanged, so transcripts stay
  byte-identical to an in-process run (the determinism contract).
- an LLM backend plugs in behind the same interface (`ShopperBackend`): it gets the template
  text plus context (clean text, kind, disclosed slots, slot phrases, mentioned ids, env id,
  turn) and returns a rephrasing. ``llm`` maps to `ecomrlve.policies.shopper_llm.LLMShopperBackend`;
  any ``"module:Class"`` path works too; the deployment builds it in each replica.

Batching: a backend that is not ``inline`` (every LLM backend) is called through Ray
Serve's ``@serve.batch``: concurrent ``phrase`` requests from all episodes queue for up to
``batch_wait_timeout_s`` (or until ``max_batch_size`` are waiting) and reach the backend as
one ``phrase_batch(requests)`` call (one LLM generate over the whole batch). The blocking
backend call runs in a single-thread executor, so the replica's event loop keeps accepting
requests (and forming the next batch) while a batch is generated; a backend whose
``phrase_batch`` is ``async def`` is awaited on the loop instead. A backend without
``phrase_batch`` gets ``[phrase(r) for r in requests]`` in that thread. Each request is
validated before it joins a batch, so a bad request fails alone.

The template backend is ``inline``: its identity phrasing is answered on the event loop,
no batch queue, no thread hop.

Sizing: Serve's default ``max_ongoing_requests`` (5) throttles a burst of concurrent episodes
(measured: ~300 -> 34 requests/s) and would cap a batch at 5, so `deploy_shopper` sizes it
for ``workers x concurrent episodes`` and the proxy is disabled (handles only, no HTTP port).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Protocol

APP_NAME = "ecomrlve-shopper"
DEPLOYMENT_NAME = "ShopperService"
MAX_BATCH_SIZE = 32  # requests per backend call
BATCH_WAIT_TIMEOUT_S = 0.005  # how long the first request of a batch waits for company
# Serve batches waiting for (or in) a backend call at once: they merge into backend calls, so
# Serve's start-up warning that max_batch_size x this exceeds max_ongoing_requests is moot
MAX_OPEN_BATCHES = 1024

__all__ = [
    "ShopperBackend", "TemplateBackend", "register_backend", "make_backend", "backend_factory", "backend_wants_gpu", "ShopperService", "deploy_shopper",
    "ShopperClient", "LocalShopperClient", "EpisodePhraser", "phrase_request", "validate_request", "phrase_batch_of",
    "APP_NAME",
    "MAX_BATCH_SIZE", "BATCH_WAIT_TIMEOUT_S",
]


class ShopperBackend(Protocol):
    """How shopper messages are phrased.

    Optional members: ``phrase_batch(requests) -> list[str]`` (one answer per request, in
    order; one model call for the whole batch; may be ``async def``), and ``inline = True``
    for a backend so cheap and non-blocking that the replica answers it on its event loop
    without batching (the template backend)."""

    name: str

    def phrase(self, request: dict) -> str:
        """The shopper message to show, given the template `request["text"]` and context."""


class TemplateBackend:
    """Identity phrasing: the template text is the message."""

    name = "template"
    inline = True

    def __init__(self, **_: Any):
        pass

    def phrase(self, request: dict) -> str:
        return request["text"]

    def phrase_batch(self, requests: list[dict]) -> list[str]:
        return [r["text"] for r in requests]


_BACKENDS: dict[str, Callable[..., ShopperBackend] | str] = {
    "template": TemplateBackend,
    "llm": "ecomrlve.policies.shopper_llm:LLMShopperBackend",  # imported in the replica, on first use
}


def register_backend(name: str, factory: Callable[..., ShopperBackend] | str) -> None:
    """Make `factory(**options)` available as shopper backend `name` (e.g. an LLM rephraser).
    A ``"module:Class"`` string works across processes (Serve replicas import it); a
    callable is only known in the process that registered it."""
    _BACKENDS[name] = factory


def backend_factory(name: str) -> Callable[..., ShopperBackend]:
    """The factory of backend `name` (a registered name, or any ``"module:Class"`` import
    path), imported if need be; raises ValueError naming an unknown backend."""
    factory = _BACKENDS.get(name, name if ":" in name else None)
    if factory is None:
        raise ValueError(f"unknown shopper backend {name!r}; known: {', '.join(sorted(_BACKENDS))} "
                         "(or give a 'module:Class' path)")
    if isinstance(factory, str):
        import importlib

        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory


def backend_wants_gpu(name: str) -> bool:
    """Whether backend `name` declares ``wants_gpu = True`` (a model that runs on a GPU when
    its replica has one: the LLM backend); such replicas are placed on GPU nodes."""
    return bool(getattr(backend_factory(name), "wants_gpu", False))


def make_backend(name: str, options: dict | None = None) -> ShopperBackend:
    """Backend `name`: a registered name, or any ``"module:Class"`` import path."""
    return backend_factory(name)(**(options or {}))


def validate_request(request: Any) -> dict:
    """A phrase request is {"text": str, ...context}; anything else is rejected with a
    message naming the field."""
    if not isinstance(request, dict):
        raise ValueError(f"shopper request must be an object, got {type(request).__name__}")
    text = request.get("text")
    if not isinstance(text, str):
        raise ValueError("shopper request field 'text' must be a string")
    if len(text) > 20_000:
        raise ValueError("shopper request field 'text' is too long (max 20000 characters)")
    return request


def phrase_batch_of(backend) -> Callable[[list[dict]], Any]:
    """The backend's batch entry point: its ``phrase_batch``, or ``phrase`` request by request."""
    batch = getattr(backend, "phrase_batch", None)
    if batch is not None:
        return batch
    return lambda requests: [backend.phrase(r) for r in requests]


def _checked(answers: Any, n: int, backend: str) -> list[str]:
    if not isinstance(answers, list) or len(answers) != n or not all(isinstance(a, str) for a in answers):
        got = f"{len(answers)} answers" if isinstance(answers, list) else type(answers).__name__
        raise ValueError(f"shopper backend {backend!r}: phrase_batch must return a list of {n} strings, got {got}")
    return answers


def _deployment_class():
    from ray import serve

    @serve.deployment(name=DEPLOYMENT_NAME, ray_actor_options={"num_cpus": 0.1})
    class ShopperService:
        """One replica: the backend, its batch queue and the thread its blocking calls run in."""

        def __init__(self, backend: str = "template", backend_options: dict | None = None,
                     max_batch_size: int = MAX_BATCH_SIZE, batch_wait_timeout_s: float = BATCH_WAIT_TIMEOUT_S):
            self.backend = make_backend(backend, backend_options)
            self.inline = bool(getattr(self.backend, "inline", False))
            self._batch_fn = phrase_batch_of(self.backend)
            self._async = inspect.iscoroutinefunction(self._batch_fn)
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="shopper-backend")
            self.max_batch_size = max(1, int(max_batch_size))
            self._phrase_batched.set_max_batch_size(self.max_batch_size)
            self.batch_wait_timeout_s = max(0.0, float(batch_wait_timeout_s))
            self._phrase_batched.set_batch_wait_timeout_s(self.batch_wait_timeout_s)
            self._pending: collections.deque = collections.deque()  # (requests, future) of Serve's batches
            self._runner: asyncio.Task | None = None
            self._arrived = asyncio.Event()
            self.requests = 0
            self.batch_sizes: dict[int, int] = {}  # batch size -> how many backend calls had it

        async def phrase(self, request: dict) -> str:
            request = validate_request(request)
            self.requests += 1
            if self.inline:
                return self.backend.phrase(request)
            return await self._phrase_batched(request)

        async def phrase_batch(self, requests: list[dict]) -> list[str]:
            """Many requests from one caller: each joins the batch queue (so they may share
            backend calls with other callers' requests)."""
            return list(await asyncio.gather(*(self.phrase(r) for r in requests)))

        @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_TIMEOUT_S,
                     max_concurrent_batches=MAX_OPEN_BATCHES)
        async def _phrase_batched(self, requests: list[dict]) -> list[str]:
            """Serve cuts a batch every `batch_wait_timeout_s` even while the backend is busy;
            the batches that arrive during a backend call wait here together and go out
            merged in the next call (continuous batching), never as a queue of small calls."""
            future = asyncio.get_running_loop().create_future()
            self._pending.append((requests, future))
            self._arrived.set()
            if self._runner is None or self._runner.done():
                self._runner = asyncio.create_task(self._run_backend())
            return await future

        async def _run_backend(self) -> None:
            """The one loop calling the backend: each call takes the waiting batches, in
            arrival order, up to `max_batch_size` requests."""
            while self._pending:
                # the callers the last call answered usually come straight back: give them
                # `batch_wait_timeout_s` to join this call unless it is already full
                deadline = time.monotonic() + self.batch_wait_timeout_s
                while sum(len(g) for g, _ in self._pending) < self.max_batch_size and time.monotonic() < deadline:
                    self._arrived.clear()
                    try:
                        await asyncio.wait_for(self._arrived.wait(), deadline - time.monotonic())
                    except asyncio.TimeoutError:
                        break
                groups, n = [], 0
                while self._pending and (not groups or n + len(self._pending[0][0]) <= self.max_batch_size):
                    groups.append(self._pending.popleft())
                    n += len(groups[-1][0])
                requests = [r for g, _ in groups for r in g]
                self.batch_sizes[n] = self.batch_sizes.get(n, 0) + 1
                try:
                    if self._async:
                        answers = await self._batch_fn(requests)
                    else:  # the blocking backend call leaves the event loop free
                        answers = await asyncio.get_running_loop().run_in_executor(
                            self._pool, self._batch_fn, requests)
                    answers = _checked(answers, n, self.backend.name)
                except Exception as exc:  # noqa: BLE001 - every caller of the call gets the error
                    for _, fut in groups:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                i = 0
                for g, fut in groups:
                    if not fut.done():
                        fut.set_result(answers[i:i + len(g)])
                    i += len(g)

        async def backend_name(self) -> str:
            return self.backend.name

        async def stats(self) -> dict:
            """Requests served, backend calls by batch size, and the node this replica is on."""
            import ray

            return {"backend": self.backend.name, "inline": self.inline, "requests": self.requests,
                    "backend_calls": sum(self.batch_sizes.values()), "batch_sizes": dict(self.batch_sizes),
                    "node_id": ray.get_runtime_context().get_node_id()}

    return ShopperService


def __getattr__(name):
    if name == "ShopperService":
        return _deployment_class()
    raise AttributeError(name)


def deploy_shopper(
    backend: str = "template",
    backend_options: dict | None = None,
    max_ongoing_requests: int = 256,
    num_replicas: int = 1,
    num_cpus: float = 0.1,
    resources: dict | None = None,
    max_batch_size: int = MAX_BATCH_SIZE,
    batch_wait_timeout_s: float = BATCH_WAIT_TIMEOUT_S,
    num_gpus: float = 0.0,
):
    """Start the shopper application (Serve with no HTTP proxy) and return its handle.
    `max_batch_size` / `batch_wait_timeout_s` shape the ``@serve.batch`` queue of a
    batching backend (``max_batch_size=1`` calls the backend one request at a time).
    `resources` / `num_gpus` go to each replica's actor options (placement)."""
    from ray import serve

    serve.start(proxy_location="Disabled")
    actor_opts: dict = {"num_cpus": num_cpus}
    if resources:
        actor_opts["resources"] = dict(resources)
    if num_gpus:
        actor_opts["num_gpus"] = float(num_gpus)
    app = _deployment_class().options(
        num_replicas=num_replicas,
        max_ongoing_requests=max(1, int(max_ongoing_requests), int(max_batch_size)),
        max_queued_requests=-1,
        ray_actor_options=actor_opts,
    ).bind(backend, backend_options, max_batch_size, batch_wait_timeout_s)
    return serve.run(app, name=APP_NAME, route_prefix=None)


def shutdown_shopper() -> None:
    from ray import serve

    try:
        serve.delete(APP_NAME)
    except Exception:  # noqa: BLE001 - already gone
        pass


def phrase_request(utterance, context, episode_id) -> dict:
    """The request for one shopper message: the template text plus what a rephrasing backend
    needs to check itself (clean text, kind, disclosed slots, the phrases of every slot the
    shopper knows, mentioned ids, typo rate) and the key of its typo stream (env, episode,
    seed, difficulty, turn)."""
    return {"text": utterance.text, "env_id": context.env_id, "turn": int(context.turn), "episode_id": episode_id,
            "difficulty": int(context.difficulty), "clean_text": utterance.clean_text, "kind": utterance.kind,
            "slots": list(utterance.slots), "mentioned_ids": list(utterance.mentioned_ids),
            "seed": int(context.seed), "noise": float(context.noise),
            "slot_phrases": {n: sl.phrase for n, sl in context.slots.items()}}


class EpisodePhraser:
    """One episode's `ecomrlve.envs.shopper.Phraser` over a shopper client."""

    def __init__(self, client, episode_id):
        self.client, self.episode_id = client, episode_id

    def phrase(self, utterance, context) -> str:
        return self.client.phrase(phrase_request(utterance, context, self.episode_id))


class ShopperClient:
    """What an env worker uses: ``client.phrase(request)`` through a Serve DeploymentHandle,
    waiting for the reply in the calling thread (an env worker's thread pool, never an event
    loop) and recording latency. ``for_episode(episode_id)`` is an episode's phraser. A request
    whose replica died or became unreachable while serving it (its node was lost) is sent
    again, with growing pauses, for up to `retry_s` seconds (Ray may take that long to declare
    a node dead and Serve to start a replacement replica): phrasing is deterministic, so a
    resent request gets the same text."""

    def __init__(self, handle, backend: str = "template", retry_s: float = 120.0):
        self.handle = handle
        self.backend = backend
        self.retry_s = float(retry_s)

    def for_episode(self, episode_id) -> EpisodePhraser:
        return EpisodePhraser(self, episode_id)

    def phrase(self, request: dict) -> str:
        from ray.exceptions import RayActorError  # ActorDiedError, ActorUnavailableError

        from .metrics import get_metrics

        t0 = time.perf_counter()
        pause = 0.1
        while True:
            try:
                text = self.handle.phrase.remote(request).result()
                break
            except RayActorError:
                if time.perf_counter() - t0 > self.retry_s:
                    raise
                time.sleep(pause)
                pause = min(2.0 * pause, 2.0)
        get_metrics().shopper((time.perf_counter() - t0) * 1e3, self.backend)
        return text


class LocalShopperClient:
    """In-process backend (no Serve hop): for benchmarks and single-process use; ``phrase``
    blocks the calling thread for the backend's call."""

    def __init__(self, backend: str = "template", backend_options: dict | None = None):
        self.impl = make_backend(backend, backend_options)
        self.backend = backend

    def for_episode(self, episode_id) -> EpisodePhraser:
        return EpisodePhraser(self, episode_id)

    def phrase(self, request: dict) -> str:
        return self.impl.phrase(validate_request(request))
