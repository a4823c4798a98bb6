"""Helpers shared by the oracle planners."""

from __future__ import annotations

from ecomrlve.envs.catalog import ATTRIBUTE_COLUMNS
from ecomrlve.envs.shopper import names_slot

from ..questions import OPEN_CHOICES, ask_for


def narrowing(env, rows: list[int], filters: dict) -> dict:
    """Privileged search filters that keep `rows` (the best k + 1 of an evaluation pool: one
    spare for a stock-out) and drop much of what ranks below them: their price range, lowest
    rating, slowest shipping and the attribute values they all share. A pool larger than the
    retrieval depth then still returns the ideal answer."""
    if not rows:
        return {}
    cat = env.catalog
    prices = cat.numeric("price")[rows]
    rating = float(cat.numeric("rating")[rows].min())
    ship = int(cat.numeric("ship_days")[rows].max())
    out = {
        "price_min": max(float(prices.min()), filters.get("price_min", 0.0)),
        "price_max": min(float(prices.max()), filters.get("price_max", float(prices.max()))),
        "rating_min": max(rating, filters.get("rating_min", rating)),
        "ship_days_max": min(ship, filters.get("ship_days_max", ship)),
    }
    shared = dict(filters.get("attributes") or {})
    for column in ATTRIBUTE_COLUMNS:
        values = {cat.value(column, r) for r in rows}
        if len(values) == 1 and (value := values.pop()):
            shared.setdefault(column, value)
    if shared:
        out["attributes"] = shared
    return out


def slot_question(shopper) -> str:
    """One `ask_user` question naming every slot the shopper has left open, in the words an
    agent reading the shopper's hints would use (`ecomrlve.policies.questions`), so that one question
    reveals them all: the privileged oracle knows which are open."""
    asks = []
    for name in shopper.omitted:
        slot = shopper.slots[name]
        hint = slot.hint.lower()
        ask = next((q for h, q in OPEN_CHOICES.items() if h.lower() in hint), None) if hint else None
        if ask is None or not names_slot(ask.lower(), slot):
            ask = slot.keywords[0]
        asks.append(ask)
    return ask_for(list(dict.fromkeys(asks)))


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



class SearchAnswerPlanner(Planner):
    """E_PD and E_SUB's ending: search once per goal version, search again once after the
    search scheduled a stock-out (if two turns are left), then recommend. Subclasses give
    `_search()` (the call), `_answer_ids()` and `_message(ids)`."""

    def __init__(self, env):
        super().__init__(env)
        self.searched_version: int | None = None
        self.rechecked = False

    def search_or_answer(self) -> dict:
        env, goal = self.env, self.env.goal
        if self.searched_version != goal.version:
            self.searched_version = goal.version
            return {"tool_calls": [self._search()]}
        turns_left = env.axes.T_max - env.turn
        if goal.oos_row is not None and not self.rechecked and turns_left >= 2:
            self.rechecked = True  # the search scheduled a stock-out: look again next turn
            return {"tool_calls": [self._search()]}
        ids = self._answer_ids()
        return {"assistant_message": self._message(ids), "answer": {"recommended_product_ids": ids}}

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
