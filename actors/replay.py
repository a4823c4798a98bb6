"""``ecomrlve replay RUN_DIR EPISODE_ID``: re-run a recorded episode and check its reward.

    ecomrlve replay runs/20250101-120000 42
    ecomrlve replay runs/eval-20250101-120000 7 --quiet

Reads the episode's row (env_id, difficulty, seed, actions) from ``trajectories.parquet``
(``ecomrlve run``) or ``episodes.parquet`` (``ecomrlve eval``), rebuilds the catalog from the
run's ``config.json`` (``catalog_dir``, or the synthetic ``catalog_size`` / ``catalog_seed``;
flags override), plays the recorded actions, prints the transcript (rich), and compares the
reward fields (r_task, r_eff, r_hall, r_total, is_correct, termination_reason) and the turn
count with the recording, exactly. The transcript (messages) is compared too, unless the run's
shopper backend rephrased messages (a non-template ``shopper_backend``) or ``--ignore-messages``.

Exit codes: 0 identical, 1 different, 2 usage error (no such run dir / episode).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from ecomrlve.catalog_service.catalog import CatalogDir

from .config import add_command, arg

from .evaluate import DEFAULT_CATALOG_SIZE, EPISODES_FILE, load_catalog
from .rollout import Episode
from .run_dir import TRAJECTORY_FILE, TRAJECTORY_PARTS, trajectory_files

REWARD_FIELDS = ("r_task", "r_eff", "r_hall", "r_total", "is_correct", "termination_reason", "turns")

__all__ = ["ReplayResult", "ReplayConfig", "replay_episode", "load_episode", "add_replay_commands", "REWARD_FIELDS"]


class ReplayError(ValueError):
    """The run directory or episode cannot be replayed (usage error)."""


@dataclass
class ReplayResult:
    episode: dict
    recorded: dict
    replayed: dict
    messages: list
    messages_checked: bool
    diffs: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.diffs


def _trajectory_files(run_dir: Path) -> list[Path]:
    """A parquet file given directly; else a run directory's trajectories (closed file and
    parts alike, so a killed run replays too); else an eval directory's episodes."""
    if run_dir.is_file() and run_dir.suffix == ".parquet":
        return [run_dir]
    files = trajectory_files(run_dir)
    if files:
        return files
    if (run_dir / EPISODES_FILE).is_file():
        return [run_dir / EPISODES_FILE]
    raise ReplayError(f"{run_dir}: no {TRAJECTORY_FILE} (or {TRAJECTORY_PARTS}/) and no {EPISODES_FILE}")


def load_episode(run_dir, episode_id: int) -> tuple[dict, dict]:
    """(the episode's row, the run's config.json or {})."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise ReplayError(f"{run_dir}: no such run directory")
    rows = []
    for path in _trajectory_files(run_dir):  # only the episode's rows are read (row-group statistics)
        rows += pq.read_table(path, filters=[("episode_id", "=", int(episode_id))]).to_pylist()
    if not rows:
        raise ReplayError(f"{run_dir}: no episode {episode_id}")
    cfg_path = (run_dir if run_dir.is_dir() else run_dir.parent) / "config.json"
    config = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    return rows[0], config


def replay_episode(run_dir, episode_id: int, catalog=None, catalog_dir: str | None = None,
                   catalog_size: int | None = None, catalog_seed: int | None = None,
                   check_messages: bool | None = None) -> ReplayResult:
    """Replay one recorded episode; `ReplayResult.diffs` lists every difference."""
    row, config = load_episode(run_dir, episode_id)
    if catalog is None:
        catalog = load_catalog(catalog_dir or config.get("catalog_dir"),
                               catalog_size or config.get("catalog_size") or DEFAULT_CATALOG_SIZE,
                               catalog_seed if catalog_seed is not None else config.get("catalog_seed", 0))
    actions = json.loads(row["actions"] or "[]")
    recorded_messages = json.loads(row["messages"] or "[]")
    if check_messages is None:
        check_messages = config.get("shopper_backend", "template") == "template"
    episode = Episode(row, catalog=catalog)
    episode.reset()
    for action in actions:
        if episode.done:
            break
        episode.step(action)
    if episode.error is not None:
        error = episode.error
    elif len(episode.actions) < len(actions):
        error = f"the episode ended after {len(episode.actions)} of {len(actions)} recorded actions"
    elif not episode.done and actions:
        error = f"the episode had not ended after all {len(actions)} recorded actions"
    else:
        error = None
    replayed = {**episode.reward, "turns": episode.turns}
    recorded = {k: row.get(k) for k in REWARD_FIELDS}
    diffs = []
    if error:
        diffs.append(f"replay: {error}")
    if str(recorded.get("termination_reason") or "").startswith("error:"):
        diffs.append(f"the recording ended in an error: {recorded['termination_reason']}")
    for k in REWARD_FIELDS:
        if recorded.get(k) is None and k == "turns":
            continue
        if recorded.get(k) != replayed.get(k):
            diffs.append(f"{k}: recorded {recorded.get(k)!r}, replayed {replayed.get(k)!r}")
    messages = json.loads(json.dumps(episode.messages, ensure_ascii=False, default=str))
    if check_messages and recorded_messages and messages != recorded_messages:
        first = next((i for i, (a, b) in enumerate(zip(recorded_messages, messages)) if a != b),
                     min(len(recorded_messages), len(messages)))
        diffs.append(f"messages: transcripts differ from message {first} "
                     f"({len(recorded_messages)} recorded, {len(messages)} replayed)")
    return ReplayResult(episode=row, recorded=recorded, replayed=replayed, messages=messages,
                        messages_checked=bool(check_messages and recorded_messages), diffs=diffs)


# --------------------------------------------------------------------------- printing


def print_transcript(console, messages: list, max_tool_chars: int | None = 800) -> None:
    from rich.panel import Panel
    from rich.text import Text

    styles = {"system": ("dim", "system"), "user": ("blue", "shopper"), "assistant": ("green", "agent"),
              "tool": ("magenta", "tool")}
    for msg in messages:
        style, who = styles.get(msg.get("role"), ("white", msg.get("role", "?")))
        if msg.get("role") == "tool":
            who = f"tool · {msg.get('name', '')}"
        content = msg.get("content") or ""
        if msg.get("role") == "tool" and max_tool_chars and len(content) > max_tool_chars:
            content = content[:max_tool_chars] + f" … ({len(content) - max_tool_chars} more characters; --full shows all)"
        body = Text(content)
        for call in msg.get("tool_calls") or []:
            body.append(f"\n→ {call['function']['name']}({call['function']['arguments']})", style="bold")
        if msg.get("answer"):
            body.append(f"\n⇒ answer {json.dumps(msg['answer'], ensure_ascii=False)}", style="bold")
        if msg.get("role") == "system":
            body = Text((msg.get("content") or "")[:300] + ("…" if len(msg.get("content") or "") > 300 else ""))
        console.print(Panel(body, title=who, title_align="left", border_style=style))


def print_comparison(console, result: ReplayResult) -> None:
    from rich.table import Table

    t = Table(title="reward: recorded vs replayed")
    for col in ("field", "recorded", "replayed", ""):
        t.add_column(col)
    for k in REWARD_FIELDS:
        a, b = result.recorded.get(k), result.replayed.get(k)
        t.add_row(k, str(a), str(b), "[green]=[/green]" if a == b else "[red]≠[/red]")
    console.print(t)


# --------------------------------------------------------------------------- CLI


class ReplayConfig(BaseModel):
    """``ecomrlve replay``: which recorded episode to replay and how to show it."""

    model_config = ConfigDict(extra="forbid")

    run_dir: str = arg(description="run or eval directory (or a trajectories parquet file)", positional=True)
    episode_id: int = arg(description="episode_id of the episode", positional=True)
    catalog_dir: CatalogDir = arg(None, "catalog directory (default: the run's)", flag="--catalog")
    catalog_size: int | None = arg(None, "synthetic catalog size (default: the run's)", ge=1)
    catalog_seed: int | None = arg(None, "synthetic catalog seed (default: the run's)")
    ignore_messages: bool = arg(False, "compare the reward only, not the transcript")
    quiet: bool = arg(False, "no transcript, only the comparison", short="-q")
    full: bool = arg(False, "print tool results in full (default: first 800 characters)")


def add_replay_commands(subparsers) -> None:
    add_command(subparsers, "replay", ReplayConfig, cmd_replay,
                help="re-run a recorded episode, print its transcript, check its reward",
                description="Replay an episode of a run directory (trajectories.parquet) or an eval directory "
                            "(episodes.parquet) from (env, difficulty, seed, actions); exit 1 when the replayed "
                            "reward or transcript differs from the recording.")


def cmd_replay(args: ReplayConfig) -> int:
    from rich.console import Console

    console = Console()
    try:
        result = replay_episode(args.run_dir, args.episode_id, catalog_dir=args.catalog_dir,
                                catalog_size=args.catalog_size, catalog_seed=args.catalog_seed,
                                check_messages=False if args.ignore_messages else None)
    except (ReplayError, FileNotFoundError) as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        return 2
    ep = result.episode
    console.rule(f"episode {ep['episode_id']}: {ep['env_id']} d={ep['difficulty']} seed={ep['seed']} "
                 f"policy={ep.get('policy')}")
    if not args.quiet:
        print_transcript(console, result.messages, None if args.full else 800)
    print_comparison(console, result)
    if result.identical:
        checked = "reward and transcript" if result.messages_checked else "reward"
        console.print(f"[green]identical[/green]: the replayed {checked} equals the recording")
        return 0
    for d in result.diffs:
        console.print(f"[red]differs[/red]: {d}")
    return 1

