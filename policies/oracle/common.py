"""Helpers shared by the oracle planners."""

from __future__ import annotations

GENERIC_QUESTION = "Could you tell me any other details or preferences I should know about?"


def call(name: str, **args) -> dict:
    return {"name": name, "args": {k: v for k, v in args.items() if v is not None}}


class Planner:
    """Base: holds the env; subclasses implement `next_action()` from live state."""

    def __init__(self, env):
        self.env = env
        self.turns_planned = 0

    @property
    def budget(self) -> int:
        return self.env.axes.B_tool

    def seen(self, id_: str) -> bool:
        return id_ in self.env.seen_ids
