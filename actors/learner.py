"""The learner: DAPO updates on batches of trajectories, versioned weights for the engines.

`LearnerCore` is plain Python (torch, no Ray) so it is testable on its own; `Learner` is the
Ray actor around it (``Learner.options(num_gpus=1).remote(...)``).

    core = LearnerCore(model, tokenizer, DAPOConfig(), max_staleness=1)
    stats = core.update(trajectories)      # staleness check, dynamic sampling, one DAPO step
    weights, version, checksum = core.weights(dtype=engine_dtype)
    engine.load_weights(weights, version, checksum)

Versions: the learner's version counts optimizer steps; weights sampled at version v are
``core.version - v`` steps stale. `update` refuses trajectories staler than
``max_staleness`` (counted in ``stats["stale_dropped"]``), so an asynchronous driver can
never train on data from a policy too far behind.

Through Ray, trajectories arrive as ObjectRefs (``learner.update_refs.remote([ref, ...])``):
the driver routes refs and never fetches the payloads; `push` puts the weights in the
object store once and has every engine load them (``engine.load_weights.remote(ref, v, sum)``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

from ecomrlve.policies.dapo import DAPOConfig, Trajectory, dapo_update, filter_groups, make_optimizer, maybe_lora

__all__ = ["LearnerCore", "Learner", "flatten_trajectories", "trajectory_of"]


def flatten_trajectories(items: Sequence[Any]) -> list[Trajectory]:
    """Trajectories from a list whose items are trajectories or lists of them."""
    out: list[Trajectory] = []
    for it in items:
        if isinstance(it, Trajectory):
            out.append(it)
        elif isinstance(it, (list, tuple)):
            out += flatten_trajectories(it)
        else:
            raise TypeError(f"expected Trajectory objects, got {type(it).__name__}")
    return out


def trajectory_of(tokens: Any, task: dict, reward: dict, max_new_tokens: int, dapo_cfg: DAPOConfig) -> Trajectory:
    """One episode as a learner `Trajectory`: its token record (`EpisodeTokens` or its
    dict), reward = r_total plus the soft overlong penalty of its worst turn, group = the
    task id."""
    from ecomrlve.policies.codec import EpisodeTokens
    from ecomrlve.policies.dapo import overlong_penalty

    ep = tokens if isinstance(tokens, EpisodeTokens) else EpisodeTokens.from_dict(tokens or {"turns": []})
    lengths = [len(t.completion_ids) for t in ep.turns]
    truncated = [t.finish_reason == "length" for t in ep.turns]
    pen = min((overlong_penalty(n, max_new_tokens, dapo_cfg.overlong_buffer, dapo_cfg.overlong_factor, tr)
               for n, tr in zip(lengths, truncated)), default=0.0)
    r_total = float(reward.get("r_total", -1.0))
    return Trajectory(ep.segments(), r_total + pen, int(task["task_id"]), ep.min_version(), lengths, truncated,
                      {"env_id": task["env_id"], "difficulty": int(task["difficulty"]), "r_total": r_total,
                       "overlong_penalty": pen, "is_correct": bool(reward.get("is_correct", False)),
                       "termination_reason": str(reward.get("termination_reason", ""))})


class LearnerCore:
    def __init__(self, model, tokenizer, cfg: DAPOConfig | None = None, device: str = "cpu",
                 max_staleness: int = 1, version: int = 0):
        import torch

        self.cfg = cfg or DAPOConfig()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        model, self.lora = maybe_lora(model, self.cfg)
        self.model = model.to(self.device)
        self.model.eval()
        self.optimizer = make_optimizer(self.model, self.cfg)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.max_staleness = int(max_staleness)
        self.version = int(version)
        self.steps = 0
        self.history: list[dict] = []

    def update(self, trajectories: Sequence[Trajectory]) -> dict:
        """Staleness check -> dynamic sampling -> one DAPO step (when anything is left)."""
        t0 = time.perf_counter()
        trajectories = flatten_trajectories(trajectories)
        fresh = [t for t in trajectories if self.version - t.version <= self.max_staleness]
        stale = len(trajectories) - len(fresh)
        kept, dropped = filter_groups(fresh)
        stats = dapo_update(self.model, self.optimizer, kept, self.cfg, self.pad_id, self.device) if kept else {
            "stepped": False, "trajectories": 0, "policy_tokens": 0, "tokens": 0}
        if stats["stepped"]:
            self.version += 1
            self.steps += 1
        stats.update({"received": len(trajectories), "stale_dropped": stale, "groups_dropped": dropped,
                      "groups_kept": len({t.group for t in kept}), "version": self.version,
                      "update_s": time.perf_counter() - t0})
        stats["tokens_per_s"] = stats.get("tokens", 0) / stats["update_s"] if stats["update_s"] else 0.0
        self.history.append(stats)
        return stats

    def weights(self, dtype=None, names: Sequence[str] | None = None) -> tuple[dict, int, str]:
        """(state dict in `dtype`, version, checksum) for the engines."""
        from ecomrlve.policies.engines import export_weights, weights_checksum

        sd = export_weights(self.model, dtype=dtype, names=names)
        return sd, self.version, weights_checksum(sd)

    # ---- checkpoints
    def save(self, directory, chat=None) -> Path:
        """``model/`` (with `chat`, the run's `ChatSettings`, as ``model/chat.json``),
        ``optimizer.pt`` and ``learner.json`` under `directory`."""
        import torch

        from ecomrlve.policies.models import save_model

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_model(self.model, self.tokenizer, d / "model", chat=chat)
        torch.save(self.optimizer.state_dict(), d / "optimizer.pt")
        (d / "learner.json").write_text(json.dumps({"version": self.version, "steps": self.steps,
                                                     "config": self.cfg.as_dict()}, indent=2) + "\n")
        return d

    def load_optimizer(self, directory) -> None:
        import torch

        d = Path(directory)
        state = json.loads((d / "learner.json").read_text())
        self.version = int(state["version"])
        self.steps = int(state["steps"])
        opt = d / "optimizer.pt"
        if opt.exists():
            self.optimizer.load_state_dict(torch.load(opt, map_location=self.device, weights_only=True))


class LearnerImpl:
    """Ray actor body: builds the model itself (so weights never cross the driver)."""

    def __init__(self, model_name: str, cfg: dict | None = None, device: str = "cpu", max_staleness: int = 1,
                 resume_dir: str | None = None, dtype: str | None = None, threads: int | None = None):
        from ecomrlve.policies.models import load_model, set_torch_threads

        set_torch_threads(threads, device)
        src = str(Path(resume_dir) / "model") if resume_dir else model_name
        model, tok = load_model(src, device=device, dtype=dtype or "float32", train=False)
        self.core = LearnerCore(model, tok, DAPOConfig(**(cfg or {})), device, max_staleness)
        if resume_dir:
            self.core.load_optimizer(resume_dir)

    def _metrics(self):
        if not hasattr(self, "_m"):
            try:
                from ray.util.metrics import Gauge, Histogram

                self._m = (Histogram("ecomrlve_learner_step_seconds", "DAPO update wall time",
                                     boundaries=[0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300]),
                           Gauge("ecomrlve_learner_version", "learner weight version"),
                           Gauge("ecomrlve_learner_tokens_per_second", "tokens per second of the last update"),
                           Gauge("ecomrlve_learner_groups_dropped", "groups dropped by dynamic sampling, last update"))
            except Exception:  # noqa: BLE001 - metrics are optional
                self._m = None
        return self._m

    def update_refs(self, refs: Sequence[Any]) -> dict:
        """`refs`: ObjectRefs (or values) of trajectory lists; resolved here, not in the driver."""
        import ray

        items = [ray.get(r) if isinstance(r, ray.ObjectRef) else r for r in refs]
        stats = self.core.update(items)
        m = self._metrics()
        if m is not None:
            step, version, tps, dropped = m
            if stats.get("stepped"):
                step.observe(stats["update_s"])
                tps.set(stats["tokens_per_s"])
            version.set(stats["version"])
            dropped.set(stats["groups_dropped"])
        return stats

    def push(self, engines: Sequence[Any], dtype: str | None = None) -> dict:
        """Put the current weights in the object store once; every engine loads them and
        verifies the checksum. Returns {"version", "checksum", "engines": [checksums]}."""
        import ray

        from ecomrlve.policies.models import _dtype

        sd, version, checksum = self.core.weights(dtype=_dtype(dtype))
        ref = ray.put(sd)
        got = ray.get([e.load_weights.remote(ref, version, checksum) for e in engines])
        return {"version": version, "checksum": checksum, "engines": got}

    def version(self) -> int:
        return self.core.version

    def save(self, directory: str, chat=None) -> str:
        return str(self.core.save(directory, chat))

    def history(self) -> list[dict]:
        return list(self.core.history)


def __getattr__(name):
    if name == "Learner":
        import ray

        return ray.remote(max_restarts=0)(LearnerImpl)
    raise AttributeError(name)
