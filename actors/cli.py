"""``ecomrlve``: the command line.

    ecomrlve run --collection C8 --policy heuristic --episodes 200 --workers 2 --shards 2
    ecomrlve catalog build --n 2000000 --out catalogs/c2m
    ecomrlve run --catalog catalogs/c2m --episodes 500

Subcommands register themselves through `COMMANDS`: each entry is a function
``add(subparsers)`` that adds its parser and sets ``func`` (``args.func(args) -> exit
code``): run, catalog build|info, train, sft, eval, serve, play, replay and top, each from one
pydantic model next to its command (`ecomrlve.actors.config`); `register_command` adds more.
A command that needs an optional dependency checks for it when it runs and names the extra.

Ray: ``ecomrlve run`` calls ``ray.init()``: it joins the cluster named by ``RAY_ADDRESS``
(set inside ``ray job submit``) or ``--address``, else starts a new local one. Ray's usage
statistics are disabled unless ``--usage-stats`` is given.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

from pydantic import model_validator

from ecomrlve.catalog_service.build import CatalogBuildConfig, CatalogInfoConfig, build_command, info_command

from .config import ConfigError, add_command, arg, print_error
from .driver import Driver, RunConfig
from .ray_session import init_ray
from .evaluate import add_eval_commands
from .openenv_server import add_serve_commands
from .play import add_play_commands
from .replay import add_replay_commands
from .top import add_top_commands
from .train import add_train_commands

COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def register_command(add: Callable[[argparse._SubParsersAction], None]) -> Callable:
    """Register a subcommand: `add(subparsers)` adds a parser that sets ``func``."""
    COMMANDS.append(add)
    return add


# --------------------------------------------------------------------------- ray


# --------------------------------------------------------------------------- run


class RunCommand(RunConfig):
    """``ecomrlve run``: a `RunConfig` plus how to reach Ray and how to show progress."""

    tau_num: int | None = arg(None, "curriculum: outcomes at h per check (default 32)", ge=1)
    tau_acc: float | None = arg(None, "curriculum: accuracy to raise h (default 0.9)", gt=0, le=1)
    address: str | None = arg(None, "Ray cluster address (default: RAY_ADDRESS, else a local cluster)")
    num_cpus: int | None = arg(None, "CPUs of a local cluster (default: all)", ge=1)
    usage_stats: bool = arg(False, "allow Ray's usage statistics (off by default)")
    worker_logs: bool = arg(False, "print actor logs on the console")
    live: bool = arg(True, "the live display (--no-live: plain log lines)")

    @model_validator(mode="after")
    def _curriculum_flags(self) -> "RunCommand":
        for name in ("tau_num", "tau_acc"):
            if getattr(self, name) is not None:
                self.curriculum[name] = getattr(self, name)
        return self


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


def cmd_run(cfg: RunCommand) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console(stderr=True)
    if not console.is_terminal:  # logs of `ray job submit`, pipes: never fold paths and URLs at 80 columns
        console.width = 200

    def log(message: str) -> None:
        console.print(f"{time.strftime('%H:%M:%S')} {message}", soft_wrap=True, highlight=False, markup=False)

    try:
        driver = Driver(cfg)  # loads every environment before Ray starts
    except ValueError as exc:
        print_error(console, str(exc))
        return 2
    init_ray(address=cfg.address, num_cpus=cfg.num_cpus, usage_stats=cfg.usage_stats, log_to_driver=cfg.worker_logs)
    for line in where_to_look():
        console.print(line, soft_wrap=True, highlight=False, markup=False)
    t0 = time.perf_counter()
    try:
        driver.start(log=log)
        if not cfg.live or not console.is_terminal:
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


def add_run_command(subparsers) -> None:
    add_command(subparsers, "run", RunCommand, cmd_run,
                help="roll out episodes on Ray (shards, env workers, shopper service, curriculum)",
                description="Roll out episodes of a collection with the actor system and write a run directory "
                            "(trajectories.parquet, curriculum.json, summary.md, plots).")


def add_catalog_commands(subparsers) -> None:
    """``ecomrlve catalog build|info`` (the models and commands live in ecomrlve.catalog_service.build)."""
    catalog = subparsers.add_parser("catalog", help="build or inspect a product catalog")
    leaves = catalog.add_subparsers(dest="catalog_command", required=True)
    add_command(leaves, "build", CatalogBuildConfig, build_command,
                help="generate a synthetic catalog, index it and save both")
    add_command(leaves, "info", CatalogInfoConfig, info_command,
                help="print the number of products and the saved index kinds")


for _add in (add_run_command, add_catalog_commands, add_train_commands, add_eval_commands, add_serve_commands,
             add_play_commands, add_replay_commands, add_top_commands):
    register_command(_add)


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecomrlve", description="Adaptive, verifiable RL environments for "
                                     "e-commerce agents, run as a Ray actor system.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command `argv` names; a bad value or a missing optional dependency is one line on
    stderr (``error: --flag: ...``) and exit status 2, before anything starts."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        from rich.console import Console

        print_error(Console(stderr=True), str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
