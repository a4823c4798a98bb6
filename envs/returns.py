"""E_RETURN: return the item the shopper means, or refuse when the store policy does not allow it.

Hidden goal. H(d) = 1 + d//2 orders are generated once at reset (`ecomrlve.envs.orders`) and shared
by the goal and the tools. One delivered (rarely: not yet delivered) line is the target.
The shopper names it directly (its title) or, with p_ref(d), indirectly ("the blue Acme
kettle I bought about a month ago"); the description always matches exactly that line. With
H >= 2 another order often holds a same-category distractor. With p_edge(d) =
0.7 sigmoid((d-4)/1.5) the target sits at the return-window edge: delivered `window` (or
`window - 1`) days ago, the last day(s) inside, or `window + 1` days ago, one day outside,
where `window = world.policy.return_window(line, tier)` (the per-category window of the
episode's generated store policy). Otherwise it is clearly inside (60%) or clearly outside
(expired well before, or not delivered yet). Eligibility is always decided by
`ecomrlve.envs.tools.return_eligibility`, the function the return tools enforce; the generator
checks it at reset and at a two-hour horizon, so a day boundary crossed mid-episode never
flips it (near midnight the inside edge is `window - 1`).

The shopper states a reason and a method (phrases that map to one value each of
`RETURN_REASONS` / `RETURN_METHODS`), each omitted with p_missing(d) and then answered via
`ask_user`; the item itself may be omitted too ("I'd like to return something I bought").

Replacement (design choice): with p_replace(d) = 0.5 sigmoid((d-4)/2) the shopper also
wants ONE replacement in the cart, described by E_PD-like constraints
(`ecomrlve.envs.constraints.constraints_for_target` on an in-stock same-category product, m =
max(2, m(d) - 2); the category is always said, other constraints may be omitted). The
replacement is done with `cart_add` (quantity 1), not `return_exchange`: the return itself
stays a refund with the stated reason and method, so every episode checks reason and
method the same way. The shopper wants it "either way", so a replacement request says
nothing about eligibility. `return_exchange` is therefore not in this environment's tools.

Verifier (from the FINAL WORLD STATE plus the answer): r_task = -1 + 2 * passed / checks,
where the checks are: answer.selected_order_id, answer.selected_line_id, answer.eligible
(== truth); if eligible, exactly the target line has a new refund return with the stated
reason and the stated method; if not eligible, no return for it (the tools refuse anyway);
with a replacement, the cart gained exactly one unit, of an in-stock product (and variant)
satisfying every constraint (a variant that differs on a constrained attribute must carry
the wanted value); without one, the cart is unchanged. Any new return of another line is a
collateral error: r_task = -1. Correct only when every check passes.

Shopper reactions (`_react`, and `ask_user` questions that name orders or items): it
accepts a refusal when the item really is ineligible (and pushes back otherwise), confirms
when the agent names the right item or order and asks, and says "no, I mean ..." when the
agent names a wrong one. It recognises only what a customer knows: its items by full title
and an order id its own reference contains; asked about any other id it says it does not
know order numbers and repeats the reference it already gave.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from fractions import Fraction

from .actions import Answer
from .base import ShopEnv
from .constraints import Constraint, constraints_for_target
from .difficulty import sigmoid
from .orders import (
    OrderShopper,
    OrderSpec,
    UNKNOWN_ID_REPLY,
    generate_orders,
    item_reference,
    known_ids,
    make_line,
    mentions,
    random_row,
    recognised,
    sibling_row,
)
from .reward import TaskScore
from .shopper import Slot, Utterance, brand_item, fill, join_phrases
from .tools import return_eligibility
from .world import MINUTES_PER_TURN, Order, OrderLine

# Eligibility is checked at reset and this many turns later (any episode is shorter).
HORIZON_TURNS = 64
MAX_ROW_TRIES = 200

REASON_PHRASES: dict[str, tuple[str, ...]] = {
    "damaged": ("it arrived damaged", "it came broken in the box", "it was damaged when it arrived"),
    "defective": ("it stopped working", "it is defective", "it doesn't work properly"),
    "wrong_item": ("you sent me the wrong item", "it is not the item I ordered", "I received the wrong thing"),
    "does_not_fit": ("it doesn't fit", "it doesn't fit me", "the size doesn't fit me"),
    "not_as_described": ("it is not as described", "it looks nothing like the description",
                         "it doesn't match the listing"),
    "no_longer_needed": ("I don't need it anymore", "I no longer need it", "I changed my mind and don't need it"),
}
METHOD_PHRASES: dict[str, tuple[str, ...]] = {
    "mail": ("I'll mail it back", "I'd like to send it back by mail", "I'll ship it back by mail"),
    "drop_off": ("I'll drop it off at a drop-off location", "I'd like to drop it off myself",
                 "I can drop it off at a store"),
    "pickup": ("please have a courier pick it up", "I'd like it picked up from my home",
               "please arrange a pickup from my home"),
}
FIT_DEPARTMENTS = ("clothing", "sports & outdoors", "shoes", "fashion")
ITEM_KEYWORDS = ("which item", "which product", "what item", "what product", "which one", "which order",
                 "what order", "order number", "order id", "what did you buy", "what did you order",
                 "which purchase", "what would you like to return", "what do you want to return")
REASON_KEYWORDS = ("why", "reason", "what's wrong", "what is wrong", "what happened", "issue", "problem",
                   "wrong with")
METHOD_KEYWORDS = ("how would you like", "how do you want", "method", "send it back", "ship it back", "mail",
                   "drop", "pick", "courier", "how will you")
REASON_HINT = "there's a reason I want to return it"
METHOD_HINT = "I have a way in mind to send it back"
REFUSAL_WORDS = ("not eligible", "ineligible", "can't be returned", "cannot be returned", "can not be returned",
                 "unable to return", "not returnable", "no longer returnable", "window has closed",
                 "window closed", "window ended", "window has ended", "window expired", "window has expired",
                 "outside the return window", "past the return window", "can't accept", "cannot accept",
                 "can't return", "cannot return", "not be returned")
OPENINGS = (
    "Hi, I'd like to return {item}.",
    "Hello! I need to return {item}.",
    "Hey, can I return {item}?",
)
UNNAMED_ITEM = "something I bought"


def p_replace(d: int) -> float:
    """Probability that the shopper also wants a replacement in the cart."""
    return 0.5 * sigmoid((d - 4) / 2)


@dataclass
class Replacement:
    row: int  # the generator's witness (in stock, satisfies every constraint)
    product_id: str
    constraints: list[Constraint]


@dataclass
class ReturnGoal:
    order_id: str
    line_id: str
    product_id: str
    eligible: bool
    case: str  # eligible | edge_in | edge_out | expired | not_delivered
    window: int
    delivered_days_ago: int | None
    reason: str
    method: str
    item_ref: str
    indirect: bool
    replacement: Replacement | None
    base_returns: int  # returns already in the world at reset (a journey shares its world)
    cart_before: dict = field(default_factory=dict)
    refusal_accepted: bool = False


class ReturnEnv(ShopEnv):
    env_id = "E_RETURN"
    uses_policy = True
    tools = (
        "order_list", "order_get", "return_check_eligibility", "return_initiate", "policy_search",
        "catalog_search", "catalog_get_product", "catalog_get_variants", "cart_add", "cart_remove",
        "cart_set_quantity", "cart_view", "ask_user", "datetime_now",
    )
    answer_fields = ("selected_order_id", "selected_line_id", "eligible")
    task_brief = (
        "The shopper wants to return an item from one of their orders. Find the order and the line, "
        "check eligibility under the store's return policy, and start the return with the shopper's "
        "reason and method only if it is eligible; if it is not, tell the shopper it cannot be returned. "
        "If the shopper asks for a replacement, add exactly one matching in-stock product to the cart. "
        "Answer with selected_order_id, selected_line_id and eligible (true or false)."
    )

    # ------------------------------------------------------------------ generation
    def _oracle_turns(self, omitted: bool, replacement: bool, eligible: bool) -> int:
        """Turns the oracle needs: [order_list, ask?, search? (when nothing is omitted)] ->
        [order_get, search? (after the ask)] -> [eligibility check, variants?] ->
        [return?, cart_add?] + answer."""
        b = self.axes.B_tool
        first = 1 + int(omitted) + int(replacement and not omitted)
        second = 1 + int(replacement and omitted)
        third = 1 + int(replacement)
        last = int(eligible) + int(replacement)
        return math.ceil(first / b) + math.ceil(second / b) + math.ceil(third / b) + max(1, math.ceil(last / b))

    def _plan_case(self, rng) -> str:
        if rng.random() < self.axes.p_edge:
            return "edge_in" if rng.random() < 0.5 else "edge_out"
        if rng.random() < 0.6:
            return "eligible"
        return "not_delivered" if rng.random() < 0.15 else "expired"

    def _delivered_days(self, rng, case: str, window: int, rollover: bool) -> int | None:
        if case == "edge_in":
            return window - 1 if rollover or rng.random() < 0.5 else window
        if case == "edge_out":
            return window + 1
        if case == "eligible":
            return int(rng.integers(0, window - 1))  # 0 .. window-2
        if case == "expired":
            return window + int(rng.integers(5, 61))
        return None

    def _stable_eligibility(self, order: Order, line: OrderLine) -> bool | None:
        """Eligibility now if it is the same at the horizon, else None."""
        clock = self.world.clock
        now = return_eligibility(self.world, order, line)["eligible"]
        saved = clock.turn
        clock.turn = saved + HORIZON_TURNS
        later = return_eligibility(self.world, order, line)["eligible"]
        clock.turn = saved
        return now if now == later else None

    def _place_target(self, rng, case: str, rollover: bool) -> tuple[int, OrderLine, OrderSpec, int]:
        """A target line and its order spec realising `case`, checked with the real
        `return_eligibility` on a probe order (whatever windows and rules the policy has)."""
        world, cat = self.world, self.catalog
        today = world.clock.today()
        want = case in ("eligible", "edge_in")
        for _ in range(MAX_ROW_TRIES):
            row = random_row(cat, rng)
            line = make_line(cat, rng, row, world)
            window = world.policy.return_window(line, world.membership_tier)
            if want and window < 2:
                continue
            if case in ("edge_in", "edge_out", "eligible") and not world.policy.is_returnable_category(line):
                continue
            days = self._delivered_days(rng, case, window, rollover)
            if case == "not_delivered":
                spec = OrderSpec(status=("shipped", "in_transit")[int(rng.integers(2))], lines=[line])
                probe = Order("probe", today, spec.status, [line])
            else:
                spec = OrderSpec(status="delivered", delivered_days_ago=days, lines=[line])
                delivered = today - dt.timedelta(days=days)
                probe = Order("probe", delivered, "delivered", [line], delivered_at=delivered)
            if self._stable_eligibility(probe, line) is want:
                return row, line, spec, window
        raise RuntimeError(f"E_RETURN generator: no catalog product realises a {case!r} return under this policy")

    def _generate(self) -> Utterance:
        rng = self.rand("goal")
        world, cat, axes = self.world, self.catalog, self.axes
        self.shopper = OrderShopper.adopt(self.shopper, self._reference_reply)
        clock = world.clock
        horizon = clock.now() + dt.timedelta(minutes=MINUTES_PER_TURN * HORIZON_TURNS)
        rollover = horizon.date() != clock.today()

        case = self._plan_case(rng)
        row, line, target_spec, window = self._place_target(rng, case, rollover)
        days = target_spec.delivered_days_ago
        specs = [target_spec]
        if axes.H >= 2 and rng.random() < 0.7:
            sib = sibling_row(cat, rng, row, other_brand=rng.random() < 0.5)
            if sib is not None:
                specs.append(OrderSpec(lines=[make_line(cat, rng, sib, world)]))
        orders = generate_orders(cat, clock, self.rand("orders"), max(axes.H, len(specs)), world=world,
                                 specs=specs, existing=world.orders)
        world.orders = list(world.orders) + orders
        order = target_spec.order
        eligible = case in ("eligible", "edge_in")
        if self._stable_eligibility(order, line) is not eligible:  # the probe said so; a bug otherwise
            raise RuntimeError(f"E_RETURN generator: planned {case} but the target's eligibility differs")

        # what the shopper says
        indirect = rng.random() < axes.p_ref
        item_ref = item_reference(world, order, line, rng, indirect)
        dept = line.category_l1.lower()
        sized = dept == "clothing" or (dept in FIT_DEPARTMENTS and "(size:" in line.title)
        reasons = [r for r in REASON_PHRASES if (r != "does_not_fit" or sized) and (r != "defective" or not sized)]
        reason = reasons[int(rng.integers(len(reasons)))]
        method = tuple(METHOD_PHRASES)[int(rng.integers(len(METHOD_PHRASES)))]
        reason_phrase = REASON_PHRASES[reason][int(rng.integers(3))]
        method_phrase = METHOD_PHRASES[method][int(rng.integers(3))]

        replacement = None
        if rng.random() < p_replace(self.difficulty):
            repl_row = sibling_row(cat, rng, row, in_stock=True)
            if repl_row is not None and world.in_stock(repl_row):
                cons = constraints_for_target(cat, repl_row, max(2, axes.m - 2), rng)
                replacement = Replacement(repl_row, cat.product_id(repl_row), cons)
        if replacement and self._oracle_turns(False, True, eligible) > axes.T_max:
            replacement = None

        self.goal = ReturnGoal(
            order_id=order.order_id, line_id=line.line_id, product_id=line.product_id, eligible=eligible,
            case=case, window=window, delivered_days_ago=days, reason=reason, method=method, item_ref=item_ref,
            indirect=indirect, replacement=replacement, base_returns=len(world.returns),
            cart_before=dict(world.cart_units()),
        )
        if reason in ("damaged", "defective"):
            line.condition = reason

        item_slot = Slot("item", item_ref, f"It's {item_ref}.", ITEM_KEYWORDS, UNNAMED_ITEM)
        reason_slot = Slot("reason", reason_phrase, f"The reason is that {reason_phrase}.", REASON_KEYWORDS,
                           REASON_HINT)
        method_slot = Slot("method", method_phrase, f"As for sending it back, {method_phrase}.", METHOD_KEYWORDS,
                           METHOD_HINT)
        optional = [item_slot, reason_slot, method_slot]
        fixed = []
        if replacement:
            slots = [c.slot() for c in replacement.constraints]
            fixed, optional = slots[:1], optional + slots[1:]
        self.shopper.plan_disclosure(optional, axes.p_missing, keep=0)
        self.shopper.plan_disclosure(fixed, 0.0, keep=len(fixed))
        if self.shopper.omitted and self._oracle_turns(True, bool(replacement), eligible) > axes.T_max:
            self.shopper.omitted.clear()
        self.plan_turns = self._oracle_turns(bool(self.shopper.omitted), bool(replacement), eligible)
        self.plan_caused = {int(axes.B_tool == 1)} if self.shopper.omitted else set()  # the question
        return self._opening()

    def _opening(self) -> Utterance:
        sh, g = self.shopper, self.goal
        item = g.item_ref if sh.revealed("item") else UNNAMED_ITEM
        parts = [fill(sh.choose(OPENINGS), item=item)]
        for name in ("reason", "method"):
            text = sh.spoken(name)  # an omitted reason or method is still mentioned as open
            parts.append(text[0].upper() + text[1:] + ".")
        if g.replacement:
            cons = g.replacement.constraints
            cat_phrase = cons[0].slot().phrase
            others = [sh.spoken(c.name) for c in cons[1:]]
            text = f"Either way, please put one replacement from {cat_phrase} in my cart"
            parts.append(text + (", " + join_phrases(others) if others else "") + ".")
        disclosed = tuple(n for n in sh.slots if sh.revealed(n))
        return sh.say(" ".join(parts), "opening", disclosed)

    # ------------------------------------------------------------------ shopper reactions
    def _reveal_item(self, turn: int) -> None:
        if self.shopper.reveal("item"):
            self.shopper.caused_turns.add(turn)

    def _reference_reply(self, text: str, turn: int, question: bool = True) -> Utterance | None:
        """Confirm / deny when `text` names what the shopper can recognise: an order id its
        reference gave it, its items by full title. Asked about ids it never had (order,
        line or product ids), it says it does not know order numbers and repeats the
        reference it already gave (nothing new; the turn stays the agent's)."""
        g = self.goal
        named_orders, named_lines, unknown = recognised(text, self.world.orders, known_ids(g.item_ref))
        if not named_orders and not named_lines:
            if not (unknown and question):
                return None
            self.shopper.annoyance += 1
            reply = UNKNOWN_ID_REPLY + (f" I mean {g.item_ref}." if self.shopper.revealed("item") else "")
            return self.shopper.say(reply, "unknown_id")
        line_orders = {o for o, _ in named_lines}
        things = list(named_lines) + [(o, None) for o in named_orders if o not in line_orders]
        target = [t for t in things if t == (g.order_id, g.line_id) or t == (g.order_id, None)]
        others = [t for t in things if t not in target]
        if target and not others:
            if not question:
                return None
            self._reveal_item(turn)
            return self.shopper.say("Yes, that's the one.", "confirm")
        if target:
            if not question:
                return None
            self._reveal_item(turn)
            return self.shopper.say(f"It's {g.item_ref}.", "clarify")
        self._reveal_item(turn)
        return self.shopper.say(f"No, that's not it. I mean {g.item_ref}.", "deny")

    def _react(self, message: str, turn: int, had_tools: bool) -> Utterance | None:
        lower = message.lower()
        if any(w in lower for w in REFUSAL_WORDS):
            if not self.goal.eligible:
                self.goal.refusal_accepted = True
                return self.shopper.say("Oh, I see. That's a pity, but thanks for checking.", "accept_refusal")
            self.shopper.annoyance += 1
            return self.shopper.say("Are you sure? I think it should still be returnable.", "push_back")
        review = self._review_cart()
        if review is not None:
            return review
        g = self.goal
        key = (g.order_id, g.line_id)
        done = any((r.order_id, r.line_id) == key for r in self.world.returns[g.base_returns:])
        if done and key in mentions(message, self.world.orders)[1]:
            return self.shopper.say("Great, thank you!", "thanks")
        return self._reference_reply(message, turn, question="?" in message)

    def _review_cart(self) -> Utterance | None:
        """The shopper checks what the agent put in its cart (as E_CART's shopper does) and
        names every wrong line in one message: more than one replacement, a product that
        misses a wanted feature (each missed feature said), anything when no replacement was
        asked for. None when the cart gained nothing wrong (or nothing yet)."""
        g, sh = self.goal, self.shopper
        added = [(k, q) for k, q in self._cart_changes().items() if q > 0]
        if not added:
            return None
        parts, said = [], []
        if g.replacement is None:
            names = [self._cart_name(pid) for (pid, _), _ in added]
            parts.append(f"I didn't ask for anything new in my cart, please take out {join_phrases(names)}.")
        else:
            if sum(q for _, q in added) > 1:
                parts.append("I only need one replacement.")
            for (pid, vid), _ in added:
                if self.replacement_ok(pid, vid):
                    continue
                missed = self._missed(pid, vid)
                if missed:
                    said += [c.name for c in missed]
                    wants = join_phrases([c.slot().phrase for c in missed])
                    parts.append(f"{self._cart_name(pid)[:1].upper()}{self._cart_name(pid)[1:]} won't work: "
                                 f"I need one {wants}.")
                else:
                    parts.append(f"{self._cart_name(pid)[:1].upper()}{self._cart_name(pid)[1:]} won't work for me.")
        if not parts:
            return None
        for name in said:
            sh.reveal(name)
        return sh.say(" ".join(parts), "correction", tuple(dict.fromkeys(said)))

    def _cart_name(self, product_id: str) -> str:
        row = self.world.row(product_id)
        return brand_item(self.catalog.value("brand", row) or "", self.catalog.value("category_l3", row) or "")

    def _missed(self, product_id: str, variant_id: str | None) -> list[Constraint]:
        """The replacement's constraints (product, variant) does not meet."""
        world = self.world
        row = world.row(product_id)
        variant = world.variant(product_id, variant_id) if variant_id else None
        out = []
        for c in self.goal.replacement.constraints:
            if c.kind == "attribute" and variant is not None and variant.attribute == c.attribute:
                if variant.value != c.value:
                    out.append(c)
            elif not c.holds(self.catalog, row):
                out.append(c)
        return out

    def _switch_goal(self, rng) -> Utterance | None:
        """(E_JOURNEY) The shopper changes the return method, if nothing was returned yet."""
        g = self.goal
        if len(self.world.returns) > g.base_returns:
            return None
        methods = [m for m in METHOD_PHRASES if m != g.method]
        g.method = methods[int(rng.integers(len(methods)))]
        phrase = METHOD_PHRASES[g.method][0]
        self.shopper.restate(Slot("method", phrase, f"As for sending it back, {phrase}.", METHOD_KEYWORDS))
        return self.shopper.say(f"Actually, I changed my mind about sending it back: {phrase}.", "switch")

    # ------------------------------------------------------------------ verifier
    def replacement_ok(self, product_id: str, variant_id: str | None) -> bool:
        """Whether (product, variant) is an in-stock product meeting every constraint."""
        rep, world = self.goal.replacement, self.world
        row = world.row(product_id)
        if rep is None or row is None or not world.variant_in_stock(product_id, variant_id):
            return False
        variant = world.variant(product_id, variant_id) if variant_id else None
        for c in rep.constraints:
            if c.kind == "attribute" and variant is not None and variant.attribute == c.attribute:
                if variant.value != c.value:
                    return False
            elif not c.holds(self.catalog, row):
                return False
        return True

    def _cart_changes(self) -> dict:
        before, now = self.goal.cart_before, self.world.cart_units()
        keys = list(before) + [k for k in now if k not in before]
        return {k: now.get(k, 0) - before.get(k, 0) for k in keys if now.get(k, 0) != before.get(k, 0)}

    def _score(self, answer: Answer | None) -> TaskScore:
        g, world = self.goal, self.world
        new = world.returns[g.base_returns:]
        key = (g.order_id, g.line_id)
        mine = [r for r in new if (r.order_id, r.line_id) == key]
        collateral = [f"{r.order_id}/{r.line_id}" for r in new if (r.order_id, r.line_id) != key]
        checks: dict[str, bool] = {
            "order": answer is not None and answer.selected_order_id == g.order_id,
            "line": answer is not None and answer.selected_line_id == g.line_id,
            "eligible": answer is not None and answer.eligible is not None and answer.eligible == g.eligible,
        }
        if g.eligible:
            rec = mine[0] if len(mine) == 1 else None
            checks["returned"] = rec is not None and rec.kind == "refund"
            checks["reason"] = rec is not None and rec.reason == g.reason
            checks["method"] = rec is not None and rec.method == g.method
        else:
            checks["not_returned"] = not mine
        changes = self._cart_changes()
        if g.replacement:
            ok = len(changes) == 1 and list(changes.values())[0] == 1
            checks["replacement"] = ok and self.replacement_ok(*list(changes)[0])
        else:
            checks["cart_unchanged"] = not changes
        passed = sum(checks.values())
        details = {"checks": checks, "collateral_returns": collateral, "eligible": g.eligible, "case": g.case}
        if collateral or not (checks["order"] and checks["line"]):
            # another item returned, or the request itself not identified: nothing was done
            return TaskScore(-1.0, False, details)
        r_task = float(Fraction(2 * passed, len(checks)) - 1)
        return TaskScore(r_task, passed == len(checks), details)
