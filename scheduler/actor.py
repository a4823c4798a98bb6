"""`CurriculumScheduler`: the one named Ray actor that owns the curriculum.

Env workers and the driver lease tasks from it and report outcomes to it. It checkpoints the
curriculum state as JSON (atomic write: temp file, fsync, rename) every `checkpoint_every`
reports, after every lease (so a restarted scheduler never reuses a task id) and at
`shutdown()`, and restores exactly (`restore(path)`, or automatically at
construction when its checkpoint file already exists, which is what happens when Ray
restarts the actor after a crash).

    sched = create_scheduler(["E_CART"], checkpoint_path="runs/x/curriculum.json")
    tasks = ray.get(sched.lease.remote(16))
    ray.get(sched.report.remote([{"env_id": ..., "difficulty": ..., "is_correct": ..., "task_id": ...}]))
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import ray

from .curriculum import Curriculum, CurriculumConfig

SCHEDULER_NAME = "ecomrlve-curriculum"

__all__ = ["CurriculumScheduler", "create_scheduler", "get_scheduler", "atomic_write_json", "SCHEDULER_NAME"]


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as JSON to `path` so that a reader sees the old or the new file, never
    a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class CurriculumScheduler:
    def __init__(
        self,
        env_ids: Sequence[str],
        config: dict | CurriculumConfig | None = None,
        seed: int = 0,
        checkpoint_path: str | None = None,
        checkpoint_every: int = 10,
        tasks: Sequence[dict] | None = None,
    ):
        if isinstance(config, dict):
            config = CurriculumConfig.from_dict(config)
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = max(1, int(checkpoint_every))
        self._since_checkpoint = 0
        self.restored_from: str | None = None
        if checkpoint_path and Path(checkpoint_path).exists():
            self.cur = _load(checkpoint_path)  # restarted after a crash: continue from disk
            self.restored_from = str(checkpoint_path)
        else:
            self.cur = Curriculum(env_ids, config, seed=seed, tasks=tasks)

    def lease(self, n: int) -> list[dict]:
        tasks = [t.as_dict() for t in self.cur.lease(n)]
        if self.checkpoint_path and tasks:
            # a restart must never hand out a task id twice: persist the counter now
            self.checkpoint()
        return tasks

    def report(self, outcomes: list) -> int:
        accepted = self.cur.report(outcomes)
        self._since_checkpoint += 1
        if self.checkpoint_path and self._since_checkpoint >= self.checkpoint_every:
            self.checkpoint()
        return accepted

    def state(self) -> dict:
        return self.cur.state()

    def pending(self) -> list[dict]:
        """Leased tasks without an outcome yet (after a restore: the ones to run again)."""
        return [t.as_dict() for t in self.cur.pending_tasks()]

    def summary(self) -> dict:
        return {"levels": self.cur.summary(), "pending": len(self.cur.pending), "next_task": self.cur.next_task,
                "restored_from": self.restored_from}

    def checkpoint(self, path: str | None = None) -> str | None:
        path = path or self.checkpoint_path
        if not path:
            return None
        atomic_write_json(path, self.cur.state())
        self._since_checkpoint = 0
        return str(path)

    def restore(self, path: str) -> dict:
        self.cur = _load(path)
        self.restored_from = str(path)
        return self.cur.state()

    def shutdown(self) -> str | None:
        """Final checkpoint; the caller then kills the actor (or lets the job end)."""
        return self.checkpoint()


def _load(path) -> Curriculum:
    try:
        state = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"curriculum checkpoint {path} is not valid JSON: {exc}") from None
    return Curriculum.from_state(state)


def create_scheduler(
    env_ids: Sequence[str],
    config: dict | CurriculumConfig | None = None,
    seed: int = 0,
    checkpoint_path: str | None = None,
    checkpoint_every: int = 10,
    name: str | None = SCHEDULER_NAME,
    namespace: str | None = None,
    scheduling_strategy: Any = None,
    tasks: Sequence[dict] | None = None,
):
    """Start the named scheduler actor (or return the live one of that name);
    `scheduling_strategy` places it (e.g. on the node holding `checkpoint_path`); `tasks`:
    serve exactly this list, no difficulty adaptation (evaluation)."""
    opts: dict = {}
    if scheduling_strategy is not None:
        opts["scheduling_strategy"] = scheduling_strategy
    if name:
        opts.update(name=name, get_if_exists=True)
        if namespace:
            opts["namespace"] = namespace
    if checkpoint_path:
        checkpoint_path = str(Path(checkpoint_path).resolve())
    return CurriculumScheduler.options(**opts).remote(
        list(env_ids), config, seed, checkpoint_path, checkpoint_every, None if tasks is None else list(tasks)
    )


def get_scheduler(name: str = SCHEDULER_NAME, namespace: str | None = None):
    return ray.get_actor(name, namespace=namespace)
