"""`PolicyEngine`: the Ray actor that owns a generation engine and its weight version.

    engine = PolicyEngine.options(num_gpus=1).remote("smollm2", device="cuda", engine="vllm")
    ray.get(engine.generate.remote(prompts, temperature=1.0, max_new_tokens=128, seed=0))
    ray.get(engine.load_weights.remote(weights_ref, version, checksum))   # from the Learner
    action = await engine.act.remote(obs, key)      # env workers: LLMPolicy inside, micro-batched
    records = ray.get(engine.pop_episodes.remote([key, ...]))  # EpisodeTokens as dicts

Token-level API (`generate`): prompts in, `Completion`s out (ids, logprobs, finish reason,
the version that produced them). Policy API (`act`): concurrent calls from many episodes
are gathered for ``batch_wait_ms`` (or until ``max_batch``) and answered by one batched
generate; the engine keeps each episode's `EpisodeTokens` under its key until someone pops
them (the rollout side turns them into learner trajectories).

Weight updates arrive as a state dict or its ObjectRef (Ray resolves a top-level ref
argument before the call); the engine copies them in place, re-hashes its parameters and
refuses the new version when the checksum differs (`WeightSyncError`).

Generation runs in one worker thread, so the actor's event loop keeps accepting requests
and weight loads never interleave with a decode step.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Hashable, Sequence

__all__ = ["PolicyEngineImpl", "PolicyEngine", "EngineClient", "build_engine"]


def build_engine(model_name: str, device: str = "cpu", engine: str = "hf", dtype: str | None = None,
                 **kwargs):
    """(engine, tokenizer) for `model_name` on `device`: ``hf`` or ``vllm``."""
    from ecomrlve.policies.models import load_model, load_tokenizer, local_dir

    if engine == "vllm":
        from ecomrlve.policies.engines import VLLMEngine

        path, _ = local_dir(model_name)
        tok = load_tokenizer(model_name)
        return VLLMEngine(path, dtype=dtype or "bfloat16", stop_ids=[tok.eos_token_id], **kwargs), tok
    if engine != "hf":
        raise ValueError(f"engine must be hf or vllm, got {engine!r}")
    from ecomrlve.policies.engines import HFEngine

    model, tok = load_model(model_name, device=device, dtype=dtype)
    return HFEngine(model, tok, device=device, **kwargs), tok


class PolicyEngineImpl:
    def __init__(self, model_name: str, device: str = "cpu", engine: str = "hf", dtype: str | None = None,
                 temperature: float = 1.0, max_new_tokens: int = 256, prefill: str | None = None,
                 tool_format: str | None = None, lenient: bool | None = None, max_batch: int = 64,
                 batch_wait_ms: float = 5.0, threads: int | None = None,
                 engine_kwargs: dict | None = None):
        from ecomrlve.policies.chat_settings import ChatSettings
        from ecomrlve.policies.llm_policy import LLMPolicy
        from ecomrlve.policies.models import set_torch_threads

        set_torch_threads(threads, device)
        self.engine, self.tokenizer = build_engine(model_name, device, engine, dtype, **(engine_kwargs or {}))
        # chat settings left None come from the model directory's chat.json (else the default)
        self.chat = ChatSettings.for_model(model_name, prefill, tool_format, lenient)
        self.policy = LLMPolicy(self.engine, codec=self.chat.codec(self.tokenizer), temperature=temperature,
                                max_new_tokens=max_new_tokens)
        self.max_batch = max(1, int(max_batch))
        self.batch_wait = max(0.0, float(batch_wait_ms)) / 1e3
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="engine")
        self._pending: list[tuple[dict, Hashable, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None
        self.acts = 0
        self.batches = 0

    async def _run(self, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    # ---- token level
    async def generate(self, prompts: Sequence[Sequence[int]], temperature: float = 1.0, max_new_tokens: int = 256,
                       seed: int | None = None, stop_ids: Sequence[int] | None = None):
        return await self._run(self.engine.generate, prompts, temperature=temperature,
                               max_new_tokens=max_new_tokens, seed=seed, stop_ids=stop_ids)

    async def load_weights(self, state_dict, version: int, checksum: str | None = None) -> str:
        import ray

        if isinstance(state_dict, ray.ObjectRef):
            state_dict = await state_dict
        return await self._run(self.engine.load_weights, state_dict, version, checksum)

    async def version(self) -> int:
        return int(self.engine.version)

    async def checksum(self) -> str | None:
        return getattr(self.engine, "checksum", None)

    async def weights_checksum(self, names: Sequence[str] | None = None) -> str:
        return await self._run(self.engine.weights_checksum, names)

    async def stop_ids(self) -> list[int]:
        return list(self.policy.codec.stop_ids)

    async def info(self) -> dict:
        stats = self.engine.stats() if hasattr(self.engine, "stats") else {}
        return {"version": int(self.engine.version), "acts": self.acts, "batches": self.batches, **stats}

    # ---- policy level (env workers)
    async def act(self, obs: dict, key: Hashable | None = None) -> Any:
        """The action for `obs` in episode `key` (default: derived from the observation's
        env id and opening messages; pass a key when two episodes can look alike)."""
        if key is None:
            key = episode_key(obs)
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((obs, key, fut))
        if len(self._pending) >= self.max_batch:
            await self._flush()
        elif self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._delayed_flush())
        return await fut

    async def _delayed_flush(self):
        await asyncio.sleep(self.batch_wait)
        await self._flush()

    async def _flush(self):
        while self._pending:
            batch, seen, rest = [], set(), []
            for item in self._pending:  # one turn per episode per batch
                if item[1] in seen or len(batch) >= self.max_batch:
                    rest.append(item)
                else:
                    seen.add(item[1])
                    batch.append(item)
            self._pending = rest
            try:
                actions = await self._run(self.policy.act_batch, [b[0] for b in batch], [b[1] for b in batch])
            except Exception as exc:  # noqa: BLE001 - answer every waiter
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.acts += len(batch)
            self.batches += 1
            for (_, _, fut), a in zip(batch, actions):
                if not fut.done():
                    fut.set_result(a)

    async def pop_episodes(self, keys: Sequence[Hashable]) -> list[dict | None]:
        out = []
        for k in keys:
            ep = self.policy.pop_episode(k)
            out.append(ep.to_dict() if ep is not None else None)
        return out


def episode_key(obs: dict) -> str:
    """A stable key from the observation's opening (system + first user message)."""
    import hashlib

    msgs = obs.get("messages") or []
    head = "\x00".join(str(m.get("content", "")) for m in msgs[:2])
    return f"{obs.get('env_id', '?')}:{hashlib.sha1(head.encode()).hexdigest()[:16]}"


class _EngineEpisode:
    def __init__(self, handle, key: str):
        self.handle, self.key = handle, key

    async def act(self, obs):
        return await self.handle.act.remote(obs, self.key)


class EngineClient:
    """A `PolicyClient` (ecomrlve.actors.env_worker's seam) that sends every observation to a
    PolicyEngine actor with a unique per-episode key (``<env_id>:<seed>:<uuid>``, also
    ``episode.key``).

    `finish` (called by `EnvWorker.run_rollouts` when an episode ends) pops the episode's
    token record from the engine and, when `max_new_tokens` is set (training), returns the
    learner `Trajectory` (reward = r_total + the soft overlong penalty of `dapo`, group = the
    task id) with summary fields ``reward``, ``group``, ``version``, ``policy_tokens``. An
    episode that raised, or whose record is missing, yields no trajectory: an environment or
    engine failure is not the policy's fault and must not move its advantages."""

    def __init__(self, handle, name: str = "llm", max_new_tokens: int | None = None, dapo: dict | None = None):
        self.handle, self.name = handle, name
        self.max_new_tokens = max_new_tokens
        self.dapo = dict(dapo or {})

    def episode(self, env):
        import uuid

        return _EngineEpisode(self.handle, f"{env.env_id}:{env.seed}:{uuid.uuid4().hex[:12]}")

    async def finish(self, episode, task: dict, record: dict):
        if episode is None:  # failed before the first act: the engine holds nothing
            return None, {}
        [tokens] = await self.handle.pop_episodes.remote([episode.key])
        from .learner import trajectory_of
        from .rollout import is_error_reason

        if self.max_new_tokens is None or tokens is None or is_error_reason(record["termination_reason"]):
            return None, {}
        from ecomrlve.policies.dapo import DAPOConfig

        reward = {k: record[k] for k in ("r_total", "is_correct", "termination_reason")}
        traj = trajectory_of(tokens, task, reward, self.max_new_tokens, DAPOConfig(**self.dapo))
        return traj, {"reward": traj.reward, "group": int(task["task_id"]), "version": int(traj.version),
                      "policy_tokens": int(traj.n_tokens), "truncated_replies": int(sum(traj.truncated))}


def __getattr__(name):
    if name == "PolicyEngine":
        import ray

        return ray.remote(max_restarts=1, max_concurrency=1000)(PolicyEngineImpl)
    raise AttributeError(name)
