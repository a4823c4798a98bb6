"""E_CART: put exactly the right products, variants and quantities in the shopper's cart.

Hidden goal: `cart_items(d)` target products (distinct leaf categories), each with a
variant requirement (p_variant) and a quantity (> 1 with p_quantity). The shopper refers to
items the way people do ("the Anker usb-c charger I looked at"); the visit history holds
the targets, a same-category distractor of another brand for each, and, when a stock-out
is planned, the alternative the shopper will accept. With p_oos one target sells out at
the start of turn 1; once the agent tells the shopper, the shopper names the alternative
and the goal switches to it.

Verifier: F1 over (product, variant, quantity) units in exact integer arithmetic;
r_task = 2 F1 - 1; correct only with a perfect cart and `answer.done`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .actions import Answer
from .base import ShopEnv
from .constraints import ATTRIBUTE_HINTS, ATTRIBUTE_WORDS, attribute_phrase
from .reward import TaskScore, f1_score
from .shopper import (Slot, Utterance, brand_item, count_of, fill, is_plural, join_phrases, number_word, plural_phrase)

MAX_SAMPLE_TRIES = 200
STOCKOUT_WORDS = ("out of stock", "sold out", "unavailable", "not available", "no longer available")
NUMBER_WORDS = {2: "two", 3: "three", 4: "four"}
QUANTITY_KEYWORDS = ("how many", "quantity", "number of", "units", "few")
QUANTITY_HINT = "a few of"  # an omitted quantity (always > 1 when omittable): "a few of the Coleman tents"
CART_RIGHT = ("That looks right, thanks!", "Perfect, that's everything I wanted, thank you.")
CART_RIGHT_UNTHANKED = ("That looks right.", "Perfect, that's everything I wanted.")
CART_WRONG = ("Not quite.", "Hmm, a few things are off.", "That's not quite right.")
OPENINGS = (
    "Hi! Please add {items} to my cart.",
    "Hey, can you put {items} in my cart?",
    "I'd like to buy {items}. Could you add them to my cart?",
    "Hello. I need {items} in my cart, please.",
)


@dataclass
class CartItem:
    product_id: str
    row: int
    phrase: str  # how the shopper names it, e.g. "the Anker usb-c charger"
    quantity: int
    variant_id: str | None  # None: any variant (or the product has none)
    variant_attr: str | None = None
    variant_value: str | None = None


@dataclass
class StockOut:
    """A goal item that sells out the turn after a tool first shows it to the agent (so the
    agent always sees it in stock first, and a late start does not make the stock-out cheaper)."""

    index: int  # which goal item sells out
    row: int  # its catalog row
    alternative: CartItem
    announced: bool = False
    scheduled: bool = False  # its turn is set (`world.scheduled_stockouts`)


@dataclass
class CartGoal:
    items: list[CartItem]
    distractors: list[str]
    stockout: StockOut | None = None
    history: list[str] = field(default_factory=list)
    baseline: dict = field(default_factory=dict)  # cart units present before the task began


def _pronoun(phrase: str) -> str:
    return "them" if is_plural(phrase) else "it"


def _variant_phrase(attr: str, value: str) -> str:
    return attribute_phrase(attr, value)


class CartEnv(ShopEnv):
    env_id = "E_CART"
    tools = (
        "catalog_search", "catalog_get_product", "catalog_get_variants", "user_get_visit_history",
        "cart_add", "cart_remove", "cart_set_quantity", "cart_view", "ask_user",
    )
    answer_fields = ("done",)
    task_brief = (
        "Build the shopper's cart: exactly the products, variants and quantities they ask for. "
        "Answer {\"done\": true} when the cart is final."
    )

    # ------------------------------------------------------------------ generation
    def _sample_row(self, rng: np.random.Generator, used_leaves: set[str], min_stock: int) -> int:
        cat = self.catalog
        stock = cat.numeric("stock")
        for _ in range(MAX_SAMPLE_TRIES):
            row = int(rng.integers(len(cat)))
            if stock[row] >= min_stock and cat.value("category_l3", row) not in used_leaves:
                return row
        raise RuntimeError("catalog has too few in-stock products in distinct categories")

    def _sibling(self, rng: np.random.Generator, row: int, avoid_brands: set[str], avoid_rows: set[int]) -> int | None:
        """An in-stock product of the same leaf category with a brand not in `avoid_brands`."""
        cat = self.catalog
        rows = cat.category_rows(cat.value("category_l3", row))
        stock = cat.numeric("stock")
        for _ in range(64):
            r = int(rows[int(rng.integers(len(rows)))])
            if r not in avoid_rows and stock[r] > 0 and cat.value("brand", r) not in avoid_brands:
                return r
        return None

    def _item(self, rng: np.random.Generator, row: int, quantity: int, wanted_value: str | None = None) -> CartItem:
        cat = self.catalog
        pid = cat.product_id(row)
        phrase = brand_item(cat.value("brand", row), cat.value("category_l3", row))
        variants = self.world.variants_of(pid)
        item = CartItem(pid, row, phrase, quantity, None)
        if variants:
            match = [v for v in variants if v.value == wanted_value] if wanted_value else []
            if match or (wanted_value is None and rng.random() < self.axes.p_variant):
                v = match[0] if match else variants[int(rng.integers(len(variants)))]
                item.variant_id, item.variant_attr, item.variant_value = v.variant_id, v.attribute, v.value
        return item

    def _oracle_turns(self, n_items: int, any_omitted: bool, stockout: bool) -> int:
        b = self.axes.B_tool
        per = math.ceil(n_items / b)
        ask = 1 if any_omitted and b == 1 else 0
        return 1 + ask + per + (1 if stockout else 0) + per

    def _generate(self) -> Utterance:
        rng = self.rand("goal")
        cat = self.catalog
        items: list[CartItem] = []
        leaves: set[str] = set()
        for _ in range(self.axes.cart_items):
            quantity = int(rng.integers(2, 5)) if rng.random() < self.axes.p_quantity else 1
            row = self._sample_row(rng, leaves, quantity)
            leaves.add(cat.value("category_l3", row))
            items.append(self._item(rng, row, quantity))
        taken = {it.row for it in items}
        distractors = []
        for it in items:
            d = self._sibling(rng, it.row, {cat.value("brand", it.row)}, taken)
            if d is not None:
                taken.add(d)
                distractors.append(cat.product_id(d))
        goal = CartGoal(items, distractors, baseline=self.world.cart_units())

        slots_fixed, slots_detail = [], []
        for i, it in enumerate(items):
            name = count_of(it.quantity, it.phrase)
            reply = f"I want {name}." if it.quantity > 1 else f"Just one of {plural_phrase(it.phrase)}."
            qty_slot = Slot(f"quantity:{i}", NUMBER_WORDS.get(it.quantity, it.phrase) + (" of" if it.quantity > 1 else ""),
                            reply, QUANTITY_KEYWORDS, QUANTITY_HINT)
            slots_fixed.append(Slot(f"item:{i}", it.phrase, f"I need {it.phrase}.", ()))
            (slots_detail if it.quantity > 1 else slots_fixed).append(qty_slot)
            if it.variant_id:
                keywords = ATTRIBUTE_WORDS.get(it.variant_attr, ("", ()))[1] + ("variant", "version", "option", "which one")
                vp = _variant_phrase(it.variant_attr, it.variant_value)
                hint = ATTRIBUTE_HINTS.get(it.variant_attr, "in a particular version")
                slots_detail.append(Slot(f"variant:{i}", vp, f"For {it.phrase}, I want {_pronoun(it.phrase)} {vp}.",
                                         keywords, hint))
        self.shopper.plan_disclosure(slots_fixed, 0.0, keep=len(slots_fixed))
        self.shopper.plan_disclosure(slots_detail, self.axes.p_missing, keep=0)

        if self.axes.p_oos > 0 and rng.random() < self.axes.p_oos:
            victim = int(rng.integers(len(items)))
            it = items[victim]
            brands = {cat.value("brand", r) for r in taken if cat.value("category_l3", r) == cat.value("category_l3", it.row)}
            alt_row = self._sibling(rng, it.row, brands, taken)
            fits = self._oracle_turns(len(items), bool(self.shopper.omitted), True) <= self.axes.T_max
            if alt_row is not None and fits:
                taken.add(alt_row)
                alt = self._item(rng, alt_row, it.quantity, wanted_value=it.variant_value if it.variant_id else None)
                goal.stockout = StockOut(victim, it.row, alt)  # scheduled once the agent has seen it (`_on_tool`)

        history = [it.product_id for it in items] + distractors
        if goal.stockout:
            history.append(goal.stockout.alternative.product_id)
        order = rng.permutation(len(history))
        start = self.world.clock.now()
        import datetime as dt

        self.world.visit_history = [
            (history[j], (start - dt.timedelta(hours=int(3 * (len(history) - k)))).isoformat(timespec="minutes"))
            for k, j in enumerate(order)
        ]
        goal.history = [history[j] for j in order]
        self.goal = goal
        self.plan_turns = self._oracle_turns(len(items), bool(self.shopper.omitted), goal.stockout is not None)
        # the plan's shopper-caused turns: the question (with the history read, or after it)
        # and telling the shopper of the stock-out (turn 1: the history read on turn 0 shows it)
        self.plan_caused = ({int(self.axes.B_tool == 1)} if self.shopper.omitted else set()) | (
            {1} if goal.stockout else set())
        self._cart_shown = -1  # the turn of the last cart_view
        self._confirmed: dict = {}  # the cart the shopper last confirmed (it volunteers that once)
        return self._opening()

    def _opening(self) -> Utterance:
        parts = []
        for i, it in enumerate(self.goal.items):
            q = f"quantity:{i}"
            text = it.phrase
            if it.quantity > 1:  # an omitted quantity still reads as more than one
                text = f"{self.shopper.spoken(q)} {plural_phrase(it.phrase)}"
            v = f"variant:{i}"
            if it.variant_id:  # an omitted variant still reads as a choice to make
                text += " " + self.shopper.spoken(v)
            parts.append(text)
        template = self.shopper.choose(OPENINGS)
        disclosed = tuple(n for n in self.shopper.slots if self.shopper.revealed(n))
        return self.shopper.say(fill(template, items=join_phrases(parts)), "opening", disclosed)

    # ------------------------------------------------------------------ shopper reactions
    def _react(self, message: str, turn: int, had_tools: bool) -> Utterance | None:
        lower = message.lower()
        so = self.goal.stockout
        if so and not so.announced and any(w in lower for w in STOCKOUT_WORDS):
            victim = self.goal.items[so.index]
            if not self.world.in_stock(victim.row):
                so.announced = True
                so.alternative.quantity = victim.quantity  # as many as it wants now (a journey may have changed it)
                self.goal.items[so.index] = so.alternative
                alt = so.alternative
                text = f"Oh no. Then please get {alt.phrase} I also looked at instead"
                if alt.variant_id:
                    text += f", {_variant_phrase(alt.variant_attr, alt.variant_value)}"
                self.shopper.caused_turns.add(turn)  # the world caused this turn, not the agent
                return self.shopper.say(text + ".", "alternative")
        if self._task_units():
            return self._review_cart()
        return None

    def _react_to_tools(self, turn: int) -> Utterance | None:
        """A cart presented with `cart_view` (and no message) gets the same review."""
        if self._cart_shown == self.world.clock.turn and self._task_units():
            return self._review_cart(thanks=False)
        return None

    def _on_tool(self, name, args, result) -> None:
        if name == "cart_view" and "error" not in result:
            self._cart_shown = self.world.clock.turn
        so = self.goal.stockout
        if so and not so.scheduled and self.catalog.product_id(so.row) in self.seen_ids:
            so.scheduled = True
            self.world.scheduled_stockouts.append((self.world.clock.turn + 1, so.row))

    def _task_units(self) -> dict[tuple[str, str | None], int]:
        """(product, variant) -> units added since this task began (a journey shares the cart)."""
        cart = {k: q - self.goal.baseline.get(k, 0) for k, q in self.world.cart_units().items()}
        return {k: q for k, q in cart.items() if q > 0}

    def _review_cart(self, thanks: bool = True) -> Utterance:
        """Check the cart like a shopper and name EVERY wrong line in one message: a wrong
        variant, a wrong quantity, a missing item, an item it never asked for; else confirm.
        Whatever a correction names about the shopper's own items (a count, a variant) is
        said out loud from then on."""
        units, goal = self._task_units(), self.goal
        parts: list[str] = []
        said: list[str] = []
        wanted = {it.product_id for it in goal.items}
        for i, it in enumerate(goal.items):
            lines = {vid: q for (pid, vid), q in units.items() if pid == it.product_id}
            if it.variant_id:
                right = lines.get(it.variant_id, 0)
                wrong = [vid for vid in lines if vid != it.variant_id]
            else:
                right, wrong = sum(lines.values()), []
            want = _variant_phrase(it.variant_attr, it.variant_value) if it.variant_id else ""
            if wrong:
                got = self.world.variant(it.product_id, wrong[0]) if wrong[0] else None
                got_text = f"the {got.value} version" if got else "a different version"
                parts.append(f"You added {got_text} of {it.phrase}; I need {_pronoun(it.phrase)} {want}.")
                said.append(f"variant:{i}")
                got_units = sum(q for vid, q in lines.items() if vid != it.variant_id)
                if right == 0:
                    if got_units != it.quantity:
                        need = "just one" if it.quantity == 1 else number_word(it.quantity)
                        parts.append(f"I need {need} of {plural_phrase(it.phrase)}, not {number_word(got_units)}.")
                        said.append(f"quantity:{i}")
                    continue
            if right == 0:
                name = count_of(it.quantity, it.phrase)
                parts.append(f"I still need {name}{' ' + want if want else ''}.")
                said += [f"quantity:{i}"] + ([f"variant:{i}"] if want else [])
            elif right != it.quantity:
                need = "just one" if it.quantity == 1 else number_word(it.quantity)
                parts.append(f"I need {need} of {plural_phrase(it.phrase)}, not {number_word(right)}.")
                said.append(f"quantity:{i}")
        for pid in dict.fromkeys(pid for pid, _ in units):
            if pid not in wanted:
                row = self.world.row(pid)
                name = brand_item(self.catalog.value("brand", row), self.catalog.value("category_l3", row) or "")
                parts.append(f"I didn't ask for {name}, please take {_pronoun(name)} out.")
        if not parts:
            if units != self._confirmed:  # a confirmation it volunteers: the agent's next turn is the shopper's
                self._confirmed = dict(units)
                self.shopper.caused_turns.add(self.world.clock.turn + 1)
            return self.shopper.say(self.shopper.choose(CART_RIGHT if thanks else CART_RIGHT_UNTHANKED), "confirm")
        said = [n for n in dict.fromkeys(said) if n in self.shopper.slots]
        for n in said:
            self.shopper.reveal(n)
        return self.shopper.say(" ".join([self.shopper.choose(CART_WRONG)] + parts), "correction", tuple(said))

    def _switch_goal(self, rng: np.random.Generator) -> Utterance | None:
        """The shopper changes its mind mid-task (journeys): one more unit of one item."""
        i = int(rng.integers(len(self.goal.items)))
        it = self.goal.items[i]
        if it.quantity >= max(NUMBER_WORDS):
            return None
        it.quantity += 1
        self.shopper.reveal(f"quantity:{i}")
        text = f"Actually, I changed my mind: make that {count_of(it.quantity, it.phrase)}."
        return self.shopper.say(text, "switch", (f"quantity:{i}",))

    # ------------------------------------------------------------------ verifier
    def _cart_f1(self):
        """F1 over the units added since this task began (a journey may share the cart)."""
        cart = {k: q - self.goal.baseline.get(k, 0) for k, q in self.world.cart_units().items()}
        cart = {k: q for k, q in cart.items() if q > 0}
        tp = 0
        for it in self.goal.items:
            have = sum(q for (pid, vid), q in cart.items() if pid == it.product_id and (it.variant_id is None or vid == it.variant_id))
            tp += min(have, it.quantity)
        predicted = sum(cart.values())
        gold = sum(it.quantity for it in self.goal.items)
        return f1_score(tp, predicted, gold)

    def _score(self, answer: Answer | None) -> TaskScore:
        f1 = self._cart_f1()
        done = bool(answer is not None and answer.done)
        return TaskScore(float(2 * f1 - 1), f1 == 1 and done, {"cart_f1": float(f1), "done": done})
