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
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ecomrlve.catalog_service.catalog import CatalogDir

from .config import Collection, add_command, arg

from .rollout import MAX_STEPS

EVAL_SEED_BASE = 10**9
DEFAULT_CATALOG_SIZE = 20_000
DEFAULT_DIFFICULTIES = (0, 3, 6, 9, 12)
DETERMINISTIC_POLICIES = ("heuristic", "oracle")
ENGINE_PREFIXES = ("hf", "openai", "vllm")

EPISODES_FILE = "episodes.parquet"
SUMMARY_PARQUET = "summary.parquet"
SUMMARY_MD = "summary.md"
HEATMAP_FILE = "heatmap.png"
CONFIG_FILE = "config.json"

__all__ = ["EVAL_SEED_BASE", "EvalConfig", "EvalResult", "run_eval", "pass_hat_k", "summarize", "markdown_table",
           "write_heatmap", "load_catalog", "jsonable", "PolicySpec", "add_eval_commands", "episode_schema"]


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


# EvalConfig fields that are LLM engine options, and the engine option each sets
ENGINE_FIELDS = {"device": "device", "dtype": "dtype", "temperature": "temperature",
                 "max_new_tokens": "max_new_tokens", "engine_model": "model", "prefill": "prefill"}


class EvalConfig(BaseModel):
    """``ecomrlve eval``: the policy, the task grid (envs x difficulties x seeds), trials and output.
    Checked on construction; `env_ids` is the resolved `envs`, `trials` defaults to `k`."""

    model_config = ConfigDict(extra="forbid")

    policy: str = arg("heuristic", "heuristic, oracle, or an LLM engine spec such as hf:<model> or openai:<url>")
    envs: Collection = arg("C8", "collection (C1, C2, C4, C8), env id, or comma-separated mix")
    difficulties: tuple[int, ...] = arg(DEFAULT_DIFFICULTIES, "comma-separated difficulties")
    seeds: int = arg(50, "tasks (evaluation seeds) per env x difficulty", ge=1)
    k: int = arg(4, "k of pass^k", ge=1)
    trials: int | None = arg(None, "trials per task, n >= k (default k)", ge=1)
    seed_base: int = arg(EVAL_SEED_BASE, "first evaluation seed (training seeds count up from 0)", ge=0)
    catalog_size: int = arg(DEFAULT_CATALOG_SIZE, "products of the synthetic catalog", ge=1)
    catalog_seed: int = arg(0, "synthetic catalog seed")
    catalog_dir: CatalogDir = arg(None, "a catalog directory from `ecomrlve catalog build`", flag="--catalog")
    out: str | None = arg(None, "output directory (default runs/eval-<timestamp>)")
    workers: int = arg(1, "processes (1: in this process); with --ray / --address: env worker actors", ge=1)
    ray: bool = arg(False, "play the task list on the actor system (env workers, catalog shards, the scheduler in "
                           "fixed-task-list mode) of a local Ray cluster; heuristic and oracle policies")
    address: str | None = arg(None, "play on this Ray cluster (implies --ray; 'auto' joins the running one)")
    shards: int = arg(2, "catalog shard actors with --ray / --address", ge=1)
    rerun_deterministic: bool = arg(False, "play every trial of heuristic/oracle instead of copying the first "
                                           "(they are deterministic)")
    max_steps: int = arg(MAX_STEPS, "safety limit of steps per episode", ge=1)
    device: str | None = arg(None, "LLM policies, hf: torch device (default cpu)")
    dtype: str | None = arg(None, "LLM policies, hf/vllm: float32, bfloat16 or float16")
    temperature: float = arg(1.0, "LLM policies: sampling temperature (0 = greedy)", ge=0)
    max_new_tokens: int = arg(256, "LLM policies: tokens per turn", ge=1)
    engine_model: str | None = arg(None, "LLM policies, openai: the model name the server expects (default "
                                         "'default'); key from $OPENAI_API_KEY", flag="--model")
    prefill: str | None = arg(None, "LLM policies: text the reply is forced to start with (hf:/vllm: default the "
                                    "model directory's chat.json, else '{\"'; openai: none)")
    engine: dict = arg(description="LLM engine options (device, dtype, temperature, max_new_tokens, model, prefill); "
                                   "the flags above fill the ones not given here", default_factory=dict, cli=False)
    env_ids: tuple[str, ...] = arg((), "the environments `envs` names (set on construction)", cli=False)

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, spec: str) -> str:
        PolicySpec(spec)
        return spec

    @field_validator("difficulties", mode="before")
    @classmethod
    def _difficulties(cls, spec) -> tuple[int, ...]:
        if isinstance(spec, (list, tuple)) and any(isinstance(d, str) for d in spec):
            spec = ",".join(map(str, spec))  # from the command line
        return _parse_difficulties(spec)

    @model_validator(mode="after")
    def _resolve(self) -> "EvalConfig":
        from ecomrlve.envs import resolve_envs

        self.env_ids = resolve_envs(self.envs)
        for name, option in ENGINE_FIELDS.items():  # a flag set away from its default is an engine option
            value = getattr(self, name)
            if value != type(self).model_fields[name].default:
                self.engine.setdefault(option, value)
        unknown = sorted(set(self.engine) - set(ENGINE_FIELDS.values()))
        if unknown:
            raise ValueError(f"engine: unknown engine option(s): {', '.join(unknown)}")
        if self.address:
            self.ray = True
        if self.ray:
            from .eval_actors import ACTOR_POLICIES

            if self.policy not in ACTOR_POLICIES:
                raise ValueError(f"policy: {self.policy!r} cannot run on actors (only {', '.join(ACTOR_POLICIES)}); "
                                 "drop --ray/--address to evaluate it in-process")
        if self.trials is None:
            self.trials = self.k
        if self.trials < self.k:
            raise ValueError(f"trials must be >= k ({self.k}), got {self.trials}")
        return self

    def as_dict(self) -> dict:
        d = self.model_dump(exclude=set(ENGINE_FIELDS))
        d["difficulties"] = list(self.difficulties)
        d["env_ids"] = list(self.env_ids)
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
    """Play every task and trial of one (env, difficulty) cell: per trial, all tasks of the
    cell in lockstep (`ecomrlve.actors.rollout.play`: an LLM policy answers them with one
    ``act_batch`` per turn, generation seed = the trial index; the heuristic and the oracle get
    one policy per episode). A deterministic policy plays trial 0 only, copied to the others
    unless ``rerun_deterministic``."""
    from .rollout import Episode, play

    if catalog is None:
        catalog = load_catalog(cfg_dict["catalog_dir"], cfg_dict["catalog_size"], cfg_dict["catalog_seed"])
    key = (cfg_dict["policy"], json.dumps(cfg_dict.get("engine") or {}, sort_keys=True))
    spec = _SPECS.get(key)
    if spec is None:
        spec = _SPECS[key] = PolicySpec(cfg_dict["policy"], cfg_dict.get("engine"))
    env_id, d, n, seeds = job["env_id"], job["difficulty"], job["n"], cfg_dict["seeds"]
    replicate = spec.deterministic and not cfg_dict["rerun_deterministic"]
    rows = []
    for trial in range(1 if replicate else n):
        episodes = [Episode({"env_id": env_id, "difficulty": d, "seed": cfg_dict["seed_base"] + i,
                             "episode_id": (job["task_base"] + i) * n + trial},
                            catalog=catalog, key=i, max_steps=cfg_dict["max_steps"]) for i in range(seeds)]
        if spec.is_llm:
            play(episodes, spec.llm_policy(trial))
        else:
            play(episodes, lambda e, trial=trial: spec.make(e.env, policy_seed=trial))
        rows += [e.record(cfg_dict["policy"], "eval", extra={"trial": trial, "task_index": job["task_base"] + i,
                                                              "policy_seed": trial, "replicated": False})
                 for i, e in enumerate(episodes)]
    if replicate:
        rows += [{**r, "episode_id": r["task_index"] * n + trial, "trial": trial, "policy_seed": trial,
                  "replicated": True} for r in list(rows) for trial in range(1, n)]
    return rows


def _worker_cell(job: dict, cfg_dict: dict) -> list[dict]:
    return _run_cell(job, cfg_dict)


def run_eval(cfg: EvalConfig, catalog=None, progress: Callable[[int, int], None] | None = None,
             write: bool = True) -> EvalResult:
    """Run the evaluation; write the output directory unless ``write=False``."""
    t0 = time.perf_counter()
    cfg_dict = cfg.as_dict()
    jobs = _cell_jobs(cfg)
    rows: list[dict] = []
    if cfg.ray:  # the same task list on the actor system (local Ray or a cluster)
        from .eval_actors import play_on_actors

        rows = play_on_actors(cfg, jobs, progress)
    elif cfg.workers > 1 and catalog is None:
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
    add_command(subparsers, "eval", EvalConfig, cmd_eval,
                help="evaluate a policy: success, mean reward and pass^k per environment x difficulty",
                description="Play every (env, difficulty, seed) task --trials times (default k) with evaluation "
                            f"seeds (>= {EVAL_SEED_BASE}, disjoint from training seeds) and report success rate, "
                            "mean reward and pass^k; writes episodes.parquet, summary.parquet, summary.md and "
                            "heatmap.png.")


def cmd_eval(cfg: EvalConfig) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from .config import ConfigError

    err = Console(stderr=True)
    if cfg.seed_base < EVAL_SEED_BASE:
        err.print(f"[yellow]warning:[/yellow] --seed-base {cfg.seed_base} < {EVAL_SEED_BASE}: these seeds may "
                  "overlap training seeds")
    try:
        PolicySpec(cfg.policy, cfg.engine).check_available()  # fail before building the catalog
    except RuntimeError as exc:
        raise ConfigError(f"--policy: {exc}") from None
    with Progress(console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("evaluating", total=len(cfg.env_ids) * len(cfg.difficulties))
        result = run_eval(cfg, progress=lambda done, total: bar.update(task, completed=done, total=total))
    out = Console()
    if out.is_terminal:
        out.print(rich_table(result.summary, title=f"ecomrlve eval: {cfg.policy} ({result.wall_s:.1f} s)"))
    else:
        sys.stdout.write(result.markdown)
    err.print(f"results: {result.out} ({EPISODES_FILE}, {SUMMARY_PARQUET}, {SUMMARY_MD}, {HEATMAP_FILE})")
    return 0
