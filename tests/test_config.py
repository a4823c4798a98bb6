"""Config once: every command's flags, help and checks come from its pydantic model
(`ecomrlve.actors.config`); a bad value is one line naming its flag; extras named in messages exist."""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, model_validator

from ecomrlve.actors import cli
from ecomrlve.actors.config import ConfigError, add_arguments, arg, cli_fields, flag_of, parse_model

ROOT = Path(__file__).resolve().parents[1]


class Toy(BaseModel):
    run_dir: str = arg(description="where", positional=True)
    episodes: int = arg(5, "how many", short="-n", ge=1)
    policy: Literal["a", "b"] = arg("a", "who")
    catalog_dir: str | None = arg(None, "catalog", flag="--catalog")
    live: bool = arg(True, "live display")
    ray: bool = arg(True, "actor system", off="--in-process")
    sync: bool | None = arg(None, "alternate", off="--overlap")
    ds: tuple[int, ...] = arg((0, 3), "difficulties")
    axes: dict = arg(description="axis overrides", flag="--axis", default_factory=dict)
    hidden: int = arg(3, "python only", cli=False)

    @model_validator(mode="after")
    def _cross(self):
        if self.policy == "b" and self.episodes > 10:
            raise ValueError("episodes must be <= 10 with policy b")
        return self


def _toy(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser, Toy)
    return parse_model(Toy, parser.parse_args(list(argv)))


def test_arguments_come_from_the_model():
    assert cli_fields(Toy) == ["run_dir", "episodes", "policy", "catalog_dir", "live", "ray", "sync", "ds", "axes"]
    assert [flag_of(Toy, f) for f in ("episodes", "catalog_dir", "run_dir")] == ["--episodes", "--catalog", "run_dir"]
    assert _toy("x") == Toy(run_dir="x")  # absent flags: the model's defaults
    t = _toy("x", "-n", "3", "--policy", "b", "--catalog", "c", "--no-live", "--in-process", "--overlap",
             "--ds", "1,2", "--axis", "T_max=2", "--axis", "name=v")
    assert (t.episodes, t.policy, t.catalog_dir, t.live, t.ray, t.sync) == (3, "b", "c", False, False, False)
    assert t.ds == (1, 2) and t.axes == {"T_max": 2, "name": "v"} and t.hidden == 3
    assert _toy("x", "--sync", "--ray").sync is True
    with pytest.raises(SystemExit):  # a Literal's choices are argparse's
        _toy("x", "--policy", "c")
    with pytest.raises(SystemExit):
        _toy("x", "--hidden", "4")


@pytest.mark.parametrize("argv, message", [
    (["--episodes", "0"], "--episodes: Input should be greater than or equal to 1"),
    (["--policy", "b", "--episodes", "11"], "--episodes: must be <= 10 with policy b"),
    (["--axis", "T_max"], "--axis: expects KEY=VALUE, got 'T_max'"),
    (["--ds", "1,x"], "--ds: Input should be a valid integer, unable to parse string as an integer"),
])
def test_a_bad_value_is_one_line_naming_its_flag(argv, message):
    with pytest.raises(ConfigError) as exc:
        _toy("x", *argv)
    assert str(exc.value) == message


def _commands() -> dict[str, argparse.ArgumentParser]:
    """Every leaf command of the CLI: name ('catalog build') -> its parser."""
    out = {}

    def walk(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{prefix} {name}".strip())
                return
        out[prefix] = parser

    walk(cli.build_parser(), "")
    return out


def test_every_command_has_one_model_and_its_help_lists_exactly_its_fields():
    commands = _commands()
    assert sorted(commands) == ["catalog build", "catalog info", "eval", "play", "replay", "run", "serve", "sft", "top",
                                "train"]
    for name, parser in commands.items():
        model = parser.get_default("config_model")
        assert model is not None, name
        dests = {a.dest for a in parser._actions if not isinstance(a, argparse._HelpAction)}
        assert dests == set(cli_fields(model)), name
        text = parser.format_help()
        for field in cli_fields(model):
            assert flag_of(model, field) in text, (name, field)
            description = model.model_fields[field].description
            assert description and description.split()[0] in text, (name, field)


@pytest.mark.parametrize("argv, flag", [
    (["run", "--episodes", "-1"], "--episodes"),
    (["run", "--collection", "C9"], "--collection"),
    (["train", "--steps", "0"], "--steps"),
    (["train", "--engine-opt", "static_cache"], "--engine-opt"),
    (["sft", "runs/x", "--out", "/tmp/never-built", "--model", "nonexistent"], "--model"),
    (["eval", "--seeds", "0"], "--seeds"),
    (["eval", "--envs", "C9"], "--envs"),
    (["eval", "--difficulties", "0,99"], "--difficulties"),
    (["serve", "--port", "70000"], "--port"),
    (["serve", "--env", "E_NOPE"], "--env"),
    (["play", "--difficulty", "99"], "--difficulty"),
    (["replay", "runs/x", "1", "--catalog-size", "0"], "--catalog-size"),
    (["top", "--interval", "0"], "--interval"),
    (["catalog", "build", "--n", "-5", "--out", "/tmp/never-built"], "--n"),
    (["catalog", "info", "/nonexistent/catalog"], "dir"),
])
def test_every_command_names_the_flag_of_a_bad_value(argv, flag, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"error: {flag}:"), err
    assert not Path("/tmp/never-built").exists()


def test_a_missing_optional_dependency_names_its_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn -> ImportError
    assert cli.main(["serve"]) == 2
    assert capsys.readouterr().err.strip() == "error: `ecomrlve serve` needs uvicorn: pip install 'ecomrlve[serve]'"


def test_every_extra_named_in_the_source_exists():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named = {}
    for path in ROOT.rglob("*"):
        if path.suffix not in (".py", ".md", ".toml", ".yaml", ".sh") or any(
                part.startswith(".") or part in ("tests", "build") for part in path.relative_to(ROOT).parts):
            continue
        for group in re.findall(r"ecomrlve\[([^\]]*)\]", path.read_text(errors="replace")):
            for extra in group.split(","):
                if not extra.strip().startswith("{"):  # the f-string of require_extra
                    named.setdefault(extra.strip(), path.relative_to(ROOT))
    assert "serve" in named and "llm" in named  # the search finds what it looks for
    unknown = {extra: str(path) for extra, path in named.items() if extra not in extras}
    assert not unknown, unknown
