"""Gymnasium API for the registered environments (no Ray, no torch).

    import gymnasium as gym
    import ecomrlve.envs.gym_api  # registers ecomrlve/E_PD-v0 ... ecomrlve/E_JOURNEY-v0
                                  # (and ecomrlve/<ID>-v0 of any env registered later)
    env = gym.make("ecomrlve/E_CART-v0", catalog=catalog, difficulty=6)
    obs, info = env.reset(seed=7)           # obs: a JSON string (see below)
    obs, reward, terminated, truncated, info = env.step('{"tool_calls": [...]}')

Without importing this module first, ``gym.make("ecomrlve.envs.gym_api:ecomrlve/E_CART-v0")`` imports
it for you (Gymnasium's ``module:env_id`` form).

Spaces. The environments speak JSON, so both spaces are `gymnasium.spaces.Text` over printable
ASCII (chars 32..127):

- observation: the env's observation dict (``messages``, ``tools``, ``turn``, ``env_id``,
  ``turn_budget``, ``tool_budget``, ``turns_left``; see `ShopEnv._obs`) as
  JSON with non-ASCII characters escaped (``json.dumps(obs, ensure_ascii=True)``);
  `decode_observation` turns it back into the dict.
- action: one JSON action object (docs/architecture.md, "Agent action"). `step` also accepts the action as a dict
  (or any JSON string), exactly like `ShopEnv.step`; a malformed action is a normal terminal
  transition with reward -1, never an exception. ``action_space.sample()`` returns a valid
  action: a random assistant message.

Seeds. ``reset(seed=s)`` runs the episode of seed ``s`` (the same transcript as
``make_env(...).reset(seed=s)``); ``reset()`` without a seed draws the episode seed from
the Gymnasium RNG (``self.np_random``), so a seeded sequence of resets is reproducible.

Catalog. `envs` must not import `catalog_service` (dependency direction, docs/architecture.md), so
the catalog comes from the caller: ``catalog=`` (any `CatalogLike`, shared, never copied),
or ``catalog_factory=`` (a callable or a ``"module:attr"`` string, called with
``catalog_kwargs``). With neither, the default factory ``"ecomrlve.catalog_service:Catalog.synthetic"``
with ``{"n_products": 10_000, "seed": 0}`` is resolved by name at the first ``make`` (the same
late binding as Gymnasium's own entry points) and the catalog is cached per process, so many
envs share one. `set_default_catalog_factory` changes the default.
"""

from __future__ import annotations

import importlib
import json
import threading
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .actions import MAX_ACTION_BYTES
from .catalog import CatalogLike
from .registry import ENV_IDS, make_env

__all__ = [
    "NAMESPACE", "GYM_IDS", "ShopGymEnv", "ActionText", "register_envs", "gym_id",
    "decode_observation", "encode_observation", "default_catalog", "set_default_catalog_factory",
    "resolve_catalog", "OBS_MAX_CHARS",
]

NAMESPACE = "ecomrlve"
VERSION = 0
GYM_IDS: dict[str, str] = {}  # env id -> Gymnasium id, kept by `register_envs` / `unregister_env_id`
CHARSET = frozenset(chr(i) for i in range(32, 128))  # JSON with ensure_ascii=True stays inside
OBS_MAX_CHARS = 1 << 24
SAMPLE_MESSAGE_CHARS = 80

_default_factory: str | Callable[..., CatalogLike] = "ecomrlve.catalog_service:Catalog.synthetic"
_default_kwargs: dict[str, Any] = {"n_products": 10_000, "seed": 0}
_cache: dict[tuple, CatalogLike] = {}
_cache_lock = threading.Lock()


def gym_id(env_id: str) -> str:
    """``"E_CART"`` -> ``"ecomrlve/E_CART-v0"``."""
    try:
        return GYM_IDS[env_id]
    except KeyError:
        raise ValueError(f"unknown env_id {env_id!r}; known: {', '.join(ENV_IDS)}") from None


# --------------------------------------------------------------------------- catalog


def _resolve_factory(factory: str | Callable[..., CatalogLike]) -> Callable[..., CatalogLike]:
    if callable(factory):
        return factory
    if not isinstance(factory, str) or ":" not in factory:
        raise ValueError(f"catalog_factory must be a callable or a 'module:attr' string, got {factory!r}")
    module, _, attr = factory.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"catalog_factory {factory!r} is not callable")
    return obj


def set_default_catalog_factory(factory: str | Callable[..., CatalogLike], **kwargs: Any) -> None:
    """The factory (and its keyword arguments) used when neither ``catalog`` nor
    ``catalog_factory`` is given."""
    global _default_factory, _default_kwargs
    _resolve_factory(factory)  # fail early on a bad name
    _default_factory, _default_kwargs = factory, dict(kwargs)


def resolve_catalog(factory: str | Callable[..., CatalogLike] | None = None,
                    kwargs: dict[str, Any] | None = None) -> CatalogLike:
    """The catalog `factory(**kwargs)` (defaults: the default factory), built once per process
    and cached by (factory, kwargs)."""
    if factory is None:
        factory = _default_factory
        kwargs = {**_default_kwargs, **(kwargs or {})}
    kwargs = dict(kwargs or {})
    key = (factory if isinstance(factory, str) else id(factory), tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
    with _cache_lock:
        catalog = _cache.get(key)
        if catalog is None:
            catalog = _resolve_factory(factory)(**kwargs)
            _cache[key] = catalog
    return catalog


def default_catalog() -> CatalogLike:
    """The cached default catalog (10,000 synthetic products, seed 0, unless changed)."""
    return resolve_catalog()


# --------------------------------------------------------------------------- spaces


def encode_observation(obs: dict) -> str:
    return json.dumps(obs, ensure_ascii=True, separators=(",", ":"), default=str)


def decode_observation(obs: str) -> dict:
    """The observation dict (messages, tools, turn, env_id) from its JSON text."""
    return json.loads(obs)


class ActionText(spaces.Text):
    """Text space of JSON actions. ``sample()`` gives a valid action (a random assistant
    message), so a random agent plays whole episodes instead of failing on turn one."""

    def __init__(self, seed: int | np.random.Generator | None = None):
        super().__init__(max_length=MAX_ACTION_BYTES, min_length=2, charset=CHARSET, seed=seed)
        self._letters = np.array(sorted(c for c in CHARSET if c.isalnum() or c == " "))

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        if mask is not None or probability is not None:
            return super().sample(mask=mask, probability=probability)
        n = int(self.np_random.integers(1, SAMPLE_MESSAGE_CHARS + 1))
        text = "".join(self.np_random.choice(self._letters, size=n)).strip() or "hello"
        return json.dumps({"assistant_message": text}, ensure_ascii=True)

    def __repr__(self) -> str:
        return f"ActionText(max_length={self.max_length})"


# --------------------------------------------------------------------------- env


class ShopGymEnv(gym.Env):
    """A `ShopEnv` behind Gymnasium's API (JSON text spaces)."""

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, env_id: str, catalog: CatalogLike | None = None, difficulty: int = 0,
                 catalog_factory: str | Callable[..., CatalogLike] | None = None,
                 catalog_kwargs: dict[str, Any] | None = None, render_mode: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        if isinstance(difficulty, bool) or not isinstance(difficulty, (int, np.integer)) or difficulty < 0:
            raise ValueError(f"difficulty must be a non-negative int, got {difficulty!r}")
        if catalog is None:
            catalog = resolve_catalog(catalog_factory, catalog_kwargs)
        self.env_id = env_id
        self.difficulty = int(difficulty)
        self.render_mode = render_mode
        self.shop_env = make_env(env_id, catalog, difficulty=self.difficulty)
        self.observation_space = spaces.Text(max_length=OBS_MAX_CHARS, min_length=2, charset=CHARSET)
        self.action_space = ActionText()
        self._obs: dict | None = None

    @property
    def goal(self):
        """The hidden goal of the current episode (privileged; for debugging and oracles)."""
        return getattr(self.shop_env, "goal", None)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        episode_seed = int(seed) if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
        opts = {"difficulty": self.difficulty, **(options or {})}
        obs, info = self.shop_env.reset(seed=episode_seed, options=opts)
        self._obs = obs
        return encode_observation(obs), info

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict]:
        if isinstance(action, np.str_):
            action = str(action)
        obs, reward, terminated, truncated, info = self.shop_env.step(action)
        self._obs = obs
        return encode_observation(obs), float(reward), bool(terminated), bool(truncated), info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        lines = []
        for msg in (self._obs or {}).get("messages", []):
            text = msg.get("content") or ""
            if msg.get("tool_calls"):
                calls = ", ".join(f"{c['function']['name']}({c['function']['arguments']})" for c in msg["tool_calls"])
                text = f"{text} [calls: {calls}]".strip()
            if msg.get("answer"):
                text = f"{text} [answer: {json.dumps(msg['answer'], ensure_ascii=False)}]".strip()
            role = msg.get("role", "?") + (f":{msg['name']}" if msg.get("name") else "")
            lines.append(f"{role}: {text}")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self._obs = None


def register_envs() -> list[str]:
    """Register ``ecomrlve/<ENV_ID>-v0`` for every registered environment (idempotent;
    `ecomrlve.envs.registry.register_env` calls it for an environment registered later)."""
    ids = []
    for env_id in ENV_IDS:
        name = GYM_IDS.setdefault(env_id, f"{NAMESPACE}/{env_id}-v{VERSION}")
        if name not in gym.registry:
            gym.register(id=name, entry_point="ecomrlve.envs.gym_api:ShopGymEnv", kwargs={"env_id": env_id},
                         nondeterministic=False)
        ids.append(name)
    return ids


def unregister_env_id(env_id: str) -> None:
    """Remove the Gymnasium id of `env_id` (`ecomrlve.envs.registry.unregister_env` calls it)."""
    name = GYM_IDS.pop(env_id, None)
    if name is not None:
        gym.registry.pop(name, None)


register_envs()
