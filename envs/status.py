"""E_STATUS: find the order the shopper means and report its status (and ETA when asked).

Hidden goal. H(d) = 1 + d//2 orders (`ecomrlve.envs.orders`), one of them the target, its status
drawn over all of `ORDER_STATUSES`. The shopper names it by id ("order W1234567") or, with
p_ref(d) = sigmoid((d-2)/1.5), indirectly: by an item in it ("my order with the blue Acme
kettle") or by the day it was placed ("my order from Tuesday"); a reference always matches
exactly one order, and with H >= 2 another order often holds a same-category item of
another brand, so "the kettle" alone would not do. The reference is omitted with
p_missing(d) ("can you check on my order?") and answered via `ask_user`. When the target
is still open (placed / shipped / in transit) the shopper asks when it will arrive with
probability 0.6.

What the shopper knows: what it bought, roughly when, what the item looks like, and an
order id only when its reference gives it one. It confirms or denies an order id it knows
and its items named by full title; asked "is it order W...?" about an id it was never
given, it says it does not know order numbers and repeats the reference it already gave
(so probing ids finds nothing, and those turns count as the agent's).

Answer: selected_order_id, order_status (one of `ORDER_STATUSES`; case, surrounding blanks
and spaces-for-underscores are normalised), and eta (YYYY-MM-DD) when the shopper asked.
r_task = -1 with the wrong order, else -1 + 2 * passed / checks over (order, status[, eta]);
correct only when all pass.

Claims: besides the base check (a status word next to one order id), a sentence naming one
order id with a date (ISO or "March 3") and an arrival word is an ETA claim, checked against
the order's eta (or its delivery date once delivered) and counted in r_hall.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from fractions import Fraction

from .actions import Answer
from .base import _SENTENCE, ShopEnv
from .orders import (
    MONTHS,
    OPEN_STATUSES,
    OrderShopper,
    OrderSpec,
    UNKNOWN_ID_REPLY,
    generate_orders,
    known_ids,
    make_line,
    order_reference,
    random_row,
    recognised,
    sibling_row,
)
from .reward import TaskScore
from .rng import WeightedIndex
from .shopper import Slot, Utterance, fill
from .world import ORDER_STATUSES

TARGET_STATUS_WEIGHTS = (0.15, 0.20, 0.20, 0.20, 0.12, 0.13)  # over ORDER_STATUSES
_TARGET_STATUS_INDEX = WeightedIndex(TARGET_STATUS_WEIGHTS)
P_ASK_ETA = 0.6
ORDER_KEYWORDS = ("which order", "what order", "order number", "order id", "which one", "which item",
                  "what item", "what did you order", "what did you buy", "which purchase", "when did you",
                  "what was in")
OPENINGS = (
    "Hi, what's the status of {ref}?",
    "Hello, can you check on {ref} for me?",
    "Hey, where is {ref}?",
)
ETA_QUESTIONS = (" When will it arrive?", " And when should it arrive?", " When can I expect it?")
UNNAMED_ORDER = "my order"
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_MONTH_DATE = re.compile(r"\b(" + "|".join(MONTHS) + r")\s+(\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(\d{4}))?\b",
                         re.IGNORECASE)
ARRIVAL_WORDS = ("arriv", "eta", "expected", "deliver", "get there", "reach you", "estimated")


def normalise_status(value: str | None) -> str | None:
    if value is None:
        return None
    return value.strip().lower().replace("-", "_").replace(" ", "_")


@dataclass
class StatusGoal:
    order_id: str
    status: str
    eta_asked: bool
    order_ref: str
    indirect: bool


class StatusEnv(ShopEnv):
    env_id = "E_STATUS"
    tools = ("order_list", "order_get", "ask_user", "datetime_now")
    answer_fields = ("selected_order_id", "order_status", "eta")
    task_brief = (
        "The shopper asks about one of their orders. Find the order they mean and tell them its status "
        f"(one of: {', '.join(ORDER_STATUSES)}) and, if they ask, when it will arrive. Answer with "
        "selected_order_id, order_status and, when asked, eta (YYYY-MM-DD)."
    )

    # ------------------------------------------------------------------ generation
    def _oracle_turns(self, omitted: bool) -> int:
        """[order_list, ask?] -> order_get -> answer."""
        return math.ceil((1 + int(omitted)) / self.axes.B_tool) + 2

    def _generate(self) -> Utterance:
        rng = self.rand("goal")
        world, cat, axes = self.world, self.catalog, self.axes
        self.shopper = OrderShopper.adopt(self.shopper, self._reference_reply)
        status = ORDER_STATUSES[_TARGET_STATUS_INDEX(rng)]
        row = random_row(cat, rng)
        lead = make_line(cat, rng, row, world)
        target_spec = OrderSpec(status=status, lines=[lead])
        specs = [target_spec]
        if axes.H >= 2 and rng.random() < 0.7:
            sib = sibling_row(cat, rng, row, other_brand=True)
            if sib is not None:
                specs.append(OrderSpec(lines=[make_line(cat, rng, sib, world)]))
        orders = generate_orders(cat, world.clock, self.rand("orders"), max(axes.H, len(specs)), world=world,
                                 specs=specs, existing=world.orders)
        world.orders = list(world.orders) + orders
        order = target_spec.order
        indirect = rng.random() < axes.p_ref
        ref = order_reference(world, order, rng, indirect)
        eta_asked = status in OPEN_STATUSES and rng.random() < P_ASK_ETA
        self.goal = StatusGoal(order.order_id, status, eta_asked, ref, indirect)

        self.shopper.plan_disclosure([Slot("order", ref, f"It's {ref}.", ORDER_KEYWORDS, UNNAMED_ORDER)], axes.p_missing, keep=0)
        if self.shopper.omitted and self._oracle_turns(True) > axes.T_max:
            self.shopper.omitted.clear()
        self.plan_turns = self._oracle_turns(bool(self.shopper.omitted))
        self.plan_caused = {int(axes.B_tool == 1)} if self.shopper.omitted else set()  # the question
        sh = self.shopper
        text = fill(sh.choose(OPENINGS), ref=ref if sh.revealed("order") else UNNAMED_ORDER)
        if eta_asked:
            text += sh.choose(ETA_QUESTIONS)
        return sh.say(text, "opening", tuple(n for n in sh.slots if sh.revealed(n)))

    # ------------------------------------------------------------------ shopper reactions
    def _reference_reply(self, text: str, turn: int, question: bool = True) -> Utterance | None:
        """Confirm / deny what the shopper can recognise: the order id its reference gave it
        and its items by title. Asked about ids it never had, it says it does not know order
        numbers and repeats the reference it already gave (nothing new, and the turn stays
        the agent's)."""
        g = self.goal
        named_orders, named_lines, unknown = recognised(text, self.world.orders, known_ids(g.order_ref))
        named = list(dict.fromkeys(named_orders + [o for o, _ in named_lines]))
        if not named:
            if not (unknown and question):
                return None
            self.shopper.annoyance += 1
            reply = UNKNOWN_ID_REPLY + (f" I mean {g.order_ref}." if self.shopper.revealed("order") else "")
            return self.shopper.say(reply, "unknown_id")
        reveal = "order" in self.shopper.omitted
        if g.order_id in named:
            if not question:
                return None
            reply = "Yes, that's the one." if len(named) == 1 else f"It's {g.order_ref}."
        else:
            reply = f"No, that's not the one. I mean {g.order_ref}."
        if reveal:
            self.shopper.omitted.remove("order")
            self.shopper.caused_turns.add(turn)
        return self.shopper.say(reply, "confirm" if g.order_id in named else "deny")

    def _react(self, message: str, turn: int, had_tools: bool) -> Utterance | None:
        return self._reference_reply(message, turn, question="?" in message)

    def _switch_goal(self, rng) -> Utterance | None:
        """(E_JOURNEY) The shopper also wants the ETA, when the order is still open."""
        g = self.goal
        if g.eta_asked or g.status not in OPEN_STATUSES:
            return None
        g.eta_asked = True
        return self.shopper.say("Oh, and when will it arrive?", "switch")

    # ------------------------------------------------------------------ claims
    def _check_claims(self, text: str) -> None:
        super()._check_claims(text)
        world = self.world
        for sentence in _SENTENCE.findall(text):
            named = [o.order_id for o in world.orders if o.order_id in sentence]
            lower = sentence.lower()
            if len(named) != 1 or not any(w in lower for w in ARRIVAL_WORDS):
                continue
            if "placed" in lower or "ordered" in lower:
                continue
            order = world.order(named[0])
            true = order.eta or order.delivered_at
            dates = _dates(sentence, true.year if true else world.clock.today().year)
            if len(dates) == 1:
                self._claim(true is not None and dates[0] == true)

    # ------------------------------------------------------------------ verifier
    def _score(self, answer: Answer | None) -> TaskScore:
        g = self.goal
        order = self.world.order(g.order_id)
        checks = {
            "order": answer is not None and answer.selected_order_id == g.order_id,
            "status": answer is not None and normalise_status(answer.order_status) == order.status,
        }
        if g.eta_asked:
            want = order.eta.isoformat() if order.eta else None
            checks["eta"] = answer is not None and answer.eta is not None and answer.eta.strip() == want
        passed = sum(checks.values())
        details = {"checks": checks, "status": order.status, "eta_asked": g.eta_asked}
        if not checks["order"]:
            return TaskScore(-1.0, False, details)
        return TaskScore(float(Fraction(2 * passed, len(checks)) - 1), passed == len(checks), details)


def _dates(sentence: str, default_year: int) -> list[dt.date]:
    out = []
    for y, m, d in _ISO_DATE.findall(sentence):
        try:
            out.append(dt.date(int(y), int(m), int(d)))
        except ValueError:
            continue
    for month, day, year in _MONTH_DATE.findall(sentence):
        idx = [m.lower() for m in MONTHS].index(month.lower()) + 1
        try:
            out.append(dt.date(int(year) if year else default_year, idx, int(day)))
        except ValueError:
            continue
    return out
