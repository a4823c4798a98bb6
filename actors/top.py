"""``ecomrlve top``: a live terminal view of a running ``ecomrlve run`` (or ``train``).

    ecomrlve top --address 127.0.0.1:53012   # the GCS address `ecomrlve run` prints at start
    ecomrlve top                  # the newest run on the cluster of RAY_ADDRESS, else Ray's "auto"
    ecomrlve top --run 20261202-171500 --interval 2
    ecomrlve top --once           # print one frame and exit

It joins the cluster as a read-only driver and reads two sources:

- the run's curriculum scheduler, the named actor ``ecomrlve-curriculum-<run>`` in namespace
  ``ecomrlve``: per environment the episodes reported, successes and the window ``[l, h]``;
  episodes/s is the change in episodes between two frames over the time between them;
- every node's Prometheus endpoint (``ray.nodes()`` gives each node's metrics export port):
  search and shopper latency quantiles from the ``ray_ecomrlve_*_latency_ms`` histograms
  (cumulative since the run started; ``-`` until a node has exported them).

On a cluster, run it on the head (``ray attach cluster.yaml``, then ``ecomrlve top``).
"""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ecomrlve.scheduler.actor import SCHEDULER_NAME

from .config import add_command, arg

NAMESPACE = "ecomrlve"
RUN_PREFIX = f"{SCHEDULER_NAME}-"
LATENCY_METRICS = {"search": "ray_ecomrlve_search_latency_ms", "shopper": "ray_ecomrlve_shopper_latency_ms"}

__all__ = ["Frame", "list_runs", "read_frame", "render", "histogram_quantile", "TopConfig", "add_top_commands"]


@dataclass
class Frame:
    """One reading of a run: `levels` is the scheduler's per-env summary, `eps` episodes/s per
    env since the previous frame (None on the first), `latency` {name: {p50, p99, count}}."""

    run: str
    t: float
    levels: dict
    pending: int
    eps: dict | None = None
    latency: dict = field(default_factory=dict)


def list_runs() -> list[str]:
    """Names of the runs whose scheduler is alive, oldest first (names are UTC timestamps)."""
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a.get("namespace") == NAMESPACE and a["name"].startswith(RUN_PREFIX)]
    return sorted(n[len(RUN_PREFIX):] for n in names)


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over cumulative `(upper bound, count)` buckets (linear
    inside a bucket; the +Inf bucket answers with the largest finite bound)."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lo_bound, lo_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lo_bound
            if count == lo_count:
                return bound
            return lo_bound + (bound - lo_bound) * (rank - lo_count) / (count - lo_count)
        lo_bound, lo_count = bound, count
    return lo_bound


def scrape_latencies(timeout_s: float = 2.0) -> dict:
    """{"search"|"shopper": {"p50", "p99", "count"}} summed over every node's metrics endpoint."""
    import ray
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[str, dict[float, float]] = {k: {} for k in LATENCY_METRICS}
    for node in ray.nodes():
        port = node.get("MetricsExportPort")
        if not node.get("Alive") or not port:
            continue
        try:
            body = urllib.request.urlopen(f"http://{node['NodeManagerAddress']}:{port}/metrics",
                                          timeout=timeout_s).read().decode()
        except OSError:
            continue
        for fam in text_string_to_metric_families(body):
            for key, name in LATENCY_METRICS.items():
                if fam.name != name:
                    continue
                for s in fam.samples:
                    if s.name == f"{name}_bucket":
                        le = float(s.labels["le"])
                        sums[key][le] = sums[key].get(le, 0.0) + s.value
    out = {}
    for key, by_le in sums.items():
        buckets = sorted(by_le.items())
        if buckets and buckets[-1][1] > 0:
            out[key] = {"p50": histogram_quantile(0.5, buckets), "p99": histogram_quantile(0.99, buckets),
                        "count": int(buckets[-1][1])}
    return out


def read_frame(run: str, previous: Frame | None = None, latencies: bool = True) -> Frame:
    import ray

    sched = ray.get_actor(RUN_PREFIX + run, namespace=NAMESPACE)
    summary = ray.get(sched.summary.remote(), timeout=10)
    frame = Frame(run, time.monotonic(), summary["levels"], summary["pending"])
    if previous is not None and frame.t > previous.t:
        dt = frame.t - previous.t
        frame.eps = {e: (v["episodes"] - previous.levels.get(e, {}).get("episodes", 0)) / dt
                     for e, v in frame.levels.items()}
    if latencies:
        frame.latency = scrape_latencies()
    return frame


def render(frame: Frame):
    t = Table(title=f"ecomrlve top: run {frame.run} ({frame.pending} leased episodes not reported yet)")
    for col in ("env", "episodes", "success", "window [l, h]", "episodes/s"):
        t.add_column(col, justify="left" if col == "env" else "right")
    total, ok = 0, 0
    for env_id in sorted(frame.levels):
        v = frame.levels[env_id]
        total += v["episodes"]
        ok += v["successes"]
        eps = "-" if frame.eps is None else f"{frame.eps.get(env_id, 0.0):.1f}"
        t.add_row(env_id, str(v["episodes"]), f"{v['successes'] / v['episodes']:.0%}" if v["episodes"] else "-",
                  f"[{v['l']}, {v['h']}]", eps)
    all_eps = "-" if frame.eps is None else f"{sum(frame.eps.values()):.1f}"
    t.add_row("all", str(total), f"{ok / total:.0%}" if total else "-", "", all_eps, style="bold")
    lines = []
    for key in LATENCY_METRICS:
        m = frame.latency.get(key)
        lines.append(f"{key} latency: p50 {m['p50']:.2f} ms, p99 {m['p99']:.2f} ms over {m['count']:,} requests"
                     if m else f"{key} latency: -")
    return Group(t, Text("\n".join(lines)))


# --------------------------------------------------------------------------- CLI


class TopConfig(BaseModel):
    """``ecomrlve top``: which run to watch, on which cluster, how often."""

    model_config = ConfigDict(extra="forbid")

    run: str | None = arg(None, "run name (its run directory's name; default: the newest running)")
    address: str | None = arg(None, "Ray cluster address (default: RAY_ADDRESS, else auto)")
    interval: float = arg(1.0, "seconds between frames", gt=0)
    once: bool = arg(False, "print one frame and exit")


def add_top_commands(subparsers) -> None:
    add_command(subparsers, "top", TopConfig, cmd_top,
                help="live view of a running run: per env episodes, success, window, episodes/s; search and "
                     "shopper latency",
                description="Join the Ray cluster (RAY_ADDRESS or --address, else the local one) and show a running "
                            "run, read from its curriculum scheduler and the nodes' metrics endpoints.")


def cmd_top(args: TopConfig) -> int:
    import os

    from rich.console import Console
    from rich.live import Live

    from .config import print_error

    console = Console()
    err = Console(stderr=True)
    import ray

    if not ray.is_initialized():
        from .ray_session import init_ray

        address = args.address or os.environ.get("RAY_ADDRESS") or "auto"
        try:
            init_ray(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            print_error(err, f"--address: no Ray cluster at {address}: {str(exc).splitlines()[0]}")
            return 2
    runs = list_runs()
    if not runs:
        print_error(err, "no running ecomrlve run on this cluster")
        return 1
    run = args.run or runs[-1]
    if run not in runs:
        print_error(err, f"--run: no running run {run!r}; running: {', '.join(runs)}")
        return 2
    try:
        if args.once:  # two readings `interval` apart, so episodes/s has a value
            first = read_frame(run, latencies=False)
            time.sleep(args.interval)
            console.print(render(read_frame(run, first)))
            return 0
        frame = read_frame(run)
    except ValueError:  # the scheduler is gone: the run ended between the listing and the reading
        print_error(err, f"run {run} has ended")
        return 1
    try:
        with Live(render(frame), console=console, refresh_per_second=4) as live:
            while True:
                time.sleep(args.interval)
                try:
                    frame = read_frame(run, frame)
                except ValueError:  # the scheduler is gone: the run ended
                    break
                live.update(render(frame))
    except KeyboardInterrupt:
        pass
    console.print(f"run {run} ended" if run not in list_runs() else "")
    return 0
