"""Joining or starting the Ray cluster an ecomrlve command runs on (`init_ray`)."""

from __future__ import annotations

import os

__all__ = ["init_ray"]


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
