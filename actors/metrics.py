"""Ray metrics of the rollout system (`ray.util.metrics`), exported by every node's metrics
agent to Prometheus and shown by the Ray dashboard.

Prometheus names get Ray's ``ray_`` prefix (and ``_total`` / ``_bucket`` suffixes where the
exporter adds them), e.g. ``ray_ecomrlve_episodes_finished_total{env_id="E_CART"}``.

| metric | kind | tags |
|---|---|---|
| ecomrlve_episodes_finished | counter | env_id, policy |
| ecomrlve_episodes_correct | counter | env_id, policy |
| ecomrlve_episode_reward | histogram of r_total + 1 (buckets must be positive) | env_id |
| ecomrlve_episode_difficulty | histogram | env_id |
| ecomrlve_episode_turns | histogram | env_id |
| ecomrlve_difficulty_h / ecomrlve_difficulty_l | gauge (curriculum window) | env_id |
| ecomrlve_search_latency_ms | histogram (router, per request) | shards |
| ecomrlve_search_batch_size | histogram (router -> shard fan-out) | shards |
| ecomrlve_shopper_latency_ms | histogram (env worker -> shopper deployment) | backend |
| ecomrlve_queue_depth | gauge | queue (driver_pending, driver_inflight, worker_active, ...) |
| ecomrlve_episodes_per_second | gauge (driver) | |
| ecomrlve_train_reward / ecomrlve_train_success_rate | gauge (train driver, per step) | |
| ecomrlve_train_step_seconds | histogram (train step wall time) | |
| ecomrlve_train_generation_tokens_per_second | gauge (engine tokens / engine busy time) | |
| ecomrlve_train_update_tokens_per_second | gauge (learner tokens / update time) | |
| ecomrlve_train_groups_dropped | counter (dynamic sampling) | |
| ecomrlve_train_staleness | gauge (max versions behind of the trained data) | |
| ecomrlve_train_outside_llm_share | gauge (episode time not spent awaiting the LLM) | |
| ecomrlve_train_version | gauge (weight version on the engine) | |

Metric objects are created lazily, once per process; `get_metrics()` returns the process's
instance. Outside a Ray worker/driver (plain unit tests) every call is a no-op.
"""

from __future__ import annotations

import threading
from typing import Mapping

_LOCK = threading.Lock()
_INSTANCE: "RolloutMetrics | None" = None

LATENCY_MS_BUCKETS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
DIFFICULTY_BUCKETS = [d + 0.5 for d in range(0, 31)]
REWARD_BUCKETS = [0.01, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 1.9, 1.99, 2.0]  # r_total + 1
TURN_BUCKETS = [1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 8.5, 10.5, 15.5, 20.5, 40.5]
BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


class RolloutMetrics:
    def __init__(self):
        from ray.util.metrics import Counter, Gauge, Histogram

        self.episodes = Counter("ecomrlve_episodes_finished", "Episodes finished", tag_keys=("env_id", "policy"))
        self.correct = Counter("ecomrlve_episodes_correct", "Episodes solved (is_correct)", tag_keys=("env_id", "policy"))
        self.reward = Histogram("ecomrlve_episode_reward", "r_total + 1 of finished episodes", REWARD_BUCKETS,
                                tag_keys=("env_id",))
        self.difficulty = Histogram("ecomrlve_episode_difficulty", "Difficulty of finished episodes",
                                    DIFFICULTY_BUCKETS, tag_keys=("env_id",))
        self.turns = Histogram("ecomrlve_episode_turns", "Agent turns per episode", TURN_BUCKETS, tag_keys=("env_id",))
        self.level_h = Gauge("ecomrlve_difficulty_h", "Curriculum window upper bound h", tag_keys=("env_id",))
        self.level_l = Gauge("ecomrlve_difficulty_l", "Curriculum window lower bound l", tag_keys=("env_id",))
        self.search_latency = Histogram("ecomrlve_search_latency_ms", "Sharded search latency per request (ms)",
                                        LATENCY_MS_BUCKETS, tag_keys=("shards",))
        self.search_batch = Histogram("ecomrlve_search_batch_size", "Requests per shard fan-out", BATCH_BUCKETS,
                                      tag_keys=("shards",))
        self.shopper_latency = Histogram("ecomrlve_shopper_latency_ms", "Shopper deployment latency (ms)",
                                         LATENCY_MS_BUCKETS, tag_keys=("backend",))
        self.queue = Gauge("ecomrlve_queue_depth", "Queue depths of the rollout system", tag_keys=("queue",))
        self.eps = Gauge("ecomrlve_episodes_per_second", "Driver's episodes per second")
        self.train = {k: Gauge(f"ecomrlve_train_{k}", d) for k, d in (
            ("reward", "Mean r_total of the last train step"), ("success_rate", "Success rate of the last step"),
            ("generation_tokens_per_second", "Generated tokens per second of engine busy time, last step"),
            ("update_tokens_per_second", "Learner tokens per second of the last update"),
            ("staleness", "Max weight versions behind of the last step's trajectories"),
            ("outside_llm_share", "Share of episode time not spent awaiting the policy engine"),
            ("version", "Weight version on the policy engine"))}
        self.train_step_s = Histogram("ecomrlve_train_step_seconds", "Train step wall time (s)",
                                      [1, 2, 5, 10, 20, 30, 60, 120, 300, 600])
        self.train_dropped = Counter("ecomrlve_train_groups_dropped", "Groups dropped by dynamic sampling")

    # ------------------------------------------------------------------ records
    def episode(self, env_id: str, policy: str, r_total: float, is_correct: bool, difficulty: int, turns: int):
        tags = {"env_id": env_id, "policy": policy}
        self.episodes.inc(1, tags)
        if is_correct:
            self.correct.inc(1, tags)
        env = {"env_id": env_id}
        self.reward.observe(float(r_total) + 1.0, env)
        self.difficulty.observe(float(difficulty), env)
        self.turns.observe(float(turns), env)

    def levels(self, windows: Mapping[str, tuple[int, int]]):
        for env_id, (lo, hi) in windows.items():
            self.level_l.set(lo, {"env_id": env_id})
            self.level_h.set(hi, {"env_id": env_id})

    def search(self, latency_ms: float, n_shards: int, batch: int | None = None):
        tags = {"shards": str(n_shards)}
        self.search_latency.observe(latency_ms, tags)
        if batch is not None:
            self.search_batch.observe(float(batch), tags)

    def shopper(self, latency_ms: float, backend: str):
        self.shopper_latency.observe(latency_ms, {"backend": backend})

    def queue_depth(self, queue: str, depth: int | float):
        self.queue.set(float(depth), {"queue": queue})

    def episodes_per_second(self, value: float):
        self.eps.set(float(value))

    def train_step(self, m: Mapping):
        """One train step's figures (a `metrics.jsonl` record of `ecomrlve.actors.train.Trainer`)."""
        for key, field in (("reward", "reward_mean"), ("success_rate", "success_rate"),
                           ("generation_tokens_per_second", "generation_tokens_per_s"),
                           ("update_tokens_per_second", "update_tokens_per_s"), ("staleness", "staleness_max"),
                           ("outside_llm_share", "outside_llm_share"), ("version", "engine_version")):
            self.train[key].set(float(m.get(field, 0.0)))
        self.train_step_s.observe(float(m.get("step_s", 0.0)))
        if m.get("groups_dropped"):
            self.train_dropped.inc(float(m["groups_dropped"]))


class _NoMetrics:
    def __getattr__(self, name):
        return lambda *a, **k: None


def get_metrics():
    """This process's metrics (a no-op object when Ray is not initialised)."""
    global _INSTANCE
    if _INSTANCE is not None:
        return _INSTANCE
    try:
        import ray

        if not ray.is_initialized():
            return _NoMetrics()
    except ImportError:  # pragma: no cover
        return _NoMetrics()
    with _LOCK:
        if _INSTANCE is None:
            _INSTANCE = RolloutMetrics()
    return _INSTANCE
