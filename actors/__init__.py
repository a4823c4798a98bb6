"""The Ray actor system: env workers, the shopper Serve deployment, the driver, metrics,
run directories and the ``ecomrlve`` command line.

Submodules import Ray; import them directly (``from ecomrlve.actors.driver import Driver,
RunConfig``). The names below are resolved lazily so ``import actors`` stays cheap.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "Driver": "ecomrlve.actors.driver",
    "RunConfig": "ecomrlve.actors.driver",
    "RunResult": "ecomrlve.actors.driver",
    "Episode": "ecomrlve.actors.rollout",
    "play": "ecomrlve.actors.rollout",
    "EnvWorker": "ecomrlve.actors.env_worker",
    "PolicyClient": "ecomrlve.actors.env_worker",
    "LocalPolicyClient": "ecomrlve.actors.env_worker",
    "deploy_shopper": "ecomrlve.actors.shopper_service",
    "ShopperClient": "ecomrlve.actors.shopper_service",
    "TrajectoryWriter": "ecomrlve.actors.run_dir",
    "get_metrics": "ecomrlve.actors.metrics",
    "init_ray": "ecomrlve.actors.ray_session",
    "main": "ecomrlve.actors.cli",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ecomrlve.actors' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
