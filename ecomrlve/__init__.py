"""ecomrlve: adaptive, verifiable RL environments for e-commerce shopping agents.

The public API::

    from ecomrlve import make_env, Catalog, ENV_IDS, OraclePolicy, HeuristicPolicy

    catalog = Catalog.synthetic(n_products=10_000, seed=0)
    env = make_env("E_CART", catalog)

Importing ``ecomrlve`` registers the Gymnasium ids ``ecomrlve/<ENV_ID>-v0`` when Gymnasium is
installed (``pip install "ecomrlve[gym]"``). Subpackages: `ecomrlve.envs` (the domain core:
no Ray, no torch), `ecomrlve.catalog_service` (catalog data, search and its Ray shards),
`ecomrlve.policies` (oracle, heuristic, LLM policies, DAPO), `ecomrlve.scheduler` (the
curriculum) and `ecomrlve.actors` (the Ray actor system and the ``ecomrlve`` command line).
In the source tree these are the top-level folders ``envs/``, ``catalog_service/``,
``policies/``, ``scheduler/`` and ``actors/``.
"""

from __future__ import annotations

import importlib.util

from .catalog_service import Catalog
from .envs import COLLECTIONS, ENV_IDS, ShopEnv, make_env
from .policies import HeuristicPolicy, OraclePolicy

__all__ = ["COLLECTIONS", "Catalog", "ENV_IDS", "HeuristicPolicy", "OraclePolicy", "ShopEnv", "make_env"]

if importlib.util.find_spec("gymnasium") is not None:
    from .envs import gym_api as _gym_api  # noqa: F401  (registers ecomrlve/<ENV_ID>-v0)
