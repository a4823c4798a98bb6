"""The Ray actor system: env workers, the shopper Serve deployment, the driver, metrics,
run directories and the ``ecomrlve`` command line.

Submodules import Ray; import them directly (``from actors.driver import Driver,
RunConfig``). The names below are resolved lazily so ``import actors`` stays cheap.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "Driver": "actors.driver",
    "RunConfig": "actors.driver",
    "RunResult": "actors.driver",
    "EnvWorker": "actors.env_worker",
    "PolicyClient": "actors.env_worker",
    "LocalPolicyClient": "actors.env_worker",
    "ActorPolicyClient": "actors.env_worker",
    "deploy_shopper": "actors.shopper_service",
    "ShopperClient": "actors.shopper_service",
    "TrajectoryWriter": "actors.run_dir",
    "get_metrics": "actors.metrics",
    "init_ray": "actors.cli",
    "main": "actors.cli",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'actors' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
