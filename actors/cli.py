"""``ecomrlve``: the command line.

    ecomrlve run --collection C8 --policy heuristic --episodes 200 --workers 2 --shards 2
    ecomrlve catalog build --n 2000000 --out catalogs/c2m
    ecomrlve run --catalog catalogs/c2m --episodes 500

Subcommands register themselves through `COMMANDS`: each entry is a function
``add(subparsers)`` that adds its parser and sets ``func`` (``args.func(args) -> exit
code``). Modules listed in `OPTIONAL_COMMANDS` (``catalog``, ``train``, ``sft``, ``eval``,
``serve``, ``play``, ``replay``, ``top``) are wired in when they exist; `register_command` adds more.

Ray: ``ecomrlve run`` calls ``ray.init()``: it joins the cluster named by ``RAY_ADDRESS``
(set inside ``ray job submit``) or ``--address``, else starts a new local one. Ray's usage
statistics are disabled unless ``--usage-stats`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import time
from typing import Callable

DEFAULT_CATALOG_SIZE = 20_000
DEFAULT_EPISODES = 1000

COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def register_command(add: Callable[[argparse._SubParsersAction], None]) -> Callable:
    """Register a subcommand: `add(subparsers)` adds a parser that sets ``func``."""
    COMMANDS.append(add)
    return add


# --------------------------------------------------------------------------- ray


def init_ray(address: str | None = None, num_cpus: int | None = None, usage_stats: bool = False,
             log_to_driver: bool = False, metrics_export_port: int | None = None, **kwargs):
    """``ray.init`` for ecomrlve: joins `address` / RAY_ADDRESS or starts a local cluster,
    with usage statistics off unless `usage_stats`."""
    if not usage_stats:
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        os.environ.setdefault("RAY_USAGE_STATS_REPORT_URL", "http://127.0.0.1:9/")
    import ray

    from .system import NAMESPACE

    if ray.is_initialized():
        return ray.get_runtime_context()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address not in (None, "auto", "local") and "RAY_AUTH_MODE" not in os.environ and _auth_token_available():
        # Ray turns token auth on by itself only for a cluster it finds ("auto"), never for an
        # explicit address; with a token at hand, joining one uses it (auth stays on)
        os.environ["RAY_AUTH_MODE"] = "token"
        try:
            from ray._raylet import Config

            Config.initialize("")  # Ray read RAY_AUTH_MODE when it was imported
        except (ImportError, AttributeError):  # another Ray version
            pass
    init_kwargs: dict = {"namespace": NAMESPACE, "log_to_driver": log_to_driver, **kwargs}
    if address is None:
        if num_cpus is not None:
            init_kwargs["num_cpus"] = num_cpus
        if metrics_export_port is not None:
            init_kwargs["_metrics_export_port"] = metrics_export_port
        # local cluster: make this checkout importable by every worker process
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = init_kwargs.setdefault("runtime_env", {}).setdefault("env_vars", {})
        env.setdefault("PYTHONPATH", os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
        env.setdefault("RAY_USAGE_STATS_ENABLED", os.environ.get("RAY_USAGE_STATS_ENABLED", "0"))
        # "local": always a new cluster; plain ray.init() would join whatever cluster the
        # machine's /tmp/ray/ray_current_cluster names (another user's `ray start`)
        address = "local"
    return ray.init(address=address, **init_kwargs)


def _auth_token_available() -> bool:
    """A Ray auth token is configured: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
    return os.path.isfile(path) and os.path.getsize(path) > 0


# --------------------------------------------------------------------------- run


def _add_run(sub) -> None:
    p = sub.add_parser(
        "run",
        help="roll out episodes on Ray (shards, env workers, shopper service, curriculum)",
        description="Roll out episodes of a collection with the actor system and write a run directory "
                    "(trajectories.parquet, curriculum.json, summary.md, plots).",
    )
    p.add_argument("--collection", "-c", default="C8",
                   help="collection (C1, C2, C4, C8), env id, or comma-separated mix (default C8)")
    p.add_argument("--policy", choices=("heuristic", "oracle"), default="heuristic", help="agent (default heuristic)")
    p.add_argument("--episodes", "-n", type=int, default=DEFAULT_EPISODES, help=f"episodes (default {DEFAULT_EPISODES})")
    p.add_argument("--workers", "-w", type=int, default=2, help="env worker actors W (default 2)")
    p.add_argument("--shards", "-s", type=int, default=2, help="catalog shard actors S (default 2)")
    p.add_argument("--catalog-size", type=int, default=DEFAULT_CATALOG_SIZE,
                   help=f"products of the synthetic catalog (default {DEFAULT_CATALOG_SIZE}; 2000000 works)")
    p.add_argument("--catalog", dest="catalog_dir", default=None,
                   help="a catalog directory from `ecomrlve catalog build` (instead of generating one)")
    p.add_argument("--catalog-transport", choices=("auto", "path", "object-store"), default="auto",
                   help="how actors get a --catalog: memory-map the path (needs it on every node) or the object "
                        "store (default auto: the path when it holds a search index)")
    p.add_argument("--catalog-seed", type=int, default=0, help="synthetic catalog seed (default 0)")
    p.add_argument("--seed", type=int, default=0,
                   help="curriculum seed; task seeds start at seed x 1000000 (default 0)")
    p.add_argument("--out", default=None,
                   help="run directory: a local path or a filesystem URI (s3://, gs://, file:// on a shared mount); "
                        "default runs/<timestamp>, or ~/ecomrlve_runs/<timestamp> under `ray job submit`")
    p.add_argument("--batch-size", type=int, default=4, help="tasks per dispatch (default 4)")
    p.add_argument("--max-concurrent", type=int, default=32, help="episodes at once per worker (default 32)")
    p.add_argument("--threads", type=int, default=8, help="step threads per worker (default 8)")
    p.add_argument("--shopper", choices=("serve", "local", "none"), default="serve",
                   help="shopper phrasing: Ray Serve deployment (default), in-process, or none")
    p.add_argument("--shopper-backend", default="template", help="shopper backend (default template)")
    p.add_argument("--env-resource", default="ecomrlve_env",
                   help="custom resource of the nodes that host env workers, catalog shards and the shopper, used "
                        "when the cluster has it (default ecomrlve_env, as in cluster.yaml; '' places them anywhere)")
    p.add_argument("--tau-num", type=int, default=None, help="curriculum: outcomes at h per check (default 32)")
    p.add_argument("--tau-acc", type=float, default=None, help="curriculum: accuracy to raise h (default 0.9)")
    p.add_argument("--resume", default=None, help="continue the curriculum from a curriculum.json")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else a local cluster)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local cluster (default: all)")
    p.add_argument("--usage-stats", action="store_true", help="allow Ray's usage statistics (off by default)")
    p.add_argument("--worker-logs", action="store_true", help="print actor logs on the console")
    p.add_argument("--no-live", action="store_true", help="plain log lines instead of the live display")
    p.set_defaults(func=cmd_run)


def _config_from_args(args):
    from .driver import RunConfig

    curriculum = {}
    if args.tau_num is not None:
        curriculum["tau_num"] = args.tau_num
    if args.tau_acc is not None:
        curriculum["tau_acc"] = args.tau_acc
    return RunConfig(
        collection=args.collection, episodes=args.episodes, workers=args.workers, shards=args.shards,
        policy=args.policy, catalog_size=args.catalog_size, catalog_dir=args.catalog_dir,
        catalog_transport=args.catalog_transport, catalog_seed=args.catalog_seed, seed=args.seed, out=args.out,
        batch_size=args.batch_size, max_concurrent=args.max_concurrent, threads=args.threads, shopper=args.shopper,
        shopper_backend=args.shopper_backend, env_resource=args.env_resource, curriculum=curriculum,
        resume=args.resume,
    ).validate()


# RunConfig field -> the flag that sets it, for error messages ("out: ..." -> "--out: ...")
FIELD_FLAGS = {"catalog_dir": "--catalog", "catalog_size": "--catalog-size", "catalog_transport": "--catalog-transport",
               "batch_size": "--batch-size", "max_concurrent": "--max-concurrent", "out": "--out",
               "episodes": "--episodes", "workers": "--workers", "shards": "--shards", "seed": "--seed",
               "threads": "--threads", "policy": "--policy", "shopper": "--shopper"}


def flag_message(message: str) -> str:
    """`message` with a leading ``field:`` / ``field must`` named as its command-line flag."""
    for field_name, flag in FIELD_FLAGS.items():
        for sep in (":", " must"):
            if message.startswith(field_name + sep):
                return flag + message[len(field_name):]
    return message


def print_error(console, message: str) -> None:
    """One line on stderr: ``error: <message>`` (never wrapped to the terminal width)."""
    from rich.markup import escape

    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)


def _table(stats: dict):
    from rich.table import Table

    done, total = stats["done"], stats["total"]
    by_env: dict[str, list] = {}
    for s in stats["summaries"].values():
        by_env.setdefault(s["env_id"], []).append(s)
    t = Table(title=f"ecomrlve run: {done}/{total} episodes, {stats['eps']:.1f} episodes/s, "
                    f"{stats['elapsed_s']:.0f} s, in flight {stats['inflight']}, re-dispatched {stats['retried']}")
    for col in ("env", "episodes", "success", "mean reward", "mean d", "window [l, h]"):
        t.add_column(col, justify="right" if col != "env" else "left")
    windows = stats.get("windows") or {}
    for env_id in sorted(set(by_env) | set(windows)):
        rows = by_env.get(env_id, [])
        n = len(rows)
        w = windows.get(env_id)
        t.add_row(
            env_id, str(n),
            f"{sum(r['is_correct'] for r in rows) / n:.0%}" if n else "-",
            f"{sum(r['r_total'] for r in rows) / n:+.3f}" if n else "-",
            f"{sum(r['difficulty'] for r in rows) / n:.2f}" if n else "-",
            f"[{w['l']}, {w['h']}]" if w else "-",
        )
    return t


def cmd_run(args) -> int:
    from rich.console import Console
    from rich.live import Live

    from .driver import Driver

    console = Console(stderr=True)
    if not console.is_terminal:  # logs of `ray job submit`, pipes: never fold paths and URLs at 80 columns
        console.width = 200

    def log(message: str) -> None:
        console.print(f"{time.strftime('%H:%M:%S')} {message}", soft_wrap=True, highlight=False, markup=False)

    try:
        driver = Driver(_config_from_args(args))  # validates everything before Ray starts
    except ValueError as exc:
        print_error(console, flag_message(str(exc)))
        return 2
    init_ray(address=args.address, num_cpus=args.num_cpus, usage_stats=args.usage_stats,
             log_to_driver=args.worker_logs)
    for line in where_to_look():
        console.print(line, soft_wrap=True, highlight=False, markup=False)
    t0 = time.perf_counter()
    try:
        driver.start(log=log)
        if args.no_live or not console.is_terminal:
            last = [0.0]

            def progress(st):
                if time.perf_counter() - last[0] > 5 or st["done"] == st["total"]:
                    last[0] = time.perf_counter()
                    log(f"{st['done']}/{st['total']} episodes, {st['eps']:.1f}/s")

            result = driver.run(progress=progress, log=log)
        else:
            # transient: the live table goes away at the end and the final one is printed once, below
            with Live(console=console, refresh_per_second=4, transient=True) as live:
                result = driver.run(progress=lambda st: live.update(_table(st)), log=log)
    finally:
        driver.shutdown()
    console.print(final_table(result))
    console.print(f"run directory: {result.location}  ({result.written} episodes written, "
                  f"{time.perf_counter() - t0:.1f} s in all)", soft_wrap=True, highlight=False, markup=False)
    print(result.location)
    return 0


def final_table(result):
    """The table of a finished run, from its `RunResult` (the figures summary.md has)."""
    return _table({"done": result.episodes, "total": result.episodes, "eps": result.episodes_per_s,
                   "elapsed_s": result.wall_s, "inflight": 0, "retried": result.retried_tasks,
                   "summaries": {s["episode_id"]: s for s in result.summaries},
                   "windows": result.curriculum["levels"]})


def where_to_look() -> list[str]:
    """Lines telling the user where the dashboard, the metrics and the live view are."""
    import ray

    lines = []
    try:
        url = ray._private.worker.get_dashboard_url()
    except Exception:  # noqa: BLE001 - a cluster without a dashboard
        url = None
    if url:
        url = url if "://" in url else f"http://{url}"
        lines.append(f"dashboard: {url} (Metrics tab: load dashboards/ecomrlve_grafana_dashboard.json, "
                     "see docs/operations.md)")
    else:
        lines.append("dashboard: not running on this cluster (start Ray with the dashboard to see it)")
    endpoints = [f"http://{n['NodeManagerAddress']}:{n['MetricsExportPort']}/metrics"
                 for n in ray.nodes() if n.get("Alive") and n.get("MetricsExportPort")]
    if endpoints:
        lines.append(f"metrics: ray_ecomrlve_* on {', '.join(endpoints[:3])}"
                     + (f" and {len(endpoints) - 3} more nodes" if len(endpoints) > 3 else ""))
    try:
        gcs = ray.get_runtime_context().gcs_address
    except Exception:  # noqa: BLE001
        gcs = None
    lines.append(f"live view: ecomrlve top --address {gcs} (in another terminal on this machine)" if gcs
                 else "live view: ecomrlve top (in another terminal on this machine)")
    return lines


register_command(_add_run)


# Subcommands other modules provide: (module, function adding them to the subparsers).
# A module that is absent is skipped; one that fails to import is reported, and the rest of
# the CLI keeps working.
OPTIONAL_COMMANDS: list[tuple[str, str]] = [
    ("ecomrlve.catalog_service.build", "add_catalog_commands"),  # catalog build|info
    ("ecomrlve.actors.train", "add_train_commands"),
    ("ecomrlve.actors.evaluate", "add_eval_commands"),
    ("ecomrlve.actors.openenv_server", "add_serve_commands"),
    ("ecomrlve.actors.play", "add_play_commands"),
    ("ecomrlve.actors.replay", "add_replay_commands"),
    ("ecomrlve.actors.top", "add_top_commands"),
]


def _add_optional(sub) -> None:
    for module, func in OPTIONAL_COMMANDS:
        try:
            if importlib.util.find_spec(module) is None:
                continue
            add = getattr(importlib.import_module(module), func, None)
        except Exception as exc:  # noqa: BLE001 - a broken optional module must not break `run`
            print(f"ecomrlve: commands of {module} unavailable: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        if add is not None:
            add(sub)


register_command(_add_optional)


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecomrlve", description="Adaptive, verifiable RL environments for "
                                     "e-commerce agents, run as a Ray actor system.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def check_common_args(args) -> str | None:
    """Checks every subcommand shares, before it starts anything (Ray, a server, a model):
    ``--catalog`` must be a built catalog directory; ``--model`` of ``train`` / ``sft`` (when
    not resuming) must resolve. Returns a one-line problem naming the flag, or None."""
    catalog_dir = getattr(args, "catalog_dir", None)
    if catalog_dir is not None:
        from ecomrlve.catalog_service.catalog import MANIFEST_FILE

        path = os.path.expanduser(catalog_dir)
        if not os.path.isdir(path):
            return f"--catalog: no catalog directory at {catalog_dir} (build one with `ecomrlve catalog build --out DIR`)"
        if not os.path.isfile(os.path.join(path, MANIFEST_FILE)):
            return f"--catalog: {catalog_dir} is not a catalog directory (no {MANIFEST_FILE})"
    if args.command in ("train", "sft") and isinstance(getattr(args, "model", None), str) \
            and not getattr(args, "resume", None):
        from ecomrlve.policies.models import ModelNotFound, locate_model

        try:
            locate_model(args.model)
        except ModelNotFound as exc:
            return f"--model: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = check_common_args(args)
    if problem:
        from rich.console import Console

        print_error(Console(stderr=True), problem)
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
