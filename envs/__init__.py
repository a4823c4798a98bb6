"""The domain core: world, tools, shopper, difficulty, rewards, the eight built-in environments
and the registry through which an environment of any module joins them (`register_env`).

No Ray, no torch: importable and testable on its own.
"""

from .actions import Action, Answer, InvalidAction, parse_action
from .base import ShopEnv
from .catalog import CatalogLike, SearchFilters, SearchHits
from .difficulty import AXIS_NAMES, Axes, AxisSpec, axes_for
from .registry import (
    C1, C2, C4, C8, COLLECTIONS, ENV_IDS, EnvSpec, env_class, make_env, register_env, resolve_envs, unregister_env,
)

__all__ = [
    "Action", "Answer", "InvalidAction", "parse_action", "ShopEnv", "CatalogLike", "SearchFilters",
    "SearchHits", "AXIS_NAMES", "Axes", "AxisSpec", "axes_for", "C1", "C2", "C4", "C8", "COLLECTIONS", "ENV_IDS",
    "EnvSpec", "env_class", "make_env", "register_env", "resolve_envs", "unregister_env",
]
