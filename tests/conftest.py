"""Shared fixtures: one synthetic catalog per test session (read-only, shared like in
production), and helpers to run a policy through an episode."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def catalog():
    from catalog_service import Catalog

    return Catalog.synthetic(n_products=20_000, seed=0)


def run_episode(env, policy, seed: int, difficulty: int, max_steps: int = 64):
    """Play one episode; returns (final obs, final info)."""
    obs, info = env.reset(seed=seed, options={"difficulty": difficulty})
    if hasattr(policy, "reset"):
        policy.reset()
    for _ in range(max_steps):
        obs, reward, terminated, truncated, info = env.step(policy.act(obs))
        if terminated or truncated:
            return obs, info
    raise AssertionError("episode did not end")
