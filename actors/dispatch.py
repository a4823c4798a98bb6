"""`Dispatcher`: plays tasks on an `ActorSystem`'s env workers, the one dispatch loop of
``ecomrlve run``, ``ecomrlve train`` (Ray backend) and ``ecomrlve eval --address``.

    disp = Dispatcher(system, batch_size=4, max_concurrent=32, lease=lambda n: ...)
    disp.submit(tasks)            # dispatched at once as far as the workers have room
    calls = disp.wait(episode_ids)   # blocks until every one of them is written

Tasks are sent in batches of ``batch_size`` to the workers with room (at most
``max_concurrent + batch_size`` episodes queued per worker); `lease(n)`, when given, is asked
for up to ``n`` more tasks whenever the queue runs dry and a worker has room (``ecomrlve run``
streams tasks from the curriculum this way). Each call returns refs: small summaries, the
episode records, and (``method="run_rollouts"``, training) the learner items. The records
ref goes to the writer without being fetched; a task counts as done (`done`, keyed by
episode id) once its summary is back, and stays done once its records are written.

Workers report outcomes to the scheduler themselves (it ignores a task reported twice).

Fault tolerance: a dead worker's in-flight calls fail with `RayActorError`; their tasks go
back to the front of the queue and run again (Ray restarts the worker, elsewhere if its node
is gone); the worker gets no tasks until it answers a ping. A finished batch whose records
were lost with their node before the writer fetched them runs again too. The writer drops
an episode id it has already written. So every task submitted is written exactly once. A
task that failed ``max_failures`` times stops the run.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import ray
from ray.exceptions import ObjectLostError, RayActorError, RayTaskError

from .metrics import get_metrics

MAX_TASK_FAILURES = 5  # a task whose dispatch failed this often stops the run

__all__ = ["Dispatcher", "Call", "episode_id", "MAX_TASK_FAILURES"]


def episode_id(task: dict) -> int:
    """A task's episode id: ``episode_id`` when set (training rollouts), else its task id."""
    return int(task.get("episode_id", task["task_id"]))


@dataclass
class Call:
    """One batch sent to one worker, and the refs its call returned."""

    worker: int
    tasks: list
    summaries: Any
    records: Any
    learner_items: Any = None  # run_rollouts only


class Dispatcher:
    def __init__(self, system, batch_size: int, max_concurrent: int, method: str = "run_tasks",
                 lease: Callable[[int], list] | None = None, log: Callable[[str], None] = lambda s: None,
                 on_call: Callable[[Call], None] | None = None, max_failures: int = MAX_TASK_FAILURES):
        if method not in ("run_tasks", "run_rollouts"):
            raise ValueError(f"method must be run_tasks or run_rollouts, got {method!r}")
        self.workers = system.workers
        self.writer = system.writer
        self.batch_size = batch_size
        self.cap = max_concurrent + batch_size  # keep one batch queued behind the running ones
        self.method = method
        self.lease = lease
        self.log = log
        self.on_call = on_call
        self.max_failures = max_failures
        self.queue: collections.deque = collections.deque()
        self.inflight: dict = {}  # summaries ref -> Call
        self.load = [0] * len(self.workers)  # episodes in flight per worker
        self.done: dict[int, dict] = {}  # episode id -> summary
        self.calls: dict[int, Call] = {}  # episode id -> the call that played it
        self.writes: dict = {}  # writer call ref -> Call
        self.down: dict[int, tuple] = {}  # worker whose call failed -> (ping ref or None, when sent)
        self.failures: collections.Counter = collections.Counter()
        self.retried = 0
        self._next_worker = 0

    # ------------------------------------------------------------------ sending
    def submit(self, tasks: Iterable[dict]) -> None:
        """Queue `tasks` behind those already queued and dispatch what fits now."""
        self.queue.extend(tasks)
        self.dispatch()

    def dispatch(self) -> None:
        """Send queued tasks (leasing more when the queue is empty and `lease` is set) to
        every worker that is up and has room."""
        lease_chunk = max(self.batch_size * len(self.workers), self.batch_size)
        progressed = True
        while progressed:
            progressed = False
            for k in range(len(self.workers)):
                w = (self._next_worker + k) % len(self.workers)
                if w in self.down or self.load[w] + self.batch_size > self.cap:
                    continue
                if not self.queue and self.lease is not None:
                    self.queue.extend(self.lease(lease_chunk))
                if not self.queue:
                    break
                batch = [self.queue.popleft() for _ in range(min(self.batch_size, len(self.queue)))]
                refs = getattr(self.workers[w], self.method).remote(batch)
                call = Call(w, batch, *refs)
                self.inflight[call.summaries] = call
                self.load[w] += len(batch)
                progressed = True
            self._next_worker = (self._next_worker + 1) % len(self.workers)
        metrics = get_metrics()
        metrics.queue_depth("driver_queued", len(self.queue))
        metrics.queue_depth("driver_inflight", sum(self.load))

    # ------------------------------------------------------------------ collecting
    @property
    def busy(self) -> bool:
        """Whether anything is in flight, being written, or waiting for a worker to return."""
        return bool(self.inflight or self.writes or self.down)

    def poll(self, timeout: float = 0.5) -> list[Call]:
        """Wait up to `timeout` for a call to finish; handle failures (re-queue), send
        finished records to the writer, settle writes and bring workers back. Returns the
        calls that finished."""
        if not self.inflight:  # only records left to write, or every worker is restarting
            pending = list(self.writes) + [p for p, _ in self.down.values() if p is not None]
            if pending:
                ray.wait(pending, num_returns=1, timeout=timeout)
            else:
                time.sleep(min(timeout, 0.1))
        finished = []
        ready, _ = ray.wait(list(self.inflight), num_returns=1, timeout=timeout) if self.inflight else ([], [])
        for ref in ready:
            call = self.inflight.pop(ref)
            self.load[call.worker] -= len(call.tasks)
            try:
                summaries = ray.get(ref)
            except (RayActorError, ObjectLostError, RayTaskError) as exc:
                # the worker died (or the call failed): run these tasks again, elsewhere or
                # on the restarted worker
                self._requeue(call, exc, f"worker {call.worker}")
                if isinstance(exc, RayActorError):
                    self.down.setdefault(call.worker, (None, 0.0))
                continue
            for s in summaries:
                self.done.setdefault(int(s["episode_id"]), s)
            for t in call.tasks:
                self.calls[episode_id(t)] = call
            self.writes[self.writer.write.remote(call.records)] = call  # the ref, never the payload
            finished.append(call)
            if self.on_call is not None:
                self.on_call(call)
        self._settle_writes(keep=16 if len(self.writes) > 32 else None)  # backpressure on the writer
        self._check_down()
        self.dispatch()
        return finished

    def wait(self, episode_ids: Iterable[int]) -> list[Call]:
        """Block until every one of `episode_ids` (submitted before) is done and written;
        returns their calls (each once, in order of first appearance)."""
        ids = list(episode_ids)
        while True:
            missing = [e for e in ids if e not in self.done]
            unwritten = {id(c) for c in self.writes.values()}
            if not missing and not any(id(self.calls[e]) in unwritten for e in ids):
                break
            if not self.busy and not self.queue:
                raise RuntimeError(f"episodes {missing[:5]} were never dispatched")
            self.poll()
        out, seen = [], set()
        for e in ids:
            c = self.calls[e]
            if id(c) not in seen:
                seen.add(id(c))
                out.append(c)
        return out

    def drain(self) -> None:
        """Wait for every open writer call."""
        while self.writes:
            self._settle_writes(keep=0)

    # ------------------------------------------------------------------ internals
    def _requeue(self, call: Call, exc: Exception, what: str) -> None:
        """Run `call`'s tasks again (a lost worker or lost records); give up on a task
        that keeps failing."""
        for t in call.tasks:
            self.failures[t["task_id"], t.get("rollout", 0)] += 1
            if self.failures[t["task_id"], t.get("rollout", 0)] > self.max_failures:
                raise RuntimeError(f"task {t['task_id']} failed {self.max_failures} times: {exc}") from exc
            self.done.pop(episode_id(t), None)
            self.calls.pop(episode_id(t), None)
        self.retried += len(call.tasks)
        self.log(f"{what} lost {len(call.tasks)} tasks ({type(exc).__name__}); re-dispatching them")
        self.queue.extendleft(reversed(call.tasks))

    def _check_down(self) -> None:
        """A worker whose call failed gets no tasks until it answers a ping (Ray is
        restarting it, on another node if its node is gone); a failed ping is retried."""
        now = time.perf_counter()
        for w, (ping, sent) in list(self.down.items()):
            if ping is None:
                if now - sent > 0.5:
                    self.down[w] = (self.workers[w].ping.remote(), now)
                continue
            if not ray.wait([ping], timeout=0)[0]:
                continue
            try:
                ray.get(ping)
            except (RayActorError, RayTaskError):
                self.down[w] = (None, now)
                continue
            del self.down[w]
            self.log(f"worker {w} is back")

    def _settle_writes(self, keep: int | None = None) -> None:
        """Collect finished writer calls (waiting until at most `keep` are open); a batch
        whose records were lost (their node died before the writer fetched them) runs
        again."""
        if not self.writes:
            return
        n = len(self.writes) if keep is None else max(len(self.writes) - keep, 0)
        ready, _ = ray.wait(list(self.writes), num_returns=max(min(n, len(self.writes)), 1),
                            timeout=0 if keep is None else None)
        for ref in ready:
            call = self.writes.pop(ref)
            try:
                ray.get(ref)
            except (ObjectLostError, RayTaskError) as exc:
                if isinstance(exc, RayTaskError) and not isinstance(getattr(exc, "cause", None), ObjectLostError):
                    raise
                self._requeue(call, exc, "the writer")
