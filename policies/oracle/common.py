"""Helpers shared by the oracle planners."""

from __future__ import annotations

from envs.shopper import join_phrases


def slot_question(shopper) -> str:
    """One `ask_user` question naming every slot the shopper has left open (by each slot's
    first question word), so that one question reveals them all: the privileged oracle knows
    which are open; an agent reads the shopper's hints ("in a particular color")."""
    words = list(dict.fromkeys(shopper.slots[n].keywords[0] for n in shopper.omitted if shopper.slots[n].keywords))
    return f"So I get this right, could you tell me {join_phrases(words)}?"


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
