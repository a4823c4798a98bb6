"""Environment ids, collections and `make_env`."""

from __future__ import annotations

import importlib

from .catalog import CatalogLike

# env id -> "module:Class" (imported on first use)
_ENTRY_POINTS: dict[str, str] = {
    "E_PD": "ecomrlve.envs.discovery:DiscoveryEnv",
    "E_SUB": "ecomrlve.envs.substitution:SubstitutionEnv",
    "E_CART": "ecomrlve.envs.cart:CartEnv",
    "E_RETURN": "ecomrlve.envs.returns:ReturnEnv",
    "E_STATUS": "ecomrlve.envs.status:StatusEnv",
    "E_POLICY": "ecomrlve.envs.policy:PolicyEnv",
    "E_BUNDLE": "ecomrlve.envs.bundle:BundleEnv",
    "E_JOURNEY": "ecomrlve.envs.journey:JourneyEnv",
}
ENV_IDS: tuple[str, ...] = tuple(_ENTRY_POINTS)

C1 = ("E_CART",)
C2 = C1 + ("E_SUB",)
C4 = C2 + ("E_PD", "E_RETURN")
C8 = C4 + ("E_STATUS", "E_POLICY", "E_BUNDLE", "E_JOURNEY")
COLLECTIONS: dict[str, tuple[str, ...]] = {"C1": C1, "C2": C2, "C4": C4, "C8": C8}


def env_class(env_id: str) -> type:
    try:
        target = _ENTRY_POINTS[env_id]
    except KeyError:
        raise ValueError(f"unknown env_id {env_id!r}; known: {', '.join(ENV_IDS)}") from None
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def make_env(env_id: str, catalog: CatalogLike, difficulty: int = 0):
    """A fresh environment `env_id` over `catalog` (shared, never copied)."""
    return env_class(env_id)(catalog, difficulty=difficulty)


def resolve_envs(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Env ids from a collection name ("C4"), an env id, or a comma-separated / list mix of
    both; order kept, duplicates dropped. Raises ValueError naming an unknown entry."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        ids = COLLECTIONS.get(part.upper()) or ((part,) if part in _ENTRY_POINTS else None)
        if ids is None:
            raise ValueError(f"unknown environment or collection {part!r}")
        out += [i for i in ids if i not in out]
    if not out:
        raise ValueError("no environments given")
    return tuple(out)
