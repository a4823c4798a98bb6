"""Oracle for E_CART: history (+ ask) -> variants (+ announce a stock-out) -> adds + done."""

from __future__ import annotations

from ecomrlve.envs.constraints import attribute_phrase
from ecomrlve.envs.shopper import count_of, is_plural, join_phrases

from .common import Planner, call, slot_question


class CartPlanner(Planner):
    def __init__(self, env):
        super().__init__(env)
        self.history_read = False
        self.asked = False
        self.variants_read: set[str] = set()

    def _pending_stockout(self) -> bool:
        so = self.env.goal.stockout
        return bool(so and not so.announced)

    def next_action(self) -> dict:
        env, goal, world = self.env, self.env.goal, self.env.world
        reads = []
        if not self.history_read:
            reads.append(call("user_get_visit_history"))
            self.history_read = True
        if env.shopper.omitted and not self.asked:
            reads.append(call("ask_user", question=slot_question(env.shopper)))
            self.asked = True
        for it in goal.items:
            if it.product_id not in self.variants_read and self.seen(it.product_id) and world.variants_of(it.product_id):
                reads.append(call("catalog_get_variants", product_id=it.product_id))
                self.variants_read.add(it.product_id)
        message = None
        so = goal.stockout
        if self._pending_stockout() and env.turn >= 1 and self.history_read:
            victim = goal.items[so.index]
            message = f"Sorry, {victim.phrase} {'are' if is_plural(victim.phrase) else 'is'} out of stock now."
        if reads:
            taken, rest = reads[: self.budget], reads[self.budget :]
            for c in rest:  # not executed this turn: plan them again
                if c["name"] == "catalog_get_variants":
                    self.variants_read.discard(c["args"]["product_id"])
                elif c["name"] == "ask_user":
                    self.asked = False
            return {"assistant_message": message, "tool_calls": taken} if message else {"tool_calls": taken}
        if message:
            return {"assistant_message": message}
        adds = []
        units = world.cart_units()
        for it in goal.items:
            variant = it.variant_id
            if variant is None and world.variants_of(it.product_id):
                variant = world.variants_of(it.product_id)[0].variant_id
            have = units.get((it.product_id, variant), 0) - goal.baseline.get((it.product_id, variant), 0)
            if have < it.quantity:
                adds.append(call("cart_add", product_id=it.product_id, variant_id=variant, quantity=it.quantity - have))
        taken = adds[: self.budget]
        added = join_phrases([self._item_text(c["args"]["product_id"], c["args"]["quantity"]) for c in taken])
        if len(adds) <= self.budget:
            if taken:
                message = f"I've added {added} to your cart. That's everything you asked for."
            else:
                message = "Everything you asked for is already in your cart."
            return {"assistant_message": message, "tool_calls": taken, "answer": {"done": True}}
        return {"assistant_message": f"I've added {added} to your cart; the rest comes next.", "tool_calls": taken}

    def _item_text(self, product_id: str, quantity: int) -> str:
        """The goal item as the shopper named it: 'three of the Acme mugs in Black'."""
        it = next(i for i in self.env.goal.items if i.product_id == product_id)
        text = count_of(quantity, it.phrase)
        if it.variant_id:
            text += " " + attribute_phrase(it.variant_attr, it.variant_value)
        return text
