"""The agent's action: one JSON object per turn (DESIGN.md §4), parsed strictly.

`parse_action` turns a dict or a JSON string into an `Action` or raises `InvalidAction`
whose message names the problem (the field path for schema errors). Tool arguments are
validated later against each tool's own model (`envs.tools`).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_ACTION_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 8_000
MAX_TOOL_CALLS = 16


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
    """Every field any verifier reads. Unknown fields are rejected, never dropped."""

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


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line naming each failing field, e.g. `answer.foo: Extra inputs are not permitted`."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        where = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "action"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def parse_action(action: Any) -> Action:
    """Parse a dict or JSON string into an `Action`; raise `InvalidAction` otherwise."""
    if isinstance(action, Action):
        return action
    if isinstance(action, (str, bytes)):
        if len(action) > MAX_ACTION_BYTES:
            raise InvalidAction(f"action too large: {len(action)} bytes > {MAX_ACTION_BYTES}")
        try:
            action = json.loads(action)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidAction(f"malformed JSON: {exc}") from None
    if not isinstance(action, dict):
        raise InvalidAction(f"action must be a JSON object, got {type(action).__name__}")
    try:
        size = len(json.dumps(action, ensure_ascii=False, default=str))
    except (TypeError, ValueError) as exc:
        raise InvalidAction(f"action is not JSON-serialisable: {exc}") from None
    if size > MAX_ACTION_BYTES:
        raise InvalidAction(f"action too large: {size} bytes > {MAX_ACTION_BYTES}")
    try:
        parsed = Action.model_validate(action)
    except ValidationError as exc:
        raise InvalidAction(describe_validation_error(exc)) from None
    if parsed.answer is None and not parsed.tool_calls and not (parsed.assistant_message or "").strip():
        raise InvalidAction("empty action: give assistant_message, tool_calls or answer")
    return parsed
