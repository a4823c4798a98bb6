"""RLlib / Ray Tune registration of the eight environments.

    from ecomrlve.actors.rllib import register_rllib_envs
    register_rllib_envs()                   # ecomrlve/E_PD-v0 ... ecomrlve/E_JOURNEY-v0
    config = PPOConfig().environment("ecomrlve/E_CART-v0", env_config={"difficulty": 3})

The names are the Gymnasium ids (`ecomrlve.envs.gym_api.GYM_IDS`); each creator builds an
`ecomrlve.envs.gym_api.ShopGymEnv` (JSON text spaces) from ``env_config``:

- ``difficulty`` (int, default 0)
- the catalog, one of: ``catalog`` (a catalog object, pickled to every worker: fine for small
  ones), ``catalog_dir`` (a directory from ``ecomrlve catalog build``, loaded once per worker
  process), or ``catalog_size`` / ``catalog_seed`` (a synthetic catalog, default 10,000 / 0,
  built once per worker process).

Ray is imported only inside `register_rllib_envs`, so this module imports without Ray.
"""

from __future__ import annotations

from typing import Any, Mapping

from ecomrlve.envs.gym_api import GYM_IDS, ShopGymEnv, resolve_catalog

__all__ = ["EnvCreator", "register_rllib_envs", "make_gym_env", "ENV_CONFIG_KEYS"]

ENV_CONFIG_KEYS = ("difficulty", "catalog", "catalog_dir", "catalog_size", "catalog_seed", "render_mode")


def _load_dir(path: str):
    from ecomrlve.catalog_service import Catalog

    return Catalog.load(path)


def make_gym_env(env_id: str, env_config: Mapping[str, Any] | None = None) -> ShopGymEnv:
    """A `ShopGymEnv` for `env_id` configured by `env_config` (see the module docstring)."""
    cfg = dict(env_config or {})
    unknown = sorted(set(cfg) - set(ENV_CONFIG_KEYS))
    if unknown:
        raise ValueError(f"unknown env_config key(s) {', '.join(unknown)}; known: {', '.join(ENV_CONFIG_KEYS)}")
    catalog = cfg.get("catalog")
    if catalog is None and cfg.get("catalog_dir"):
        catalog = resolve_catalog(_load_dir, {"path": str(cfg["catalog_dir"])})
    elif catalog is None:
        catalog = resolve_catalog("ecomrlve.catalog_service:Catalog.synthetic",
                                  {"n_products": int(cfg.get("catalog_size", 10_000)),
                                   "seed": int(cfg.get("catalog_seed", 0))})
    return ShopGymEnv(env_id, catalog=catalog, difficulty=int(cfg.get("difficulty", 0)),
                      render_mode=cfg.get("render_mode"))


class EnvCreator:
    """Picklable ``env_config -> env`` creator for one environment (RLlib's EnvContext is a
    dict subclass; its worker/vector indices are ignored: RLlib seeds ``reset`` itself)."""

    def __init__(self, env_id: str):
        if env_id not in GYM_IDS:
            raise ValueError(f"unknown env_id {env_id!r}; known: {', '.join(GYM_IDS)}")
        self.env_id = env_id

    def __call__(self, env_config: Mapping[str, Any] | None = None) -> ShopGymEnv:
        return make_gym_env(self.env_id, env_config)

    def __repr__(self) -> str:
        return f"EnvCreator({self.env_id!r})"


def register_rllib_envs() -> list[str]:
    """``ray.tune.registry.register_env`` for every environment under its Gymnasium id.
    Call it after ``ray.init()`` so the registrations reach every worker (before works too:
    Ray flushes them at init)."""
    from ray.tune.registry import register_env

    names = []
    for env_id, name in GYM_IDS.items():
        register_env(name, EnvCreator(env_id))
        names.append(name)
    return names
