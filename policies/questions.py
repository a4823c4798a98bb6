"""Questions about what a shopper has left open, read from the hints its request carries.

A shopper who omits a detail says so ("in a particular color", "a few of the tents", "within
a budget I have in mind"); `OPEN_CHOICES` maps each such hint to the words that ask for it.
The heuristic asks about the hints it reads in the conversation (`open_choice_question`);
the oracle, which knows the omitted slots, asks about theirs the same way."""

from __future__ import annotations

import re

from ecomrlve.envs.bundle import BUDGET_HINT
from ecomrlve.envs.cart import QUANTITY_HINT
from ecomrlve.envs.constraints import ATTRIBUTE_HINTS, KIND_HINTS
from ecomrlve.envs.policy import FACT_HINTS
from ecomrlve.envs.returns import METHOD_HINT, REASON_HINT, UNNAMED_ITEM
from ecomrlve.envs.status import UNNAMED_ORDER


def _your(hint: str) -> str:
    return re.sub(r"\bI've\b", "you've", re.sub(r"\bI\b", "you", re.sub(r"\bmy\b", "your", hint)))


# what the shopper says while a detail is still open -> the question words that ask for it
OPEN_CHOICES: dict[str, str] = {
    **{hint: "which " + hint.split("particular ")[-1] for hint in ATTRIBUTE_HINTS.values()},
    KIND_HINTS["price_max"]: "your budget", KIND_HINTS["brand"]: "which brand",
    KIND_HINTS["rating_min"]: "the minimum rating", KIND_HINTS["ship_days_max"]: "how fast it must ship",
    QUANTITY_HINT: "how many units", BUDGET_HINT: "your budget", REASON_HINT: "the reason",
    METHOD_HINT: "how you'd send it back", UNNAMED_ITEM: "which item", UNNAMED_ORDER: "which order",
    **{hint: _your(hint) for hint in FACT_HINTS.values()},
}


def ask_for(asks: list[str]) -> str:
    """'Could you tell me which color, your budget and how many units?'"""
    return "Could you tell me " + ", ".join(asks[:-1]) + (" and " if len(asks) > 1 else "") + asks[-1] + "?"


def open_choice_question(text: str) -> str | None:
    """A question naming every detail the shopper's text (lower case) says is still open,
    or None when it says none is."""
    asks = list(dict.fromkeys(q for hint, q in OPEN_CHOICES.items() if hint.lower() in text))
    return ask_for(asks) if asks else None
