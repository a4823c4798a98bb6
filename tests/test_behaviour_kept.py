"""Behaviour pinned across refactors: the transcript and reward of every environment.

For each env x difficulty in {0, 6, 12} x seeds 0..4, the oracle and the heuristic play one
episode on a fixed synthetic catalog; the SHA-256 of the messages (the transcript the agent
saw) and of the reward dict is compared with the value recorded before the refactor. A
change here means the environments, the shopper or a policy changed what they do: if that
is intended, say why in the commit and re-record with
``python tests/test_behaviour_kept.py --record``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from ecomrlve.catalog_service import Catalog
from ecomrlve.envs import ENV_IDS, make_env
from ecomrlve.policies import HeuristicPolicy, OraclePolicy

DIFFICULTIES = (0, 6, 12)
SEEDS = range(5)
RECORD = Path(__file__).with_name("behaviour_hashes.json")


def _episode_digest(env, policy, seed: int, difficulty: int) -> str:
    obs, info = env.reset(seed=seed, options={"difficulty": difficulty})
    policy.reset()
    for _ in range(64):
        obs, _, terminated, truncated, info = env.step(policy.act(obs))
        if terminated or truncated:
            break
    blob = json.dumps([obs["messages"], info["reward"]], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def cell_digests(catalog, env_id: str) -> dict[str, str]:
    """{"oracle@d" | "heuristic@d": sha256 over the cell's 5 seeds} for one env."""
    env = make_env(env_id, catalog)
    out = {}
    for d in DIFFICULTIES:
        for name, policy in (("oracle", OraclePolicy(env)), ("heuristic", HeuristicPolicy())):
            h = hashlib.sha256()
            for seed in SEEDS:
                h.update(_episode_digest(env, policy, seed, d).encode())
            out[f"{name}@{d}"] = h.hexdigest()
    return out


@pytest.fixture(scope="module")
def small_catalog():
    return Catalog.synthetic(n_products=3_000, seed=11)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_transcripts_and_rewards_unchanged(small_catalog, env_id):
    recorded = json.loads(RECORD.read_text())[env_id]
    assert cell_digests(small_catalog, env_id) == recorded


if __name__ == "__main__" and "--record" in sys.argv:
    cat = Catalog.synthetic(n_products=3_000, seed=11)
    RECORD.write_text(json.dumps({e: cell_digests(cat, e) for e in ENV_IDS}, indent=1, sort_keys=True) + "\n")
    print(f"recorded {RECORD}")
