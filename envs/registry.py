"""The environment registry: what each environment declares about itself, ids, collections
and `make_env`.

An environment is one `EnvSpec` given to `register_env`: its class (generator, verifier,
tool allow-list and answer fields live on the class), its answer model, its oracle planner,
its optional heuristic strategy and intent words, its own difficulty axes and whether
journeys may use it. Everything that lists environments derives from here: `ENV_IDS`, the
action's answer model (`ecomrlve.envs.actions.answer_model`), the axes
(`ecomrlve.envs.difficulty.axes_model`), the journey's sub-task kinds (`journey_kinds`), the
oracle's planners and the heuristic's strategies (`spec_for(env_id).planner / .heuristic`),
and the Gymnasium ids (registered by `ecomrlve.envs.gym_api` when it is imported, and by
`register_env` afterwards).

`envs` never imports `policies`: planners and strategies are named by "module:attr"
strings (or given as objects) and resolved by the policies side with `resolve`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

from pydantic import BaseModel

from .actions import extend_answer, retract_answer
from .catalog import CatalogLike
from .difficulty import AxisSpec, extend_axes, retract_axes


@dataclass(frozen=True)
class EnvSpec:
    """Everything the system needs to know about one environment.

    - env_id: the id ("E_CART"); answers may name it in `answer.env`.
    - env_class: the `ShopEnv` subclass, or its "module:Class" (imported on first use).
    - answer_model: a pydantic model whose fields are the answer fields this env's verifier
      reads beyond the shared `Answer` (None: it reads only shared fields).
    - planner: the oracle planner class or its "module:Class" (constructed with the env, it
      offers `next_action()` and `turns_planned`; see `ecomrlve.policies.oracle`); None: no oracle.
    - heuristic: the heuristic strategy (a function of a `Transcript`, returning an action)
      or its "module:function"; None: the heuristic apologises and gives up.
    - intent_words: words that, in a journey request's first message, make the heuristic
      take it for this env; intent_rank orders the checks (lower first).
    - axes: this env's own difficulty axes (`AxisSpec`), beyond the shared ones.
    - journey: whether E_JOURNEY may chain this env as a sub-task (its kind is env_id);
      journey_rank orders the kinds a journey draws from (lower first; ties by registration).
    """

    env_id: str
    env_class: str | type
    answer_model: type[BaseModel] | None = None
    planner: str | type | None = None
    heuristic: str | Callable | None = None
    intent_words: tuple[str, ...] = ()
    intent_rank: int = 100
    axes: tuple[AxisSpec, ...] = ()
    journey: bool = False
    journey_rank: int = 100


def resolve(target: str | Any) -> Any:
    """A "module:attr" string (dotted attrs allowed) imported and looked up; any other object
    is returned as is."""
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


_SPECS: dict[str, EnvSpec] = {}


class EnvIds(Sequence):
    """The registered env ids, in registration order: a live, read-only view (a module that
    imported `ENV_IDS` sees environments registered later). Compares equal to a tuple of
    the same ids."""

    def __getitem__(self, i):
        return tuple(_SPECS)[i]

    def __len__(self) -> int:
        return len(_SPECS)

    def __iter__(self):
        return iter(tuple(_SPECS))

    def __contains__(self, env_id) -> bool:
        return env_id in _SPECS

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and not isinstance(other, str) and tuple(self) == tuple(other)

    __hash__ = None

    def __repr__(self) -> str:
        return repr(tuple(self))


ENV_IDS = EnvIds()


def register_env(spec: EnvSpec) -> EnvSpec:
    """Register an environment: it joins ENV_IDS (and, if gym_api is imported, gets the
    Gymnasium id ``ecomrlve/<env_id>-v0``), its answer fields join the action's answer and
    its axes join every episode's axes. Raises ValueError naming the problem (an id taken,
    an answer field or axis clashing with another env's)."""
    if not isinstance(spec, EnvSpec):
        raise ValueError(f"spec must be an EnvSpec, got {type(spec).__name__}")
    if not spec.env_id or not isinstance(spec.env_id, str):
        raise ValueError(f"env_id must be a non-empty string, got {spec.env_id!r}")
    if spec.env_id in _SPECS or spec.env_id.upper() in COLLECTIONS:
        raise ValueError(f"env_id {spec.env_id!r} is already registered")
    if isinstance(spec.env_class, type) and getattr(spec.env_class, "env_id", None) != spec.env_id:
        raise ValueError(f"env_class: {spec.env_class.__name__}.env_id is not {spec.env_id!r}")
    if spec.answer_model is not None:
        extend_answer(spec.env_id, spec.answer_model)
    try:
        extend_axes(spec.env_id, spec.axes)
    except ValueError:
        retract_answer(spec.env_id)
        raise
    _SPECS[spec.env_id] = spec
    gym_api = sys.modules.get("ecomrlve.envs.gym_api")
    if gym_api is not None:
        gym_api.register_envs()
    return spec


def unregister_env(env_id: str) -> None:
    """Undo `register_env` (its Gymnasium id too). Built-in environments cannot be removed."""
    if env_id in BUILTIN_IDS:
        raise ValueError(f"{env_id} is built in and cannot be unregistered")
    if _SPECS.pop(env_id, None) is None:
        raise ValueError(f"unknown env_id {env_id!r}")
    retract_answer(env_id)
    retract_axes(env_id)
    gym_api = sys.modules.get("ecomrlve.envs.gym_api")
    if gym_api is not None:
        gym_api.unregister_env_id(env_id)


def spec_for(env_id: str) -> EnvSpec:
    try:
        return _SPECS[env_id]
    except KeyError:
        raise ValueError(f"unknown env_id {env_id!r}; known: {', '.join(ENV_IDS)}") from None


def env_class(env_id: str) -> type:
    return resolve(spec_for(env_id).env_class)


def make_env(env_id: str, catalog: CatalogLike, difficulty: int = 0):
    """A fresh environment `env_id` over `catalog` (shared, never copied)."""
    return env_class(env_id)(catalog, difficulty=difficulty)


def journey_kinds() -> tuple[str, ...]:
    """The env ids a journey may chain (`EnvSpec.journey`), by journey_rank."""
    return tuple(s.env_id for s in sorted((s for s in _SPECS.values() if s.journey), key=lambda s: s.journey_rank))


def intent_table() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(env id, intent words) of the journey kinds that declared words, by intent_rank."""
    specs = sorted((s for s in _SPECS.values() if s.journey and s.intent_words), key=lambda s: s.intent_rank)
    return tuple((s.env_id, s.intent_words) for s in specs)


def resolve_envs(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Env ids from a collection name ("C4"), an env id, or a comma-separated / list mix of
    both; order kept, duplicates dropped. Raises ValueError naming an unknown entry."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        ids = COLLECTIONS.get(part.upper()) or ((part,) if part in _SPECS else None)
        if ids is None:
            raise ValueError(f"unknown environment or collection {part!r}")
        out += [i for i in ids if i not in out]
    if not out:
        raise ValueError("no environments given")
    return tuple(out)


# --------------------------------------------------------------------------- the built-in eight
_ORACLE = "ecomrlve.policies.oracle"
_HEURISTIC = "ecomrlve.policies.heuristic"
BUILTIN_SPECS: tuple[EnvSpec, ...] = (
    EnvSpec("E_PD", "ecomrlve.envs.discovery:DiscoveryEnv", planner=f"{_ORACLE}.discovery:DiscoveryPlanner",
            heuristic=f"{_HEURISTIC}:recommend_strategy", journey=True, journey_rank=2),
    EnvSpec("E_SUB", "ecomrlve.envs.substitution:SubstitutionEnv",
            planner=f"{_ORACLE}.substitution:SubstitutionPlanner", heuristic=f"{_HEURISTIC}:recommend_strategy",
            intent_words=("sold out", "out of stock", "alternative"), intent_rank=2, journey=True, journey_rank=1),
    EnvSpec("E_CART", "ecomrlve.envs.cart:CartEnv", planner=f"{_ORACLE}.cart:CartPlanner",
            heuristic=f"{_HEURISTIC}:cart_strategy", intent_words=("cart",), intent_rank=3, journey=True, journey_rank=0),
    EnvSpec("E_RETURN", "ecomrlve.envs.returns:ReturnEnv", planner=f"{_ORACLE}.returns:ReturnPlanner",
            heuristic=f"{_HEURISTIC}:return_strategy", intent_words=("return",), intent_rank=0, journey=True, journey_rank=3),
    EnvSpec("E_STATUS", "ecomrlve.envs.status:StatusEnv", planner=f"{_ORACLE}.status:StatusPlanner",
            heuristic=f"{_HEURISTIC}:status_strategy", intent_words=("order",), intent_rank=4, journey=True, journey_rank=4),
    EnvSpec("E_POLICY", "ecomrlve.envs.policy:PolicyEnv", planner=f"{_ORACLE}.policy:PolicyPlanner",
            heuristic=f"{_HEURISTIC}:policy_strategy",
            intent_words=("policy", "can i", "how many days", "fee", "warranty", "member"), intent_rank=5,
            journey=True, journey_rank=5),
    EnvSpec("E_BUNDLE", "ecomrlve.envs.bundle:BundleEnv", planner=f"{_ORACLE}.bundle:BundlePlanner",
            heuristic=f"{_HEURISTIC}:bundle_strategy", intent_words=("categories:",), intent_rank=1, journey=True, journey_rank=6),
    EnvSpec("E_JOURNEY", "ecomrlve.envs.journey:JourneyEnv", planner=f"{_ORACLE}.journey:JourneyPlanner",
            heuristic=f"{_HEURISTIC}:journey_strategy"),
)
BUILTIN_IDS: tuple[str, ...] = tuple(s.env_id for s in BUILTIN_SPECS)

C1 = ("E_CART",)
C2 = C1 + ("E_SUB",)
C4 = C2 + ("E_PD", "E_RETURN")
C8 = C4 + ("E_STATUS", "E_POLICY", "E_BUNDLE", "E_JOURNEY")
COLLECTIONS: dict[str, tuple[str, ...]] = {"C1": C1, "C2": C2, "C4": C4, "C8": C8}

for _spec in BUILTIN_SPECS:
    register_env(_spec)
