"""The run directory of ``ecomrlve run``.

    runs/<timestamp>/
        config.json              the run's configuration
        trajectories.parquet     one row per episode (schema: TRAJECTORY_SCHEMA), once the run closes
        trajectories.parts/      until then: the flushed records, one whole parquet file a flush
        curriculum.json          the curriculum state (checkpointed during the run, final at the end)
        summary.md               per-environment table: episodes, success, reward, turns, window
        difficulty.png           difficulty of each finished episode per env (and the window h)
        success.png              rolling success rate per env over its episodes

Trajectories reach `TrajectoryWriter` (a Ray actor) as ObjectRefs: the driver never
materialises them. The writer flushes them as whole parquet parts while the run goes (a killed
run keeps all but its last unflushed records), merges them into one file at close, and drops
an episode id it has already written, so a re-dispatched task can never appear twice.

Where the directory goes (`RunOutput`): ``--out`` is a local path or a pyarrow filesystem URI
(``s3://bucket/runs/x``, ``gs://...``, ``file:///mnt/shared/x``; anything
``pyarrow.fs.FileSystem.from_uri`` opens). A URI run writes into a local staging directory on
the driver's node and copies the whole directory to the URI when the run ends (also when it
fails): parquet appends and atomic checkpoint renames stay local, where they are cheap and
safe. Without ``--out`` the directory is ``runs/<timestamp>`` under the current directory,
except inside ``ray job submit``, whose current directory is Ray's temporary copy of the
working dir (deleted when the job ends): there it is ``~/ecomrlve_runs/<timestamp>`` on the
node running the job's driver (the head).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

TRAJECTORY_FILE = "trajectories.parquet"
TRAJECTORY_PARTS = "trajectories.parts"  # a run's flushed parts until it closes
CURRICULUM_FILE = "curriculum.json"
SUMMARY_FILE = "summary.md"
CONFIG_FILE = "config.json"

TRAJECTORY_SCHEMA = pa.schema([
    ("episode_id", pa.int64()),
    ("env_id", pa.string()),
    ("difficulty", pa.int32()),
    ("seed", pa.int64()),
    ("actions", pa.string()),  # JSON list of the agent's actions
    ("messages", pa.string()),  # JSON list of OpenAI-format messages
    ("r_task", pa.float64()),
    ("r_eff", pa.float64()),
    ("r_hall", pa.float64()),
    ("r_total", pa.float64()),
    ("is_correct", pa.bool_()),
    ("termination_reason", pa.string()),
    ("turns", pa.int32()),
    ("worker", pa.string()),
    ("policy", pa.string()),
    ("wall_ms", pa.float64()),
])

__all__ = ["TRAJECTORY_SCHEMA", "TrajectoryWriter", "new_run_dir", "RunOutput", "check_out", "in_ray_job",
           "default_runs_root", "write_summary", "write_plots",
           "read_trajectories", "trajectory_files", "TRAJECTORY_FILE", "TRAJECTORY_PARTS", "CURRICULUM_FILE", "SUMMARY_FILE", "CONFIG_FILE"]


JOB_RUNS_ROOT = "~/ecomrlve_runs"  # the run directories of `ray job submit` runs without --out
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")


def in_ray_job() -> bool:
    """True in the driver of a ``ray job submit`` job (Ray's job supervisor sets
    RAY_JOB_CONFIG_JSON_ENV_VAR for the entrypoint, whose working directory is Ray's
    temporary copy under ``.../runtime_resources/working_dir_files/``)."""
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ or "runtime_resources" in Path.cwd().parts


def default_runs_root() -> Path:
    """Where run directories go without ``--out``: ``~/ecomrlve_runs`` in a Ray job, else ``runs``."""
    return Path(JOB_RUNS_ROOT).expanduser() if in_ray_job() else Path("runs")


def is_uri(out: str) -> bool:
    return bool(_URI.match(out)) and not re.match(r"^[A-Za-z]:[\\/]", out)  # not a Windows drive


def check_out(out: str | None) -> None:
    """Raise ValueError naming ``out`` when `out` cannot hold a run directory: a URI no
    pyarrow filesystem opens, a path that is a file, or a path under a file or an
    unwritable directory. Creates nothing."""
    if out is None:
        return
    if not isinstance(out, str) or not out.strip():
        raise ValueError(f"out: must be a directory path or a filesystem URI, got {out!r}")
    if is_uri(out):
        import pyarrow.fs as pafs

        try:
            pafs.FileSystem.from_uri(out)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, ValueError, OSError
            raise ValueError(f"out: {out!r} is not a usable filesystem URI: {str(exc).splitlines()[0]}") from None
        return
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"out: {out} exists and is not a directory")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"out: {out} lies under {parent}, which is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"out: cannot create {out}: {parent} is not writable")


class RunOutput:
    """A run directory: `local` is where the run writes; `uri` (a URI ``--out``) is where
    `upload()` copies it. `location` is what to tell the user."""

    def __init__(self, out: str | None = None):
        check_out(out)
        self.uploaded = False
        self.uri = out if out and is_uri(out) else None
        if self.uri is None:
            self.local = new_run_dir(out)
            self._staging = None
        else:
            self._staging = Path(tempfile.mkdtemp(prefix="ecomrlve-run-"))
            self.local = self._staging

    @property
    def location(self) -> str:
        return self.uri or str(self.local)

    def upload(self) -> str:
        """Copy the local directory to `uri` (no-op for a local run); returns `location`."""
        if self.uri is not None:
            import pyarrow.fs as pafs

            fs, base = pafs.FileSystem.from_uri(self.uri)
            fs.create_dir(base, recursive=True)
            pafs.copy_files(str(self.local), base, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
        self.uploaded = True
        return self.location

    def cleanup(self) -> None:
        """Delete the staging directory of a URI run (after `upload`)."""
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)


def new_run_dir(out: str | None = None, root: str | os.PathLike | None = None) -> Path:
    """`out`, or ``<root>/<UTC timestamp>`` (made unique; root: `default_runs_root()`), created."""
    if root is None:
        root = default_runs_root()
    if out:
        path = Path(out).expanduser()
    else:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        path = Path(root) / stamp
        i = 1
        while path.exists():
            path = Path(root) / f"{stamp}-{i}"
            i += 1
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def trajectory_files(run_dir) -> list[Path]:
    """The parquet files holding a run directory's trajectories, in write order: the closed
    ``trajectories.parquet`` (if any), then the parts of a run that has not closed (a live
    run, or one killed before closing). Their episode ids are disjoint."""
    run_dir = Path(run_dir)
    closed = run_dir / TRAJECTORY_FILE
    parts = sorted((run_dir / TRAJECTORY_PARTS).glob("part-*.parquet"))
    return ([closed] if closed.is_file() else []) + parts


def _conform(table: pa.Table) -> pa.Table:
    """`table` with TRAJECTORY_SCHEMA's columns, in its order and types."""
    return table.select(TRAJECTORY_SCHEMA.names).cast(TRAJECTORY_SCHEMA)


def read_trajectories(run_dir) -> pa.Table:
    """Every trajectory a run directory holds (`trajectory_files`), as one table.
    Raises FileNotFoundError naming the directory when it holds none."""
    files = trajectory_files(run_dir)
    if not files:
        raise FileNotFoundError(f"{run_dir}: no {TRAJECTORY_FILE} and no {TRAJECTORY_PARTS}/ parts")
    return pa.concat_tables([_conform(pq.read_table(f)) for f in files])


class TrajectoryWriterImpl:
    """Writes a run's trajectory records to ``<run_dir>/trajectories.parquet``, durably as it goes.

    Every `flush` (each `row_group` new records, or the first `write` at least `flush_every_s`
    seconds after the previous flush) writes one whole parquet file,
    ``trajectories.parts/part-NNNNNN.parquet``, under a temporary name renamed into place, so a
    part is complete or absent. `close` (idempotent) merges the closed file, then the parts,
    into ``trajectories.parquet`` (written as ``.partial`` and renamed) and deletes the parts.
    A run killed before `close` therefore loses at most its unflushed records (under
    `row_group`, and under `flush_every_s` of them): `read_trajectories`, `ecomrlve replay`
    and SFT read the closed file and the parts alike.

    With `append` (a resumed run) the episodes already in the directory, closed file and
    parts left by a killed run, count as written, so a re-run episode is dropped as a
    duplicate and the earlier record is kept. Without `append` a new run replaces what the
    directory held. Merging streams row groups: memory stays one row group, whatever the
    run's length."""

    def __init__(self, run_dir: str, row_group: int = 256, append: bool = False, flush_every_s: float = 30.0):
        run_dir = Path(run_dir)
        self.path = run_dir / TRAJECTORY_FILE
        self.parts = run_dir / TRAJECTORY_PARTS
        self.partial = self.path.with_suffix(".parquet.partial")
        self.row_group = max(1, int(row_group))
        self.flush_every_s = float(flush_every_s)
        self._buffer: list[dict] = []
        self.ids: set[int] = set()
        self.duplicates = 0
        self._closed = False
        if not append:
            self.path.unlink(missing_ok=True)
            shutil.rmtree(self.parts, ignore_errors=True)
        self.parts.mkdir(parents=True, exist_ok=True)
        for stale in self.parts.glob("*.tmp"):  # a part a killed run was writing: never renamed, so not whole
            stale.unlink()
        files = trajectory_files(run_dir)
        for f in files:
            self.ids.update(pq.read_table(f, columns=["episode_id"]).column("episode_id").to_pylist())
        self._next_part = 1 + max((int(f.stem.split("-")[1]) for f in files if f.parent == self.parts), default=-1)
        self._last_flush = time.monotonic()

    def write(self, records: Sequence[dict]) -> int:
        """Buffer `records` (a resolved ObjectRef when called through Ray); returns how
        many were new."""
        if self._closed:
            raise RuntimeError(f"{self.path}: the trajectory writer is closed")
        n = 0
        for rec in records:
            eid = int(rec["episode_id"])
            if eid in self.ids:
                self.duplicates += 1
                continue
            self.ids.add(eid)
            self._buffer.append({k: rec.get(k) for k in TRAJECTORY_SCHEMA.names})
            n += 1
        if len(self._buffer) >= self.row_group or time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()
        return n

    def flush(self) -> None:
        """Write the buffered records as the next part (nothing when the buffer is empty)."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        part = self.parts / f"part-{self._next_part:06d}.parquet"
        tmp = part.with_suffix(".parquet.tmp")
        pq.write_table(pa.Table.from_pylist(self._buffer, schema=TRAJECTORY_SCHEMA), tmp, compression="zstd")
        os.replace(tmp, part)
        self._next_part += 1
        self._buffer = []

    def close(self) -> dict:
        """Merge the closed file and the parts into ``trajectories.parquet`` (idempotent)."""
        if not self._closed:
            self.flush()
            with pq.ParquetWriter(str(self.partial), TRAJECTORY_SCHEMA, compression="zstd") as out:
                for f in trajectory_files(self.path.parent):
                    for batch in pq.ParquetFile(f).iter_batches(batch_size=self.row_group):
                        out.write_table(_conform(pa.Table.from_batches([batch])))
            os.replace(self.partial, self.path)
            shutil.rmtree(self.parts, ignore_errors=True)
            self._closed = True
        return {"path": str(self.path), "episodes": len(self.ids), "duplicates_dropped": self.duplicates}


def _writer_actor():
    import ray

    return ray.remote(num_cpus=0, max_restarts=0)(TrajectoryWriterImpl)


def __getattr__(name):
    if name == "TrajectoryWriter":
        return _writer_actor()
    raise AttributeError(name)


# --------------------------------------------------------------------------- summary and plots


def _per_env(summaries: Iterable[dict]) -> dict[str, list[dict]]:
    by_env: dict[str, list[dict]] = defaultdict(list)
    for s in sorted(summaries, key=lambda s: s["episode_id"]):
        by_env[s["env_id"]].append(s)
    return dict(by_env)


def write_summary(run_dir, summaries: Sequence[dict], curriculum: dict | None, meta: dict) -> Path:
    """``summary.md``: the run's facts and a per-environment table."""
    by_env = _per_env(summaries)
    levels = (curriculum or {}).get("levels", {})
    lines = [f"# ecomrlve run {Path(run_dir).name}", ""]
    for key in ("policy", "collection", "episodes", "workers", "shards", "catalog", "wall_s", "episodes_per_s",
                "retried_tasks", "errors"):
        if key in meta:
            lines.append(f"- **{key}**: {meta[key]}")
    lines += ["", "| env | episodes | success | mean r_total | mean turns | mean d | max d | window [l, h] |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    total = []
    for env_id in sorted(by_env):
        rows = by_env[env_id]
        total += rows
        n = len(rows)
        lv = levels.get(env_id, {})
        window = f"[{lv.get('l', '?')}, {lv.get('h', '?')}]" if lv else "-"
        lines.append(
            f"| {env_id} | {n} | {sum(r['is_correct'] for r in rows) / n:.1%} | "
            f"{sum(r['r_total'] for r in rows) / n:+.3f} | {sum(r['turns'] for r in rows) / n:.2f} | "
            f"{sum(r['difficulty'] for r in rows) / n:.2f} | {max(r['difficulty'] for r in rows)} | {window} |"
        )
    if total:
        n = len(total)
        lines.append(
            f"| **all** | {n} | {sum(r['is_correct'] for r in total) / n:.1%} | "
            f"{sum(r['r_total'] for r in total) / n:+.3f} | {sum(r['turns'] for r in total) / n:.2f} | "
            f"{sum(r['difficulty'] for r in total) / n:.2f} | {max(r['difficulty'] for r in total)} | |"
        )
    reasons: dict[str, int] = defaultdict(int)
    for r in total:
        reasons[r["termination_reason"].split(":")[0]] += 1
    if reasons:
        lines += ["", "| termination reason | episodes |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])]
    lines += ["", "Files: `trajectories.parquet`, `curriculum.json`, `difficulty.png`, `success.png`, "
              "`config.json`.", ""]
    path = Path(run_dir) / SUMMARY_FILE
    path.write_text("\n".join(lines))
    return path


def write_plots(run_dir, summaries: Sequence[dict], window: int = 32) -> list[Path]:
    """``difficulty.png`` and ``success.png`` (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    by_env = _per_env(summaries)
    out = []
    # small multiples: one panel per environment, so envs that stay at d = 0 cannot hide each other
    n = max(len(by_env), 1)
    ncols = min(4, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols + 1, 2.3 * nrows + 0.8), dpi=110,
                             sharey=True, squeeze=False)
    top = max((r["difficulty"] for rows in by_env.values() for r in rows), default=0)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, ax in enumerate(axes.flat):
        if i >= len(by_env):
            ax.set_visible(False)
            continue
        env_id, rows = sorted(by_env.items())[i]
        xs = list(range(1, len(rows) + 1))
        ds = [r["difficulty"] for r in rows]
        running_max = []
        m = 0
        for d in ds:
            m = max(m, d)
            running_max.append(m)
        color = colors[i % len(colors)]
        ax.scatter(xs, ds, s=6, alpha=0.35, color=color, label="d of the episode")
        ax.step(xs, running_max, where="post", color=color, linewidth=1.5, label="running max d")
        ax.set_title(f"{env_id}: max d {m}, {len(rows)} episodes", fontsize=8)
        ax.set_ylim(-0.5, max(top, 1) + 0.5)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if i % ncols == 0:
            ax.set_ylabel("difficulty d", fontsize=8)
        if i >= len(by_env) - ncols:
            ax.set_xlabel("episode of the env (lease order)", fontsize=8)
    if by_env:
        axes.flat[0].legend(fontsize=6, loc="upper left")
    fig.suptitle("Difficulty per environment", fontsize=10)
    fig.tight_layout()
    path = Path(run_dir) / "difficulty.png"
    fig.savefig(path)
    plt.close(fig)
    out.append(path)

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for env_id, rows in sorted(by_env.items()):
        ok = [1.0 if r["is_correct"] else 0.0 for r in rows]
        rolling = []
        acc = 0.0
        for i, v in enumerate(ok):
            acc += v
            if i >= window:
                acc -= ok[i - window]
            rolling.append(acc / min(i + 1, window))
        ax.plot(range(1, len(rows) + 1), rolling, label=env_id, linewidth=1.5)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("episode of the environment (lease order)")
    ax.set_ylabel(f"success rate (rolling {window})")
    ax.set_title("Success per environment")
    ax.grid(alpha=0.3)
    if by_env:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = Path(run_dir) / "success.png"
    fig.savefig(path)
    plt.close(fig)
    out.append(path)
    return out


def write_config(run_dir, config: dict) -> Path:
    path = Path(run_dir) / CONFIG_FILE
    path.write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
    return path


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
