"""The agent's action: one JSON object per turn (docs/architecture.md, "Agent action"), parsed strictly.

`parse_action` turns a dict or a JSON string into an `Action` or raises `InvalidAction`
whose message names the problem (the field path for schema errors). Tool arguments are
validated later against each tool's own model (`ecomrlve.envs.tools`).

Before any recursive code (the json module, pydantic, repr) sees it, an action's shape is
bounded: at most MAX_ACTION_BYTES of text, MAX_DEPTH levels of nesting, MAX_NODES values,
integers of at most MAX_INT_DIGITS digits, finite floats only, and only JSON types (dict
with str keys, list, str, int, float, bool, None). `loads_bounded` is the one JSON reader
for untrusted text (the LLM codec uses it too); `check_shape` is the same bound for an
already-built Python object. Both raise `InvalidAction` naming the problem.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

MAX_ACTION_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 8_000
MAX_TOOL_CALLS = 16
MAX_DEPTH = 32  # the deepest real action (answer -> list -> id, filters -> attributes) is 5
MAX_NODES = 20_000
MAX_INT_DIGITS = 18
_INT_LIMIT = 10**MAX_INT_DIGITS


class InvalidAction(ValueError):
    """The agent's action cannot be executed; the message names the reason."""


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _underscore_name(cls, name: str) -> str:
        return name.replace(".", "_")


class Answer(BaseModel):
    """Every field the built-in verifiers read; a registered environment adds its own
    (`extend_answer`). Unknown fields are rejected, never dropped."""

    model_config = ConfigDict(extra="forbid")

    env: str | None = Field(None, max_length=32, description="The environment (or journey sub-task) answered.")
    recommended_product_ids: list[str] | None = Field(
        None, max_length=50, description="E_PD, E_SUB, E_BUNDLE: recommended products, best first."
    )
    selected_order_id: str | None = Field(None, max_length=64, description="E_RETURN, E_STATUS: the order.")
    selected_line_id: str | None = Field(None, max_length=64, description="E_RETURN: the order line.")
    order_status: str | None = Field(None, max_length=64, description="E_STATUS: the order's status.")
    eta: str | None = Field(None, max_length=32, description="E_STATUS: estimated delivery date, YYYY-MM-DD.")
    eligible: bool | None = Field(None, description="E_RETURN: whether the item could be returned.")
    policy_answer: str | float | int | bool | None = Field(None, description="E_POLICY: the answer.")
    done: bool | None = Field(None, description="E_CART: the cart is final.")

    @field_validator("recommended_product_ids")
    @classmethod
    def _short_ids(cls, ids: list[str] | None) -> list[str] | None:
        if ids is not None and any(len(i) > 64 for i in ids):
            raise ValueError("product ids are at most 64 characters")
        return ids

    def given_fields(self) -> dict[str, Any]:
        """The fields the agent set (not None)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assistant_message: str | None = Field(None, max_length=MAX_MESSAGE_CHARS)
    tool_calls: list[ToolCall] = Field(default_factory=list, max_length=MAX_TOOL_CALLS)
    answer: Answer | None = None


# Answer fields of environments registered beyond the built-in eight: env id -> its answer
# model (`ecomrlve.envs.registry.EnvSpec.answer_model`). `answer_model()` / `action_model()`
# are `Answer` / `Action` extended by these fields (subclasses, so an extended answer is still
# an `Answer`); with none registered they are `Answer` and `Action` themselves.
_ANSWER_EXTENSIONS: dict[str, type[BaseModel]] = {}
_MODELS: list[tuple[type[Answer], type[Action]]] = [(Answer, Action)]


def extend_answer(env_id: str, model: type[BaseModel]) -> None:
    """Add the fields of `model` (an environment's answer model) to the action's answer.
    Raises ValueError naming a field another environment's answer model already declares
    differently (a field of the shared `Answer` may be redeclared with the same type)."""
    taken = {name: (f.annotation, "Answer") for name, f in Answer.model_fields.items()}
    for other, m in _ANSWER_EXTENSIONS.items():
        if other != env_id:
            taken.update({name: (f.annotation, other) for name, f in m.model_fields.items()})
    for name, f in model.model_fields.items():
        if f.is_required():
            raise ValueError(f"answer field {name!r} of {env_id} must default to None")
        if name in taken and taken[name][0] != f.annotation:
            raise ValueError(f"answer field {name!r} of {env_id} clashes with {taken[name][1]}'s")
    _ANSWER_EXTENSIONS[env_id] = model
    _rebuild()


def retract_answer(env_id: str) -> None:
    """Remove the answer fields `extend_answer` added for `env_id` (no-op if none)."""
    if _ANSWER_EXTENSIONS.pop(env_id, None) is not None:
        _rebuild()


def _rebuild() -> None:
    fields = {name: (f.annotation, f) for m in _ANSWER_EXTENSIONS.values() for name, f in m.model_fields.items()
              if name not in Answer.model_fields}
    if not fields:
        _MODELS[0] = (Answer, Action)
        return
    answer = create_model("Answer", __base__=Answer, __module__=__name__, **fields)
    action = create_model("Action", __base__=Action, __module__=__name__, answer=(answer | None, None))
    _MODELS[0] = (answer, action)


def answer_model() -> type[Answer]:
    """The answer model of every registered environment (its JSON schema is the answer's)."""
    return _MODELS[0][0]


def action_model() -> type[Action]:
    """The action model whose `answer` is `answer_model()`; `parse_action` validates with it."""
    return _MODELS[0][1]


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line naming each failing field, e.g. `answer.foo: Extra inputs are not permitted`."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        where = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "action"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.S)  # a JSON string, to the end of the text if unclosed


def json_depth(text: str) -> int:
    """The deepest bracket nesting of JSON text, brackets inside strings ignored (for
    unbalanced text, the deepest point reached). Linear time, no recursion."""
    code = np.frombuffer(_STRING.sub("", text).encode("utf-8", "surrogatepass"), dtype=np.uint8)
    step = (code == ord("[")).astype(np.int32) + (code == ord("{")) - (code == ord("]")) - (code == ord("}"))
    return int(np.cumsum(step).max(initial=0))


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise InvalidAction(f"integer with {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > 400:
        raise InvalidAction(f"number literal of {len(text)} characters")
    x = float(text)
    if not math.isfinite(x):
        raise InvalidAction(f"number {text[:40]} is out of range")
    return x


def _parse_constant(name: str) -> float:
    raise InvalidAction(f"{name} is not a valid JSON number")


_DECODER = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)


def loads_bounded(text: str | bytes, max_bytes: int = MAX_ACTION_BYTES, leading: bool = False) -> Any:
    """`json.loads` for untrusted text: size, depth, integer digits and finiteness checked
    first, so no RecursionError, int-conversion ValueError or inf gets through. `leading`:
    decode the JSON value the text starts with and ignore what follows. Raises
    InvalidAction (malformed JSON included) with the reason."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidAction(f"malformed JSON: {exc}") from None
    if len(text) > max_bytes:
        raise InvalidAction(f"action too large: {len(text)} bytes > {max_bytes}")
    depth = json_depth(text)
    if depth > MAX_DEPTH:
        raise InvalidAction(f"JSON nested {depth} levels deep (at most {MAX_DEPTH})")
    try:
        if leading:
            return _DECODER.raw_decode(text)[0]
        return _DECODER.decode(text)
    except InvalidAction:  # from the number hooks
        raise
    except (ValueError, RecursionError) as exc:  # json.JSONDecodeError is a ValueError
        raise InvalidAction(f"malformed JSON: {exc}") from None


def check_shape(obj: Any) -> None:
    """Bound a Python object the way `loads_bounded` bounds text (iteratively: no recursion).
    Raises InvalidAction naming the path of the first offending value."""
    stack: list[tuple[Any, str, int]] = [(obj, "action", 0)]
    nodes = 0
    while stack:
        value, path, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise InvalidAction(f"action has more than {MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise InvalidAction(f"{path}: nested more than {MAX_DEPTH} levels deep")
        if value is None or isinstance(value, (str, bool)):
            continue
        if isinstance(value, int):
            if abs(value) >= _INT_LIMIT:
                raise InvalidAction(f"{path}: integer out of range (at most {MAX_INT_DIGITS} digits)")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidAction(f"{path}: number {value} is not finite")
        elif isinstance(value, dict):
            if len(value) > MAX_NODES:
                raise InvalidAction(f"{path}: object of {len(value)} keys (at most {MAX_NODES})")
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InvalidAction(f"{path}: keys must be strings, got {type(key).__name__}")
                stack.append((item, f"{path}.{key[:40]}", depth + 1))
        elif isinstance(value, list):
            if len(value) > MAX_NODES:
                raise InvalidAction(f"{path}: list of {len(value)} values (at most {MAX_NODES})")
            stack.extend((item, f"{path}.{i}", depth + 1) for i, item in enumerate(value))
        else:
            raise InvalidAction(f"{path}: {type(value).__name__} is not a JSON type")


def parse_action(action: Any) -> Action:
    """Parse a dict or JSON string into an `Action`; raise `InvalidAction` otherwise."""
    if isinstance(action, Action):
        return action
    if isinstance(action, (str, bytes)):
        action = loads_bounded(action)
    if not isinstance(action, dict):
        raise InvalidAction(f"action must be a JSON object, got {type(action).__name__}")
    check_shape(action)
    try:
        size = len(json.dumps(action, ensure_ascii=False))
    except (TypeError, ValueError) as exc:
        raise InvalidAction(f"action is not JSON-serialisable: {exc}") from None
    if size > MAX_ACTION_BYTES:
        raise InvalidAction(f"action too large: {size} bytes > {MAX_ACTION_BYTES}")
    try:
        parsed = action_model().model_validate(action)
    except ValidationError as exc:
        raise InvalidAction(describe_validation_error(exc)) from None
    if parsed.answer is None and not parsed.tool_calls and not (parsed.assistant_message or "").strip():
        raise InvalidAction("empty action: give assistant_message, tool_calls or answer")
    return parsed
