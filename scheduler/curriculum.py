"""The adaptive difficulty curriculum (RLVE's rule, docs/architecture.md "Curriculum"), as a plain class.

No Ray, no torch: the Ray actor in `ecomrlve.scheduler.actor` wraps this class, and tests drive it
directly.

The rule, per environment:

- a window ``[l, h]`` of difficulties, starting at ``[0, 0]``;
- every task's difficulty is drawn uniformly from the window;
- only outcomes at ``d == h`` count; after ``tau_num`` (32) of them the accuracy is checked:
  if ``correct / tau_num >= tau_acc`` (0.9) then ``h += 1`` and ``l = max(l, h - window)``
  (window 4); the counters reset after every check, whether or not ``h`` moved;
- optional *down mode* (off by default): when the accuracy of a check is below
  ``down_floor``, ``h -= 1`` (never below 0) and ``l = min(l, h)``.

Tasks are ``(env_id, difficulty, seed, task_id)``. ``task_id`` comes from one global counter
and ``seed = first_seed + task_id``, so no two tasks of a curriculum share a seed: no episode
repeats. The curriculum remembers which leased tasks have not reported yet; an outcome for a
task that is not pending (already reported, never leased) is ignored, so a task that was
re-run after a worker failure is counted once. Outcomes without a ``task_id`` are always
counted (direct use, tests).

Fixed task list (evaluation): ``Curriculum(env_ids, tasks=[...])`` serves exactly those
tasks, in order (task ids 0..n-1 by position unless a task names its own), and never adapts:
`lease` hands out the next ones (fewer, then none, once the list is used up), `report`
counts outcomes per environment but moves no window.

``state()`` is a JSON-serialisable dict (including the numpy generator's state) and
``Curriculum.from_state(state)`` rebuilds an identical curriculum: same future leases, same
future level changes.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

STATE_VERSION = 1

__all__ = ["CurriculumConfig", "Curriculum", "Task", "Outcome", "EnvLevel", "STATE_VERSION"]


class Task(NamedTuple):
    env_id: str
    difficulty: int
    seed: int
    task_id: int

    def as_dict(self) -> dict:
        return self._asdict()


@dataclass(frozen=True)
class Outcome:
    """What the curriculum needs to know about one finished episode."""

    env_id: str
    difficulty: int
    is_correct: bool
    task_id: int | None = None

    @classmethod
    def coerce(cls, obj: Any) -> "Outcome":
        """Accept an `Outcome`, a mapping with the same keys, or a 3/4-tuple."""
        if isinstance(obj, Outcome):
            return obj
        if isinstance(obj, Mapping):
            missing = [k for k in ("env_id", "difficulty", "is_correct") if k not in obj]
            if missing:
                raise ValueError(f"outcome is missing field(s): {', '.join(missing)}")
            tid = obj.get("task_id")
            return cls(str(obj["env_id"]), int(obj["difficulty"]), bool(obj["is_correct"]),
                       None if tid is None else int(tid))
        if isinstance(obj, (tuple, list)) and len(obj) in (3, 4):
            return cls(str(obj[0]), int(obj[1]), bool(obj[2]), None if len(obj) == 3 or obj[3] is None else int(obj[3]))
        raise ValueError(f"not an outcome: {obj!r}")


@dataclass(frozen=True)
class CurriculumConfig:
    tau_num: int = 32  # outcomes at d == h per check
    tau_acc: float = 0.9  # accuracy needed to raise h
    window: int = 4  # l = max(l, h - window) after a raise
    down: bool = False  # lower h when a check's accuracy is below down_floor
    down_floor: float = 0.5
    max_difficulty: int | None = None  # h never rises above this (None: unbounded)
    first_seed: int = 0  # seed of task 0; task i gets first_seed + i

    def __post_init__(self):
        if self.tau_num < 1:
            raise ValueError(f"tau_num must be >= 1, got {self.tau_num}")
        if not 0 <= self.tau_acc <= 1:
            raise ValueError(f"tau_acc must be in [0, 1], got {self.tau_acc}")
        if self.window < 0:
            raise ValueError(f"window must be >= 0, got {self.window}")
        if not 0 <= self.down_floor <= 1:
            raise ValueError(f"down_floor must be in [0, 1], got {self.down_floor}")
        if self.max_difficulty is not None and self.max_difficulty < 0:
            raise ValueError(f"max_difficulty must be >= 0, got {self.max_difficulty}")
        if self.first_seed < 0:
            raise ValueError(f"first_seed must be >= 0, got {self.first_seed}")

    @classmethod
    def from_dict(cls, d: Mapping) -> "CurriculumConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown curriculum config field(s): {', '.join(sorted(unknown))}")
        return cls(**d)


@dataclass
class EnvLevel:
    """Difficulty state of one environment."""

    l: int = 0
    h: int = 0
    n: int = 0  # outcomes at d == h since the last check
    correct: int = 0  # correct ones among them
    episodes: int = 0  # all counted outcomes of this env (any difficulty)
    successes: int = 0
    checks: int = 0

    def window(self) -> tuple[int, int]:
        return self.l, self.h


def _exact(x: float) -> Fraction:
    """The decimal a user wrote (0.9 -> 9/10), not the binary float's expansion."""
    return Fraction(repr(float(x)))


class Curriculum:
    """RLVE's adaptive difficulty rule over a set of environments (see module docstring)."""

    def __init__(self, env_ids: Sequence[str], config: CurriculumConfig | None = None, seed: int = 0,
                 tasks: Sequence[Any] | None = None):
        env_ids = tuple(env_ids)
        if not env_ids:
            raise ValueError("a curriculum needs at least one environment")
        if len(set(env_ids)) != len(env_ids):
            raise ValueError(f"duplicate environments in {env_ids}")
        self.env_ids = env_ids
        self.config = config or CurriculumConfig()
        self.seed = int(seed)
        self.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed)))
        self.levels: dict[str, EnvLevel] = {e: EnvLevel() for e in env_ids}
        self.next_task = 0
        self.pending: dict[int, Task] = {}
        self.reports = 0  # report() calls
        self.ignored = 0  # outcomes ignored (duplicate / unknown task, unknown env)
        self.events: list[dict] = []  # level changes, in order
        self.fixed: list[Task] | None = None if tasks is None else [_fixed_task(t, i, env_ids)
                                                                    for i, t in enumerate(tasks)]
        if self.fixed is not None and len({t.task_id for t in self.fixed}) != len(self.fixed):
            raise ValueError("tasks: task ids must be unique")

    # ------------------------------------------------------------------ leasing
    def lease(self, n: int) -> list[Task]:
        """`n` new tasks: env uniform over the curriculum's envs, difficulty uniform over
        that env's window, seed from the global counter. With a fixed task list: its next
        `n` tasks (fewer once it is used up)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"lease(n): n must be a non-negative int, got {n!r}")
        if self.fixed is not None:
            out = self.fixed[self.next_task:self.next_task + int(n)]
            self.next_task += len(out)
            self.pending.update((t.task_id, t) for t in out)
            return list(out)
        out: list[Task] = []
        for _ in range(int(n)):
            env_id = self.env_ids[int(self.rng.integers(len(self.env_ids)))]
            lvl = self.levels[env_id]
            d = int(self.rng.integers(lvl.l, lvl.h + 1))
            tid = self.next_task
            self.next_task += 1
            task = Task(env_id, d, self.config.first_seed + tid, tid)
            self.pending[tid] = task
            out.append(task)
        return out

    def pending_tasks(self) -> list[Task]:
        """Leased tasks whose outcome has not been reported, by task id."""
        return [self.pending[t] for t in sorted(self.pending)]

    # ------------------------------------------------------------------ outcomes
    def report(self, outcomes: Iterable[Any]) -> int:
        """Feed finished episodes; returns how many were counted (the rest were duplicates,
        tasks never leased, or unknown environments)."""
        self.reports += 1
        accepted = 0
        for raw in outcomes:
            o = Outcome.coerce(raw)
            if o.task_id is not None:
                task = self.pending.pop(o.task_id, None)
                if task is None:
                    self.ignored += 1
                    continue
                if (task.env_id, task.difficulty) != (o.env_id, o.difficulty):
                    raise ValueError(
                        f"outcome of task {o.task_id} says ({o.env_id}, d={o.difficulty}) but the task "
                        f"was ({task.env_id}, d={task.difficulty})"
                    )
            lvl = self.levels.get(o.env_id)
            if lvl is None:
                self.ignored += 1
                continue
            accepted += 1
            lvl.episodes += 1
            lvl.successes += int(o.is_correct)
            if self.fixed is not None or o.difficulty != lvl.h:  # a fixed list never adapts
                continue
            lvl.n += 1
            lvl.correct += int(o.is_correct)
            if lvl.n >= self.config.tau_num:
                self._check(o.env_id, lvl)
        return accepted

    def _check(self, env_id: str, lvl: EnvLevel) -> None:
        cfg = self.config
        acc = Fraction(lvl.correct, lvl.n)
        old = (lvl.l, lvl.h)
        if acc >= _exact(cfg.tau_acc):
            if cfg.max_difficulty is None or lvl.h < cfg.max_difficulty:
                lvl.h += 1
                lvl.l = max(lvl.l, lvl.h - cfg.window)
        elif cfg.down and acc < _exact(cfg.down_floor) and lvl.h > 0:
            lvl.h -= 1
            lvl.l = min(lvl.l, lvl.h)
        lvl.checks += 1
        if (lvl.l, lvl.h) != old:
            self.events.append(
                {"env_id": env_id, "l": lvl.l, "h": lvl.h, "accuracy": float(acc), "episodes": lvl.episodes,
                 "task_counter": self.next_task}
            )
        lvl.n = 0
        lvl.correct = 0

    # ------------------------------------------------------------------ views
    def window(self, env_id: str) -> tuple[int, int]:
        return self.levels[env_id].window()

    def windows(self) -> dict[str, tuple[int, int]]:
        return {e: lvl.window() for e, lvl in self.levels.items()}

    def summary(self) -> dict[str, dict]:
        return {
            e: {"l": v.l, "h": v.h, "episodes": v.episodes, "successes": v.successes,
                "at_h": v.n, "correct_at_h": v.correct}
            for e, v in self.levels.items()
        }

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        """Everything needed to continue exactly, as plain JSON-serialisable values."""
        return {
            "version": STATE_VERSION,
            "env_ids": list(self.env_ids),
            "config": asdict(self.config),
            "seed": self.seed,
            "rng": _jsonable(self.rng.bit_generator.state),
            "levels": {e: asdict(v) for e, v in self.levels.items()},
            "next_task": self.next_task,
            "pending": [[t.task_id, t.env_id, t.difficulty, t.seed] for t in self.pending_tasks()],
            "reports": self.reports,
            "ignored": self.ignored,
            "events": copy.deepcopy(self.events),
            "tasks": None if self.fixed is None else [[t.task_id, t.env_id, t.difficulty, t.seed] for t in self.fixed],
        }

    @classmethod
    def from_state(cls, state: Mapping) -> "Curriculum":
        if not isinstance(state, Mapping):
            raise ValueError("curriculum state must be an object")
        version = state.get("version")
        if version != STATE_VERSION:
            raise ValueError(f"curriculum state version {version!r} is not supported (expected {STATE_VERSION})")
        try:
            fixed = state.get("tasks")
            fixed = None if fixed is None else [Task(str(t[1]), int(t[2]), int(t[3]), int(t[0])) for t in fixed]
            cur = cls(state["env_ids"], CurriculumConfig.from_dict(state["config"]), seed=state["seed"], tasks=fixed)
            bg = cur.rng.bit_generator
            bg.state = copy.deepcopy(dict(state["rng"]))
            cur.levels = {e: EnvLevel(**v) for e, v in state["levels"].items()}
            if set(cur.levels) != set(cur.env_ids):
                raise ValueError("levels do not match env_ids")
            cur.next_task = int(state["next_task"])
            cur.pending = {int(t[0]): Task(str(t[1]), int(t[2]), int(t[3]), int(t[0])) for t in state["pending"]}
            cur.reports = int(state["reports"])
            cur.ignored = int(state["ignored"])
            cur.events = copy.deepcopy(list(state["events"]))
        except KeyError as exc:
            raise ValueError(f"curriculum state is missing field {exc.args[0]!r}") from None
        return cur

    def to_json(self) -> str:
        return json.dumps(self.state(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Curriculum":
        return cls.from_state(json.loads(text))


def _fixed_task(t: Any, index: int, env_ids: Sequence[str]) -> Task:
    """One entry of a fixed task list (a `Task`, or a mapping with env_id, difficulty, seed
    and optionally task_id); ValueError naming the field that is wrong."""
    if isinstance(t, Task):
        task = t
    else:
        try:
            task = Task(str(t["env_id"]), int(t["difficulty"]), int(t["seed"]), int(t.get("task_id", index)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"tasks[{index}]: needs env_id, difficulty and seed ({exc})") from None
    if task.env_id not in env_ids:
        raise ValueError(f"tasks[{index}].env_id: {task.env_id!r} is not one of {', '.join(env_ids)}")
    if task.difficulty < 0:
        raise ValueError(f"tasks[{index}].difficulty must be >= 0, got {task.difficulty}")
    return task


def _jsonable(obj: Any) -> Any:
    """numpy scalars / arrays inside a bit-generator state -> plain Python."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
