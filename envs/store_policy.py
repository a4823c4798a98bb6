"""The store policy knowledge base, generated per episode from its own random stream.

`generate_policy(rng)` returns the `StorePolicy` whose rules `policy_search` shows and whose
return windows the return tools enforce."""

from __future__ import annotations

import numpy as np

from .world import StorePolicy


def generate_policy(rng: np.random.Generator) -> StorePolicy:
    """A store policy (placeholder defaults until the full generator lands)."""
    return StorePolicy()
