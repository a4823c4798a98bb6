"""The shopper (user simulator) as a Ray Serve deployment.

Environments write what the shopper says (`envs.shopper.TemplateShopper` decides *what*
is said: which slots are disclosed, typos, quits). This service decides *how it is
phrased*: env workers send every new shopper message through ``phrase(request) -> text``.

- ``template`` backend (default): returns the template text unchanged, so transcripts stay
  byte-identical to an in-process run (the determinism contract).
- an LLM backend plugs in behind the same interface (`ShopperBackend`): it gets the template
  text plus context (clean text, kind, disclosed slots, slot phrases, mentioned ids, env id,
  turn) and returns a rephrasing. ``llm`` maps to `policies.shopper_llm.LLMShopperBackend`;
  any ``"module:Class"`` path works too; the deployment builds it in each replica.

Sizing: Serve's default ``max_ongoing_requests`` (5) throttles a burst of concurrent episodes
(measured: ~300 -> 34 requests/s), so `deploy_shopper` sizes it for
``workers x concurrent episodes`` and the proxy is disabled (handles only, no HTTP port).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Protocol

APP_NAME = "ecomrlve-shopper"
DEPLOYMENT_NAME = "ShopperService"

__all__ = [
    "ShopperBackend", "TemplateBackend", "register_backend", "make_backend", "ShopperService", "deploy_shopper",
    "ShopperClient", "LocalShopperClient", "validate_request", "APP_NAME",
]


class ShopperBackend(Protocol):
    name: str

    def phrase(self, request: dict) -> str:
        """The shopper message to show, given the template `request["text"]` and context."""


class TemplateBackend:
    """Identity phrasing: the template text is the message."""

    name = "template"

    def __init__(self, **_: Any):
        pass

    def phrase(self, request: dict) -> str:
        return request["text"]


_BACKENDS: dict[str, Callable[..., ShopperBackend] | str] = {
    "template": TemplateBackend,
    "llm": "policies.shopper_llm:LLMShopperBackend",  # imported in the replica, on first use
}


def register_backend(name: str, factory: Callable[..., ShopperBackend] | str) -> None:
    """Make `factory(**options)` available as shopper backend `name` (e.g. an LLM rephraser).
    A ``"module:Class"`` string works across processes (Serve replicas import it); a
    callable is only known in the process that registered it."""
    _BACKENDS[name] = factory


def make_backend(name: str, options: dict | None = None) -> ShopperBackend:
    """Backend `name`: a registered name, or any ``"module:Class"`` import path."""
    factory = _BACKENDS.get(name, name if ":" in name else None)
    if factory is None:
        raise ValueError(f"unknown shopper backend {name!r}; known: {', '.join(sorted(_BACKENDS))} "
                         "(or give a 'module:Class' path)")
    if isinstance(factory, str):
        import importlib

        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(**(options or {}))


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


def _deployment_class():
    from ray import serve

    @serve.deployment(name=DEPLOYMENT_NAME, ray_actor_options={"num_cpus": 0.1})
    class ShopperService:
        def __init__(self, backend: str = "template", backend_options: dict | None = None):
            self.backend = make_backend(backend, backend_options)

        async def phrase(self, request: dict) -> str:
            return self.backend.phrase(validate_request(request))

        async def phrase_batch(self, requests: list[dict]) -> list[str]:
            return [self.backend.phrase(validate_request(r)) for r in requests]

        async def backend_name(self) -> str:
            return self.backend.name

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
):
    """Start the shopper application (Serve with no HTTP proxy) and return its handle."""
    from ray import serve

    serve.start(proxy_location="Disabled")
    actor_opts: dict = {"num_cpus": num_cpus}
    if resources:
        actor_opts["resources"] = dict(resources)
    app = _deployment_class().options(
        num_replicas=num_replicas,
        max_ongoing_requests=max(1, int(max_ongoing_requests)),
        max_queued_requests=-1,
        ray_actor_options=actor_opts,
    ).bind(backend, backend_options)
    return serve.run(app, name=APP_NAME, route_prefix=None)


def shutdown_shopper() -> None:
    from ray import serve

    try:
        serve.delete(APP_NAME)
    except Exception:  # noqa: BLE001 - already gone
        pass


class ShopperClient:
    """What an env worker uses: ``await client.phrase(request)`` through a Serve
    DeploymentHandle, recording latency."""

    def __init__(self, handle, backend: str = "template"):
        self.handle = handle
        self.backend = backend

    async def phrase(self, request: dict) -> str:
        from .metrics import get_metrics

        t0 = time.perf_counter()
        text = await self.handle.phrase.remote(request)
        get_metrics().shopper((time.perf_counter() - t0) * 1e3, self.backend)
        return text


class LocalShopperClient:
    """In-process backend (no Serve hop): for benchmarks and single-process use."""

    def __init__(self, backend: str = "template", backend_options: dict | None = None):
        self.impl = make_backend(backend, backend_options)
        self.backend = backend

    async def phrase(self, request: dict) -> str:
        return self.impl.phrase(validate_request(request))
