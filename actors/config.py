"""Command configuration written once: a pydantic model per command gives its flags, help and checks.

A command's model is a ``pydantic.BaseModel``; each field becomes one command-line argument:

- flag ``--field-name`` (underscores become dashes), or the one `arg` names (``flag="--catalog"``),
  plus an optional short flag (``short="-c"``); ``positional=True`` makes it a positional argument;
- help from ``description``, with ``(default X)`` appended when the default is not None/False;
- ``Literal[...]`` / ``Enum`` fields get ``choices``; ``bool`` fields get ``--x/--no-x``
  (``argparse.BooleanOptionalAction``; ``off="--in-process"`` adds one more flag that sets False);
  ``list`` / ``tuple`` fields take one comma-separated value; ``dict`` fields take repeatable
  ``KEY=VALUE`` (a JSON value, else the string); ``X | None`` takes an X;
- a field whose ``arg(..., cli=False)`` is reachable from Python only, not from the command line.

`parse_model` builds the model from parsed arguments; any validation error (field constraint or
model validator) becomes a `ConfigError`: one line naming the flag, e.g. ``--episodes: Input should
be greater than or equal to 1``. `add_command` wires a subcommand: parse, build the model, run
``run(config) -> exit code``; `ecomrlve.actors.cli.main` prints a ConfigError as ``error: ...`` with
exit status 2, before anything (Ray, a server, a model) starts.
"""

from __future__ import annotations

import argparse
import enum
import json
import types
import typing
from typing import Annotated, Any, Callable, Literal

from pydantic import AfterValidator, BaseModel, Field, ValidationError
from pydantic.fields import FieldInfo

__all__ = ["ConfigError", "MissingExtra", "Collection", "arg", "add_arguments", "parse_model", "add_command", "cli_fields", "flag_of", "require_extra",
           "print_error"]


def _known_collection(spec: str) -> str:
    from ecomrlve.envs import resolve_envs

    resolve_envs(spec)  # a ValueError naming the unknown collection or env id
    return spec


# a config field naming environments: a collection (C1, C2, C4, C8), an env id, or a comma-separated mix
Collection = Annotated[str, AfterValidator(_known_collection)]

_CLI = "cli"  # json_schema_extra key holding the command-line options of a field


class ConfigError(ValueError):
    """A bad command-line value: a one-line message that starts with the flag it names."""


class MissingExtra(ConfigError):
    """A command needs an optional dependency that is not installed; the message names its extra."""


def arg(default: Any = ..., description: str = "", *, flag: str | None = None, short: str | None = None,
        positional: bool = False, off: str | None = None, metavar: str | None = None, cli: bool = True,
        **field_kwargs: Any) -> Any:
    """``pydantic.Field`` with the command-line options of the field (see the module docstring).
    `field_kwargs` go to Field (``ge=1``, ``default_factory=dict``, ...)."""
    options = {"flag": flag, "short": short, "positional": positional, "off": off, "metavar": metavar, "cli": cli}
    if "default_factory" in field_kwargs:
        return Field(description=description, json_schema_extra={_CLI: options}, **field_kwargs)
    return Field(default, description=description, json_schema_extra={_CLI: options}, **field_kwargs)


def _options(info: FieldInfo) -> dict:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return {"flag": None, "short": None, "positional": False, "off": None, "metavar": None, "cli": True,
            **extra.get(_CLI, {})}


def cli_fields(model: type[BaseModel]) -> list[str]:
    """Names of the fields of `model` that are command-line arguments, in declaration order."""
    return [name for name, info in model.model_fields.items() if _options(info)["cli"]]


def flag_of(model: type[BaseModel], name: str) -> str:
    """The command-line flag of field `name` (``--catalog``), or the name itself for a positional
    or a field that is not on the command line."""
    opts = _options(model.model_fields[name])
    if opts["positional"] or not opts["cli"]:
        return name
    return opts["flag"] or "--" + name.replace("_", "-")


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _kind(tp: Any) -> tuple[str, Any]:
    """(kind, detail) of an annotation: bool, choices, list, dict or scalar (detail: the converter)."""
    tp = _unwrap_optional(tp)
    origin = typing.get_origin(tp)
    if tp is bool:
        return "bool", None
    if origin is Literal:
        return "choices", tuple(typing.get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "choices", tuple(m.value for m in tp)
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple):
        return "list", None
    if origin is dict or tp is dict:
        return "dict", None
    if tp in (int, float):
        return "scalar", tp
    return "scalar", str


def _help(info: FieldInfo) -> str:
    text = info.description or ""
    default = info.get_default(call_default_factory=True)
    if default not in (None, False, "", (), [], {}) and not info.is_required():
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        text = f"{text} (default {shown})" if text else f"default {shown}"
    return text.replace("%", "%%")


def add_arguments(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """Add one argument per command-line field of `model` to `parser` (dest = the field name)."""
    for name, info in model.model_fields.items():
        opts = _options(info)
        if not opts["cli"]:
            continue
        kind, detail = _kind(info.annotation)
        required = info.is_required()
        kwargs: dict[str, Any] = {"help": _help(info)}
        if opts["metavar"]:
            kwargs["metavar"] = opts["metavar"]
        if kind == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif kind == "choices":
            kwargs["choices"] = detail
            kwargs["type"] = type(detail[0])
        elif kind == "list":
            kwargs.setdefault("metavar", "A,B,...")
        elif kind == "dict":
            kwargs["action"] = "append"
            kwargs.setdefault("metavar", "KEY=VALUE")
            kwargs["help"] += " (repeatable)"
        else:
            kwargs["type"] = detail
        if opts["positional"]:
            if not required:
                kwargs["nargs"] = "?"
            parser.add_argument(name, **kwargs)
            continue
        flags = [flag_of(model, name)] + ([opts["short"]] if opts["short"] else [])
        if required:
            kwargs["required"] = True
        # argparse leaves an absent flag out: the model's own default applies (SUPPRESS)
        parser.add_argument(*flags, dest=name, default=argparse.SUPPRESS, **kwargs)
        if opts["off"]:
            parser.add_argument(opts["off"], dest=name, action="store_false", default=argparse.SUPPRESS,
                                help=f"same as {flags[0].replace('--', '--no-', 1)}")


def _dict_value(model: type[BaseModel], name: str, items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{flag_of(model, name)}: expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def error_message(model: type[BaseModel], exc: ValidationError) -> str:
    """The first error of `exc` as one line naming its flag (``--episodes: ...``)."""
    err = exc.errors()[0]
    msg = str(err["msg"]).removeprefix("Value error, ").replace("\n", " ")
    loc = err.get("loc") or ()
    if loc and loc[0] in model.model_fields:
        name = str(loc[0])
        for prefix in (f"{name}: ", f"{name} "):  # a validator that names its field already
            msg = msg.removeprefix(prefix)
        return f"{flag_of(model, name)}: {msg}"
    # a model validator's message starts with the field it is about ("catalog_size must be ...")
    for name in sorted(model.model_fields, key=len, reverse=True):
        for sep in (":", " "):
            if msg.startswith(name + sep):
                return f"{flag_of(model, name)}:{msg[len(name) + (sep == ':'):]}"
    return msg


def parse_model(model: type[BaseModel], args: argparse.Namespace | dict) -> BaseModel:
    """The `model` instance the parsed `args` describe (absent flags: the field defaults);
    a bad value raises `ConfigError` naming its flag."""
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    values = {}
    for name in cli_fields(model):
        if name not in given:
            continue
        value = given[name]
        kind, _ = _kind(model.model_fields[name].annotation)
        if kind == "list" and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif kind == "dict" and isinstance(value, list):
            value = _dict_value(model, name, value)
        values[name] = value
    try:
        return model(**values)
    except ValidationError as exc:
        raise ConfigError(error_message(model, exc)) from None


def add_command(subparsers, name: str, model: type[BaseModel], run: Callable[[Any], int], *, help: str,
                description: str | None = None) -> argparse.ArgumentParser:
    """Add subcommand `name`: its arguments come from `model`; it runs ``run(model instance)``."""
    parser = subparsers.add_parser(name, help=help, description=description or help)
    add_arguments(parser, model)
    parser.set_defaults(func=lambda args: run(parse_model(model, args)), config_model=model)
    return parser


def require_extra(modules: tuple[str, ...] | list[str], extra: str, what: str) -> None:
    """Import `modules` or raise `MissingExtra` naming the extra that provides them:
    ``<what> needs fastapi, uvicorn: pip install 'ecomrlve[serve]'``."""
    import importlib

    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise MissingExtra(f"{what} needs {', '.join(missing)}: pip install 'ecomrlve[{extra}]'")


def print_error(console, message: str) -> None:
    """One line on stderr: ``error: <message>`` (never wrapped to the terminal width)."""
    from rich.markup import escape

    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)
