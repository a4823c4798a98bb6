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


# ---------------------------------------------------------------- what the oracle tells the shopper
# A good support agent says what it did and why. Messages name products by title and id,
# orders by id, and state no price or stock level (every checkable claim must be true).

def product_name(env, product_id: str) -> str:
    """'Acme Steel Kettle KT-1234 (p0001234)'."""
    row = env.world.row(product_id)
    title = env.catalog.value("title", row) if row is not None else None
    return f"{title} ({product_id})" if title else product_id


def listing(env, product_ids: list[str]) -> str:
    """The products as a chat list, one per line, best first."""
    return "\n".join(f"{i}. {product_name(env, pid)}" for i, pid in enumerate(product_ids, 1))
