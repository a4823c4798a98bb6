"""Oracle for E_RETURN: [order_list, ask?, search?] -> [order_get(target), search?] ->
[eligibility check, replacement variants?] -> [return_initiate if eligible, cart_add?] + answer.

One phase per step of the dependency chain, each phase packed into ceil(calls / B_tool)
turns (the generator sizes episodes with the same count, `ReturnEnv._oracle_turns`). Only
ids a tool or the shopper already showed are used: the order id comes from `order_list`,
the line id from `order_get`, the replacement from the search results in the transcript.
The replacement search runs once the shopper has said every constraint: with the first
calls when nothing was omitted, else right after the shopper's answer.
"""

from __future__ import annotations

import json

from ecomrlve.envs.catalog import CATEGORY_SEP
from ecomrlve.envs.constraints import to_filters
from ecomrlve.envs.orders import quoted_title
from ecomrlve.envs.shopper import singular

from .common import Planner, call, product_name, slot_question

AGENT_REASONS = {
    "damaged": "it arrived damaged", "defective": "it is defective", "wrong_item": "you received the wrong item",
    "does_not_fit": "it doesn't fit", "not_as_described": "it isn't as described",
    "no_longer_needed": "you no longer need it", "other": "it didn't work out for you",
}
AGENT_METHODS = {
    "mail": "you can mail it back", "drop_off": "you can drop it off at a drop-off location",
    "pickup": "a courier will pick it up from your home",
}


class ReturnPlanner(Planner):
    def __init__(self, env):
        super().__init__(env)
        self.phase = 0
        self.pending: list[dict] = []
        self.choice: tuple[str, str | None] | None = None  # replacement (product, variant)
        self.asked = False

    # ------------------------------------------------------------------ phases
    def _phase_calls(self, phase: int) -> list[dict]:
        env, g = self.env, self.env.goal
        rep = g.replacement
        if phase == 0:
            calls = [call("order_list")]
            self.asked = bool(env.shopper.omitted)
            if self.asked:
                calls.append(call("ask_user", question=slot_question(env.shopper)))
            elif rep is not None:
                calls.append(self._search_call())
            return calls
        if phase == 1:
            calls = [call("order_get", order_id=g.order_id)]
            if rep is not None and self.asked:
                calls.append(self._search_call())
            return calls
        if phase == 2:
            calls = [call("return_check_eligibility", order_id=g.order_id, line_id=g.line_id)]
            if rep is not None:
                pid = self._pick_product()
                self.choice = (pid, None)
                if pid is not None and env.world.variants_of(pid):
                    calls.append(call("catalog_get_variants", product_id=pid))
            return calls
        calls = []
        if g.eligible:
            calls.append(call("return_initiate", order_id=g.order_id, line_id=g.line_id, reason=g.reason,
                              method=g.method))
        if rep is not None and self.choice and self.choice[0] is not None:
            pid = self.choice[0]
            calls.append(call("cart_add", product_id=pid, variant_id=self._pick_variant(pid), quantity=1))
        return calls

    def _answer(self) -> dict:
        g = self.env.goal
        return {"selected_order_id": g.order_id, "selected_line_id": g.line_id, "eligible": g.eligible}

    def next_action(self) -> dict:
        while not self.pending and self.phase < 3:
            self.pending = self._phase_calls(self.phase)
            self.phase += 1
            if self.phase == 3 and not self.pending:
                self.pending = self._phase_calls(3)
                self.phase = 4
                break
        if self.phase == 3 and not self.pending:  # (defensive) the last phase had nothing left
            self.pending = self._phase_calls(3)
            self.phase = 4
        taken, self.pending = self.pending[: self.budget], self.pending[self.budget :]
        said = self._report(taken)
        if self.phase >= 4 and not self.pending:
            if not self.env.goal.eligible:
                said.insert(0, "I'm sorry, this item is not eligible for return under the store policy.")
            elif not said:
                said.append("Your return is all set.")
            action = {"tool_calls": taken, "answer": self._answer()} if taken else {"answer": self._answer()}
            action["assistant_message"] = " ".join(said)
            return action
        return {"tool_calls": taken, "assistant_message": " ".join(said)} if said else {"tool_calls": taken}

    # ------------------------------------------------------------------ what the shopper is told
    def _report(self, calls: list[dict]) -> list[str]:
        """One sentence per world-changing call: what was done and why."""
        env, g = self.env, self.env.goal
        out = []
        for c in calls:
            if c["name"] == "return_initiate":
                line = env.world.order(g.order_id).line(g.line_id)
                out.append(f"I've started a return of {quoted_title(line.title)} for a refund, since "
                           f"{AGENT_REASONS[g.reason]}; {AGENT_METHODS[g.method]}.")
            elif c["name"] == "cart_add":
                out.append(f"I've also put a replacement in your cart that meets your requirements: "
                           f"{product_name(env, c['args']['product_id'])}.")
        return out

    # ------------------------------------------------------------------ replacement
    def _search_call(self) -> dict:
        rep = self.env.goal.replacement
        cat = self.env.catalog
        filters = to_filters([c for c in rep.constraints]).model_dump(exclude_none=True)
        path = CATEGORY_SEP.join(cat.value(f"category_l{i}", rep.row) or "" for i in (1, 2, 3))
        filters["category"] = path
        query = singular(cat.value("category_l3", rep.row) or "")
        return call("catalog_search", query=query, filters=filters, top_k=20)

    def _search_results(self) -> list[str]:
        """Product ids of the latest catalog_search result in the transcript, in order."""
        for msg in reversed(self.env.messages):
            if msg.get("role") == "tool" and msg.get("name") == "catalog_search":
                try:
                    return [r["product_id"] for r in json.loads(msg["content"]).get("results", [])]
                except (ValueError, KeyError, TypeError):
                    return []
        return []

    def _pick_product(self) -> str | None:
        env = self.env
        found = self._search_results()
        for pid in found:
            if any(env.replacement_ok(pid, v.variant_id) for v in env.world.variants_of(pid)) or (
                not env.world.variants_of(pid) and env.replacement_ok(pid, None)
            ):
                return pid
        return None

    def _pick_variant(self, pid: str) -> str | None:
        env = self.env
        for v in env.world.variants_of(pid):
            if env.replacement_ok(pid, v.variant_id) and self.seen(v.variant_id):
                return v.variant_id
        return None
