"""``ecomrlve eval``: success rate, mean reward and pass^k per environment x difficulty.

    ecomrlve eval --policy heuristic --envs C8 --difficulties 0,3,6,9,12 --seeds 50 --k 4

Tasks. A task is ``(env_id, difficulty, seed)`` with ``seed = EVAL_SEED_BASE + i`` for
``i < --seeds``. Evaluation seeds start at ``EVAL_SEED_BASE = 10**9``; training and curriculum
seeds count up from 0 (``first_seed + task_id``), so the two ranges never meet (a training run
would need 10**9 tasks to reach them).

Trials and pass^k. Each task is played ``n = --trials`` times (default ``n = k``); trial ``j``
hands ``policy_seed = j`` to the policy and nothing else changes, since the environment is
deterministic given (env, d, seed, actions). pass^k is estimated as tau-bench does: a task with
``c`` successes out of ``n`` trials contributes ``C(c, k) / C(n, k)`` (the probability that k
trials drawn without replacement all succeed), averaged over the tasks of a cell; pass^1 is the
success rate. The heuristic and the oracle ignore the seed, so their trials are identical and
pass^k equals pass^1 for them; their first trial is therefore played once and copied to the
other trials (rows marked ``replicated``), unless ``--rerun-deterministic``.

Output directory (``--out``, default ``runs/eval-<UTC timestamp>``):

    episodes.parquet   one row per trial: the run-dir trajectory schema (actors/run_dir.py)
                       plus trial, task_index, policy_seed, replicated
    summary.parquet    one row per env x difficulty: episodes, tasks, success_rate,
                       mean_reward, pass_k, k, n_trials, mean_turns
    summary.md         the markdown table (also printed; rich on a terminal)
    heatmap.png        success rate, pass^k and mean reward per env x difficulty
    config.json        the evaluation's settings (catalog included), read by ``ecomrlve replay``

LLM policies (``hf:<model>``, ``openai:<base url>``, ``vllm:<path>``) are
`ecomrlve.policies.llm_policy.LLMPolicy` over `ecomrlve.policies.engines`; per trial, all tasks of a cell advance
in lockstep (one batched ``act_batch`` per turn, generation seed = the trial index).

Both parquet files load with ``datasets.load_dataset("parquet", data_files=...)``.
Episodes run in this process by default; ``--workers N`` spreads (env, difficulty) cells over
N processes, each building the same catalog (and loading the same engine).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fractions
import json
import math
import sys
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

EVAL_SEED_BASE = 10**9
DEFAULT_CATALOG_SIZE = 20_000
DEFAULT_DIFFICULTIES = (0, 3, 6, 9, 12)
DETERMINISTIC_POLICIES = ("heuristic", "oracle")
ENGINE_PREFIXES = ("hf", "openai", "vllm")
MAX_STEPS = 256

EPISODES_FILE = "episodes.parquet"
SUMMARY_PARQUET = "summary.parquet"
SUMMARY_MD = "summary.md"
HEATMAP_FILE = "heatmap.png"
CONFIG_FILE = "config.json"

__all__ = ["EVAL_SEED_BASE", "EvalConfig", "EvalResult", "run_eval", "pass_hat_k", "summarize", "markdown_table",
           "write_heatmap", "load_catalog", "jsonable", "PolicySpec", "add_eval_commands", "episode_schema",
           "play_episode"]


# --------------------------------------------------------------------------- shared helpers


_catalogs: dict[tuple, Any] = {}
_catalog_lock = threading.Lock()


def load_catalog(catalog_dir: str | None = None, catalog_size: int = DEFAULT_CATALOG_SIZE, catalog_seed: int = 0):
    """A built catalog directory, or the synthetic catalog (size, seed); cached per process."""
    from ecomrlve.catalog_service import Catalog

    key = ("dir", str(catalog_dir)) if catalog_dir else ("synthetic", int(catalog_size), int(catalog_seed))
    with _catalog_lock:
        cat = _catalogs.get(key)
        if cat is None:
            if catalog_dir:
                cat = Catalog.load(catalog_dir)
            else:
                cat = Catalog.synthetic(n_products=int(catalog_size), seed=int(catalog_seed))
            _catalogs[key] = cat
    return cat


def jsonable(obj: Any, _depth: int = 0) -> Any:
    """Plain JSON data from env objects (dataclasses, pydantic models, sets, numpy, Fractions)."""
    if _depth > 64:
        return repr(obj)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, fractions.Fraction):
        return float(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name), _depth + 1) for f in dataclasses.fields(obj)}
    if hasattr(obj, "model_dump") and callable(obj.model_dump):
        return jsonable(obj.model_dump(), _depth + 1)
    if isinstance(obj, dict):
        return {str(k): jsonable(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, _depth + 1) for v in obj]
    if isinstance(obj, (set, frozenset)):
        items = [jsonable(v, _depth + 1) for v in obj]
        try:
            return sorted(items)
        except TypeError:
            return items
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        try:
            return jsonable(item(), _depth + 1)
        except (TypeError, ValueError):
            pass
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return jsonable(tolist(), _depth + 1)
    return repr(obj)


# --------------------------------------------------------------------------- policies


class PolicySpec:
    """``heuristic``, ``oracle``, or an LLM engine spec: ``hf:<model>`` (a local directory or a
    model name `ecomrlve.policies.models.load_model` resolves; HF transformers), ``openai:<base url>``
    (any OpenAI-compatible chat server; the model name comes from ``engine["model"]``, default
    ``"default"``, the key from $OPENAI_API_KEY), ``vllm:<model path>`` (vLLM, GPU).
    LLM policies are `ecomrlve.policies.llm_policy.LLMPolicy` over `ecomrlve.policies.engines`."""

    def __init__(self, spec: str, engine: dict | None = None):
        spec = (spec or "").strip()
        if not spec:
            raise ValueError("policy must not be empty")
        self.spec = spec
        self.engine_options = dict(engine or {})
        if spec in DETERMINISTIC_POLICIES:
            self.kind, self.target = spec, ""
        else:
            prefix, _, target = spec.partition(":")
            if prefix not in ENGINE_PREFIXES or not target:
                raise ValueError(f"unknown policy {spec!r}: use heuristic, oracle, or an engine spec "
                                 f"({', '.join(p + ':...' for p in ENGINE_PREFIXES)})")
            self.kind, self.target = prefix, target
        self._loaded = None

    @property
    def deterministic(self) -> bool:
        return self.kind in DETERMINISTIC_POLICIES

    @property
    def is_llm(self) -> bool:
        return self.kind in ENGINE_PREFIXES

    def check_available(self) -> None:
        """Raise RuntimeError naming what is missing for this policy."""
        import importlib.util

        if not self.is_llm:
            return
        for module in ("ecomrlve.policies.engines", "ecomrlve.policies.llm_policy"):
            if importlib.util.find_spec(module) is None:
                raise RuntimeError(f"policy {self.spec!r} needs the LLM engines ({module}), which this installation "
                                   "does not have; use --policy heuristic or oracle")
        needs = {"hf": ("torch", "transformers"), "vllm": ("vllm", "transformers"), "openai": ()}[self.kind]
        missing = [m for m in needs if importlib.util.find_spec(m) is None]
        if missing:
            raise RuntimeError(f"policy {self.spec!r} needs {', '.join(missing)}: pip install 'ecomrlve[llm]'")

    def _load(self):
        """(engine, tokenizer), loaded once."""
        if self._loaded is None:
            self.check_available()
            from ecomrlve.policies import engines

            opts = self.engine_options
            if self.kind == "hf":
                from ecomrlve.policies.models import load_model

                model, tok = load_model(self.target, device=opts.get("device") or "cpu", dtype=opts.get("dtype"))
                self._loaded = (engines.HFEngine(model, tok), tok)
            elif self.kind == "vllm":
                from ecomrlve.policies.models import load_tokenizer

                tok = load_tokenizer(self.target)
                kw = {"dtype": opts["dtype"]} if opts.get("dtype") else {}
                self._loaded = (engines.VLLMEngine(self.target, **kw), tok)
            else:
                import os

                self._loaded = (engines.OpenAIEngine(self.target, model=opts.get("model") or "default",
                                                     api_key=os.environ.get("OPENAI_API_KEY")), None)
        return self._loaded

    def chat_settings(self):
        """The `ChatSettings` of an ``hf:``/``vllm:`` model: ``engine["prefill"]`` when given,
        else the model directory's ``chat.json``, else the project default. An ``openai:``
        server gets only an explicit prefill (default none)."""
        from ecomrlve.policies.chat_settings import ChatSettings

        prefill = self.engine_options.get("prefill")
        if self.kind == "openai":
            return ChatSettings(prefill=prefill or "")
        return ChatSettings.for_model(self.target, prefill=prefill)

    def llm_policy(self, policy_seed: int):
        """A fresh `LLMPolicy` with generation seed `policy_seed` (tokens are not recorded)."""
        from ecomrlve.policies.llm_policy import LLMPolicy

        engine, tok = self._load()
        opts = self.engine_options
        chat = self.chat_settings()
        return LLMPolicy(engine, tok, temperature=float(opts.get("temperature", 1.0)),
                         max_new_tokens=int(opts.get("max_new_tokens", 256)), prefill=chat.prefill,
                         tool_format=chat.tool_format, lenient=chat.lenient, seed=int(policy_seed), record=False)

    def make(self, env, policy_seed: int):
        """A fresh per-episode policy for `env` (already reset)."""
        if self.kind == "oracle":
            from ecomrlve.policies import OraclePolicy

            return OraclePolicy(env)
        if self.kind == "heuristic":
            from ecomrlve.policies import HeuristicPolicy

            return HeuristicPolicy()
        return self.llm_policy(policy_seed)


# --------------------------------------------------------------------------- episodes


def episode_schema() -> pa.Schema:
    try:
        from ecomrlve.actors.run_dir import TRAJECTORY_SCHEMA
    except ImportError:  # pragma: no cover - run_dir is part of this package
        TRAJECTORY_SCHEMA = pa.schema([])
    extra = [("trial", pa.int32()), ("task_index", pa.int64()), ("policy_seed", pa.int64()), ("replicated", pa.bool_())]
    fields = list(TRAJECTORY_SCHEMA) + [pa.field(n, t) for n, t in extra if n not in TRAJECTORY_SCHEMA.names]
    return pa.schema(fields)


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


def play_episode(env, make_policy: Callable[[], Any], seed: int, difficulty: int,
                 max_steps: int = MAX_STEPS) -> tuple[list, str | None]:
    """Reset `env`, build the policy (``make_policy()``, after the reset) and play it to the
    end. Returns (actions, error or None); an exception is recorded, never raised."""
    actions: list = []
    try:
        obs, _ = env.reset(seed=int(seed), options={"difficulty": int(difficulty)})
        policy = make_policy()
        for _ in range(max_steps):
            action = policy.act(obs)
            actions.append(action)
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                return actions, None
        return actions, f"episode did not end within {max_steps} steps"
    except Exception as exc:  # noqa: BLE001 - one failing episode is a recorded failure, not a crash
        traceback.print_exc(limit=3, file=sys.stderr)
        return actions, f"{type(exc).__name__}: {exc}"


def _record(env, actions, error, *, episode_id, env_id, difficulty, seed, policy, trial, task_index,
            policy_seed, wall_ms) -> dict:
    info = env.reward_info.as_dict() if getattr(env, "reward_info", None) is not None else {}
    return {
        "episode_id": int(episode_id), "env_id": env_id, "difficulty": int(difficulty), "seed": int(seed),
        "actions": _dumps(actions), "messages": _dumps(getattr(env, "messages", [])),
        "r_task": float(info.get("r_task", -1.0)), "r_eff": float(info.get("r_eff", 0.0)),
        "r_hall": float(info.get("r_hall", 0.0)), "r_total": float(info.get("r_total", -1.0)),
        "is_correct": bool(info.get("is_correct", False)) and error is None,
        "termination_reason": f"error: {error}" if error else str(info.get("termination_reason", "")),
        "turns": int(getattr(env, "turn", 0)), "worker": "eval", "policy": policy, "wall_ms": float(wall_ms),
        "trial": int(trial), "task_index": int(task_index), "policy_seed": int(policy_seed), "replicated": False,
    }


# --------------------------------------------------------------------------- config


def _parse_difficulties(spec) -> tuple[int, ...]:
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split(",") if p.strip()]
        try:
            ds = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"difficulties must be comma-separated integers, got {spec!r}") from None
    else:
        ds = tuple(int(d) for d in spec)
    if not ds:
        raise ValueError("difficulties must not be empty")
    from ecomrlve.envs.difficulty import MAX_DIFFICULTY

    bad = [d for d in ds if not 0 <= d <= MAX_DIFFICULTY]
    if bad:
        raise ValueError(f"difficulties must be in [0, {MAX_DIFFICULTY}], got {bad}")
    return tuple(dict.fromkeys(ds))


@dataclass
class EvalConfig:
    policy: str = "heuristic"
    envs: str = "C8"
    difficulties: tuple[int, ...] = DEFAULT_DIFFICULTIES
    seeds: int = 50
    k: int = 4
    trials: int | None = None  # n >= k trials per task; default k
    catalog_size: int = DEFAULT_CATALOG_SIZE
    catalog_seed: int = 0
    catalog_dir: str | None = None
    out: str | None = None
    workers: int = 1
    seed_base: int = EVAL_SEED_BASE
    rerun_deterministic: bool = False
    max_steps: int = MAX_STEPS
    engine: dict = field(default_factory=dict)  # LLM policies: device, dtype, temperature, max_new_tokens, model, prefill
    env_ids: tuple[str, ...] = field(default=(), init=False)

    def validate(self) -> "EvalConfig":
        from ecomrlve.envs import resolve_envs

        self.env_ids = resolve_envs(self.envs)
        self.difficulties = _parse_difficulties(self.difficulties)
        PolicySpec(self.policy, self.engine)
        unknown = sorted(set(self.engine) - {"device", "dtype", "temperature", "max_new_tokens", "model", "prefill"})
        if unknown:
            raise ValueError(f"unknown engine option(s): {', '.join(unknown)}")
        for name in ("seeds", "k", "workers", "max_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.trials is None:
            self.trials = self.k
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or self.trials < self.k:
            raise ValueError(f"trials must be an integer >= k ({self.k}), got {self.trials!r}")
        if not isinstance(self.seed_base, int) or self.seed_base < 0:
            raise ValueError(f"seed_base must be a non-negative integer, got {self.seed_base!r}")
        if self.catalog_dir is None and (not isinstance(self.catalog_size, int) or self.catalog_size < 1):
            raise ValueError(f"catalog_size must be a positive integer, got {self.catalog_size!r}")
        return self

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["difficulties"] = list(self.difficulties)
        d["env_ids"] = list(self.env_ids)
        d["engine"] = dict(self.engine)
        d["shopper"] = "local"
        d["shopper_backend"] = "template"
        d["kind"] = "eval"
        return d


@dataclass
class EvalResult:
    out: Path
    episodes: pa.Table
    summary: list[dict]
    markdown: str
    wall_s: float

    @property
    def files(self) -> dict[str, Path]:
        return {name: self.out / name for name in (EPISODES_FILE, SUMMARY_PARQUET, SUMMARY_MD, HEATMAP_FILE, CONFIG_FILE)}


# --------------------------------------------------------------------------- running


def _cell_jobs(cfg: EvalConfig) -> list[dict]:
    jobs = []
    n = cfg.trials
    for ei, env_id in enumerate(cfg.env_ids):
        for di, d in enumerate(cfg.difficulties):
            base = (ei * len(cfg.difficulties) + di) * cfg.seeds
            jobs.append({"env_id": env_id, "difficulty": d, "task_base": base, "n": n})
    return jobs


_SPECS: dict[tuple[str, str], PolicySpec] = {}  # loaded engines, one per policy spec and process


def _run_cell(job: dict, cfg_dict: dict, catalog=None) -> list[dict]:
    """Play every task and trial of one (env, difficulty) cell."""
    from ecomrlve.envs import make_env

    if catalog is None:
        catalog = load_catalog(cfg_dict["catalog_dir"], cfg_dict["catalog_size"], cfg_dict["catalog_seed"])
    key = (cfg_dict["policy"], json.dumps(cfg_dict.get("engine") or {}, sort_keys=True))
    spec = _SPECS.get(key)
    if spec is None:
        spec = _SPECS[key] = PolicySpec(cfg_dict["policy"], cfg_dict.get("engine"))
    if spec.is_llm:
        return _run_cell_batched(job, cfg_dict, catalog, spec)
    env_id, d, n = job["env_id"], job["difficulty"], job["n"]
    env = make_env(env_id, catalog, difficulty=d)
    replicate = spec.deterministic and not cfg_dict["rerun_deterministic"]
    rows = []
    for i in range(cfg_dict["seeds"]):
        seed = cfg_dict["seed_base"] + i
        task_index = job["task_base"] + i
        first = None
        for trial in range(n):
            episode_id = task_index * n + trial
            if replicate and first is not None:
                rows.append({**first, "episode_id": episode_id, "trial": trial, "policy_seed": trial, "replicated": True})
                continue
            t0 = time.perf_counter()
            actions, error = play_episode(env, lambda: spec.make(env, policy_seed=trial), seed, d,
                                          cfg_dict["max_steps"])
            rec = _record(env, actions, error, episode_id=episode_id, env_id=env_id, difficulty=d, seed=seed,
                          policy=cfg_dict["policy"], trial=trial, task_index=task_index, policy_seed=trial,
                          wall_ms=(time.perf_counter() - t0) * 1e3)
            rows.append(rec)
            first = rec
    return rows


def _run_cell_batched(job: dict, cfg_dict: dict, catalog, spec: PolicySpec) -> list[dict]:
    """LLM policies: per trial, all tasks of the cell advance in lockstep, one batched
    ``act_batch`` per turn (policy seed = the trial index)."""
    from ecomrlve.envs import make_env

    env_id, d, n, seeds = job["env_id"], job["difficulty"], job["n"], cfg_dict["seeds"]
    rows = []
    for trial in range(n):
        t0 = time.perf_counter()
        policy = spec.llm_policy(trial)
        envs = [make_env(env_id, catalog, difficulty=d) for _ in range(seeds)]
        obs: dict[int, dict] = {}
        actions: dict[int, list] = {i: [] for i in range(seeds)}
        errors: dict[int, str] = {}
        finished: set[int] = set()
        for i, env in enumerate(envs):
            try:
                obs[i], _ = env.reset(seed=cfg_dict["seed_base"] + i, options={"difficulty": d})
            except Exception as exc:  # noqa: BLE001
                errors[i] = f"{type(exc).__name__}: {exc}"
                finished.add(i)
        for _ in range(cfg_dict["max_steps"]):
            live = [i for i in range(seeds) if i not in finished]
            if not live:
                break
            try:
                acts = policy.act_batch([obs[i] for i in live], keys=live)
            except Exception as exc:  # noqa: BLE001 - an engine failure fails these episodes, not the eval
                traceback.print_exc(limit=3, file=sys.stderr)
                for i in live:
                    errors[i] = f"{type(exc).__name__}: {exc}"
                    finished.add(i)
                break
            for i, action in zip(live, acts):
                actions[i].append(action)
                try:
                    obs[i], _, terminated, truncated, _ = envs[i].step(action)
                except Exception as exc:  # noqa: BLE001
                    errors[i] = f"{type(exc).__name__}: {exc}"
                    terminated = True
                if terminated or truncated:
                    finished.add(i)
        wall_ms = (time.perf_counter() - t0) * 1e3 / max(1, seeds)
        for i, env in enumerate(envs):
            error = errors.get(i) or (None if i in finished else f"episode did not end within {cfg_dict['max_steps']} steps")
            task_index = job["task_base"] + i
            rows.append(_record(env, actions[i], error, episode_id=task_index * n + trial, env_id=env_id, difficulty=d,
                                seed=cfg_dict["seed_base"] + i, policy=cfg_dict["policy"], trial=trial,
                                task_index=task_index, policy_seed=trial, wall_ms=wall_ms))
    return rows


def _worker_cell(job: dict, cfg_dict: dict) -> list[dict]:
    return _run_cell(job, cfg_dict)


def run_eval(cfg: EvalConfig, catalog=None, progress: Callable[[int, int], None] | None = None,
             write: bool = True) -> EvalResult:
    """Run the evaluation; write the output directory unless ``write=False``."""
    cfg.validate()
    t0 = time.perf_counter()
    cfg_dict = cfg.as_dict()
    jobs = _cell_jobs(cfg)
    rows: list[dict] = []
    if cfg.workers > 1 and catalog is None:
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_worker_cell, job, cfg_dict) for job in jobs]
            for i, fut in enumerate(futures):
                rows += fut.result()
                if progress:
                    progress(i + 1, len(jobs))
    else:
        if catalog is None:
            catalog = load_catalog(cfg.catalog_dir, cfg.catalog_size, cfg.catalog_seed)
        for i, job in enumerate(jobs):
            rows += _run_cell(job, cfg_dict, catalog)
            if progress:
                progress(i + 1, len(jobs))
    rows.sort(key=lambda r: r["episode_id"])
    table = pa.Table.from_pylist(rows, schema=episode_schema())
    summary = summarize(rows, cfg.k)
    md = markdown_table(summary, cfg)
    out = _out_dir(cfg.out)
    result = EvalResult(out=out, episodes=table, summary=summary, markdown=md, wall_s=time.perf_counter() - t0)
    if write:
        pq.write_table(table, out / EPISODES_FILE, compression="zstd")
        pq.write_table(pa.Table.from_pylist(summary, schema=SUMMARY_SCHEMA), out / SUMMARY_PARQUET)
        (out / SUMMARY_MD).write_text(md)
        (out / CONFIG_FILE).write_text(json.dumps({**cfg_dict, "wall_s": result.wall_s}, indent=2, default=str) + "\n")
        write_heatmap(summary, out / HEATMAP_FILE, cfg.k, title=f"ecomrlve eval: {cfg.policy}")
    return result


def _out_dir(out: str | None) -> Path:
    if out:
        path = Path(out)
    else:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / f"eval-{stamp}"
        i = 1
        while path.exists():
            path = Path("runs") / f"eval-{stamp}-{i}"
            i += 1
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


# --------------------------------------------------------------------------- metrics


def pass_hat_k(c: int, n: int, k: int) -> float:
    """tau-bench's pass^k for one task: C(c, k) / C(n, k), c successes out of n >= k trials."""
    if not 0 <= c <= n or k < 1 or n < k:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got c={c}, n={n}, k={k}")
    return math.comb(c, k) / math.comb(n, k)


SUMMARY_SCHEMA = pa.schema([
    ("env_id", pa.string()), ("difficulty", pa.int32()), ("episodes", pa.int64()), ("tasks", pa.int64()),
    ("n_trials", pa.int32()), ("k", pa.int32()), ("success_rate", pa.float64()), ("mean_reward", pa.float64()),
    ("pass_k", pa.float64()), ("mean_turns", pa.float64()), ("errors", pa.int64()),
])


def summarize(rows: Iterable[dict], k: int) -> list[dict]:
    """One dict per (env, difficulty): success rate and mean reward over all trials, pass^k
    averaged over tasks (each task needs >= k trials)."""
    cells: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        cells.setdefault((r["env_id"], int(r["difficulty"])), []).append(r)
    out = []
    for (env_id, d), rs in cells.items():
        tasks: dict[int, list[bool]] = {}
        for r in rs:
            tasks.setdefault(int(r["seed"]), []).append(bool(r["is_correct"]))
        ns = {len(v) for v in tasks.values()}
        pk = [pass_hat_k(sum(v), len(v), k) for v in tasks.values()]
        out.append({
            "env_id": env_id, "difficulty": d, "episodes": len(rs), "tasks": len(tasks),
            "n_trials": min(ns), "k": k,
            "success_rate": sum(r["is_correct"] for r in rs) / len(rs),
            "mean_reward": sum(r["r_total"] for r in rs) / len(rs),
            "pass_k": sum(pk) / len(pk),
            "mean_turns": sum(r["turns"] for r in rs) / len(rs),
            "errors": sum(str(r["termination_reason"]).startswith("error:") for r in rs),
        })
    order = {e: i for i, e in enumerate(dict.fromkeys(r["env_id"] for r in out))}
    out.sort(key=lambda r: (order[r["env_id"]], r["difficulty"]))
    return out


def markdown_table(summary: Sequence[dict], cfg: EvalConfig | None = None) -> str:
    k = summary[0]["k"] if summary else (cfg.k if cfg else 1)
    head = []
    if cfg is not None:
        head = [f"# ecomrlve eval: policy `{cfg.policy}`", "",
                f"- envs: {', '.join(cfg.env_ids)}; difficulties: {', '.join(map(str, cfg.difficulties))}",
                f"- {cfg.seeds} tasks per cell (seeds {cfg.seed_base} .. {cfg.seed_base + cfg.seeds - 1}), "
                f"{cfg.trials} trials per task, k = {cfg.k}",
                f"- catalog: {cfg.catalog_dir or f'synthetic n={cfg.catalog_size} seed={cfg.catalog_seed}'}", ""]
    lines = head + [f"| env | d | tasks | episodes | success | mean reward | pass^{k} | mean turns |",
                    "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in summary:
        lines.append(f"| {r['env_id']} | {r['difficulty']} | {r['tasks']} | {r['episodes']} | {r['success_rate']:.1%} | "
                     f"{r['mean_reward']:+.3f} | {r['pass_k']:.1%} | {r['mean_turns']:.2f} |")
    if summary:
        n = sum(r["episodes"] for r in summary)
        t = sum(r["tasks"] for r in summary)
        lines.append(f"| **all** | | {t} | {n} | {sum(r['success_rate'] * r['episodes'] for r in summary) / n:.1%} | "
                     f"{sum(r['mean_reward'] * r['episodes'] for r in summary) / n:+.3f} | "
                     f"{sum(r['pass_k'] * r['tasks'] for r in summary) / t:.1%} | "
                     f"{sum(r['mean_turns'] * r['episodes'] for r in summary) / n:.2f} |")
    return "\n".join(lines) + "\n"


def rich_table(summary: Sequence[dict], title: str = "ecomrlve eval"):
    from rich.table import Table

    k = summary[0]["k"] if summary else 1
    t = Table(title=title)
    for col in ("env", "d", "tasks", "episodes", "success", "mean reward", f"pass^{k}", "mean turns"):
        t.add_column(col, justify="left" if col == "env" else "right")
    for r in summary:
        color = "green" if r["success_rate"] >= 0.8 else "yellow" if r["success_rate"] >= 0.4 else "red"
        t.add_row(r["env_id"], str(r["difficulty"]), str(r["tasks"]), str(r["episodes"]),
                  f"[{color}]{r['success_rate']:.1%}[/{color}]", f"{r['mean_reward']:+.3f}", f"{r['pass_k']:.1%}",
                  f"{r['mean_turns']:.2f}")
    return t


def write_heatmap(summary: Sequence[dict], path, k: int, title: str = "ecomrlve eval") -> Path:
    """Three heat maps (success rate, pass^k, mean reward), envs x difficulties (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    envs = list(dict.fromkeys(r["env_id"] for r in summary))
    ds = sorted({r["difficulty"] for r in summary})
    panels = [("success_rate", "success rate", "viridis", 0.0, 1.0, "{:.0%}"),
              ("pass_k", f"pass^{k}", "viridis", 0.0, 1.0, "{:.0%}"),
              ("mean_reward", "mean reward", "RdYlGn", -1.0, 1.0, "{:+.2f}")]
    fig, axes = plt.subplots(1, 3, figsize=(4.2 * 3, 0.9 + 0.45 * max(2, len(envs))), dpi=110, squeeze=False)
    for ax, (key, label, cmap, lo, hi, fmt) in zip(axes[0], panels):
        grid = np.full((len(envs), len(ds)), np.nan)
        for r in summary:
            grid[envs.index(r["env_id"]), ds.index(r["difficulty"])] = r[key]
        im = ax.imshow(grid, cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
        ax.set_xticks(range(len(ds)), [str(d) for d in ds])
        ax.set_yticks(range(len(envs)), envs)
        ax.set_xlabel("difficulty d")
        ax.set_title(label)
        for i in range(len(envs)):
            for j in range(len(ds)):
                v = grid[i, j]
                if not np.isnan(v):
                    frac = (v - lo) / (hi - lo)
                    ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7,
                            color="black" if 0.35 < frac < 0.85 or (cmap == "viridis" and frac >= 0.85) else "white")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- CLI


def add_eval_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate a policy: success, mean reward and pass^k per environment x difficulty",
        description="Play every (env, difficulty, seed) task --trials times (default k) with evaluation seeds "
                    f"(>= {EVAL_SEED_BASE}, disjoint from training seeds) and report success rate, mean reward "
                    "and pass^k; writes episodes.parquet, summary.parquet, summary.md and heatmap.png.")
    p.add_argument("--policy", default="heuristic",
                   help="heuristic, oracle, or an LLM engine spec such as hf:<model> or openai:<url> (default heuristic)")
    p.add_argument("--envs", default="C8", help="collection (C1, C2, C4, C8), env id, or comma-separated mix (default C8)")
    p.add_argument("--difficulties", default=",".join(map(str, DEFAULT_DIFFICULTIES)),
                   help="comma-separated difficulties (default 0,3,6,9,12)")
    p.add_argument("--seeds", type=int, default=50, help="tasks (evaluation seeds) per env x difficulty (default 50)")
    p.add_argument("--k", type=int, default=4, help="k of pass^k (default 4)")
    p.add_argument("--trials", type=int, default=None, help="trials per task, n >= k (default k)")
    p.add_argument("--seed-base", type=int, default=EVAL_SEED_BASE,
                   help=f"first evaluation seed (default {EVAL_SEED_BASE}; training seeds count up from 0)")
    p.add_argument("--catalog-size", type=int, default=DEFAULT_CATALOG_SIZE,
                   help=f"products of the synthetic catalog (default {DEFAULT_CATALOG_SIZE})")
    p.add_argument("--catalog-seed", type=int, default=0, help="synthetic catalog seed (default 0)")
    p.add_argument("--catalog", dest="catalog_dir", default=None, help="a catalog directory from `ecomrlve catalog build`")
    p.add_argument("--out", default=None, help="output directory (default runs/eval-<timestamp>)")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1: in this process)")
    p.add_argument("--rerun-deterministic", action="store_true",
                   help="play every trial of heuristic/oracle instead of copying the first (they are deterministic)")
    p.add_argument("--max-steps", type=int, default=MAX_STEPS, help=f"safety limit of steps per episode (default {MAX_STEPS})")
    llm = p.add_argument_group("LLM policies (hf:, openai:, vllm:)")
    llm.add_argument("--device", default=None, help="hf: torch device (default cpu)")
    llm.add_argument("--dtype", default=None, help="hf/vllm: float32, bfloat16 or float16")
    llm.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0; 0 = greedy)")
    llm.add_argument("--max-new-tokens", type=int, default=256, help="tokens per turn (default 256)")
    llm.add_argument("--model", dest="engine_model", default=None,
                     help="openai: the model name the server expects (default 'default'); key from $OPENAI_API_KEY")
    llm.add_argument("--prefill", default=None,
                     help="text the reply is forced to start with (hf:/vllm: default: the model directory's "
                          "chat.json, else '{\"'; openai: default none)")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from rich.console import Console
    from rich.progress import Progress

    err = Console(stderr=True)
    cfg = EvalConfig(policy=args.policy, envs=args.envs, difficulties=args.difficulties, seeds=args.seeds, k=args.k,
                     trials=args.trials, catalog_size=args.catalog_size, catalog_seed=args.catalog_seed,
                     catalog_dir=args.catalog_dir, out=args.out, workers=args.workers, seed_base=args.seed_base,
                     rerun_deterministic=args.rerun_deterministic, max_steps=args.max_steps,
                     engine={k: v for k, v in (("device", args.device), ("dtype", args.dtype),
                                               ("temperature", args.temperature), ("max_new_tokens", args.max_new_tokens),
                                               ("model", args.engine_model), ("prefill", args.prefill)) if v is not None})
    try:
        cfg.validate()
        if cfg.seed_base < EVAL_SEED_BASE:
            err.print(f"[yellow]warning:[/yellow] --seed-base {cfg.seed_base} < {EVAL_SEED_BASE}: these seeds may "
                      "overlap training seeds")
        PolicySpec(cfg.policy, cfg.engine).check_available()  # fail before building the catalog
    except (ValueError, RuntimeError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 2
    with Progress(console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("evaluating", total=len(cfg.env_ids) * len(cfg.difficulties))
        result = run_eval(cfg, progress=lambda done, total: bar.update(task, completed=done))
    out = Console()
    if out.is_terminal:
        out.print(rich_table(result.summary, title=f"ecomrlve eval: {cfg.policy} ({result.wall_s:.1f} s)"))
    else:
        sys.stdout.write(result.markdown)
    err.print(f"results: {result.out} ({EPISODES_FILE}, {SUMMARY_PARQUET}, {SUMMARY_MD}, {HEATMAP_FILE})")
    return 0
