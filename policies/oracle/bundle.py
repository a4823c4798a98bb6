"""Oracle for E_BUNDLE: (ask about omitted details +) one filtered search per required
category, batched B_tool(d) per turn -> (re-search a category hit by a stock-out, when
turns allow) -> answer the cheapest feasible in-stock product of each category.

Each search uses the leaf name as the query and, as filters, the category path, in-stock,
the category's stated constraints and a price cap at the `ORACLE_PRICE_RANK`-th cheapest
feasible option (read from the live world, pending stock-outs excluded). The results are
then a handful of rows that always include the category's cheapest feasible options, well
within any retrieval depth, so the cheapest feasible bundle (which the env guarantees fits
the budget, also after a mid-episode stock-out) is always seen. Only searched ids are
answered.
"""

from __future__ import annotations

import numpy as np

from ecomrlve.envs.bundle import ORACLE_PRICE_RANK, Requirement
from ecomrlve.envs.constraints import to_filters

from .common import Planner, call, listing, slot_question

SEARCH_TOP_K = 200


class BundlePlanner(Planner):
    def __init__(self, env):
        super().__init__(env)
        self.asked = False
        self.searched: set[str] = set()  # leaves searched
        self.rechecked: set[str] = set()

    # ------------------------------------------------------------------ pieces
    def _question(self) -> str:
        return slot_question(self.env.shopper)

    def _blocked(self, req: Requirement) -> bool:
        """Whether a stated constraint of `req` is still unknown to the agent."""
        return any(req.slot_name(c) in self.env.shopper.omitted for c in req.constraints)

    def search_call(self, req: Requirement) -> dict:
        env = self.env
        rows = req.rows[env.feasible_mask(req, exclude_pending=True)]
        filters = to_filters(req.constraints).model_dump(exclude_none=True)
        if req.path:
            filters["category"] = req.path
        if len(rows):
            order = np.lexsort((rows, env._cents(rows)))
            cap_row = int(rows[order[min(ORACLE_PRICE_RANK, len(rows)) - 1]])
            filters["price_max"] = float(env.catalog.numeric("price")[cap_row])
        return call("catalog_search", query=req.leaf, filters=filters, top_k=SEARCH_TOP_K)

    def choices(self) -> dict[str, int | None]:
        """Per required leaf, the cheapest searched product that is feasible and in stock
        (pending stock-outs count as sold out)."""
        env = self.env
        pending = {r for _, r in env.world.scheduled_stockouts}
        best: dict[str, tuple[int, int] | None] = {r.leaf: None for r in env.goal.requirements}
        for pid in sorted(env.searched_ids):
            row = env.world.row(pid)
            req = env.requirement_of(row)
            if req is None or row in pending or not env.world.in_stock(row) or env.broken_constraint(req, row):
                continue
            key = (env.price_cents(row), row)
            if best[req.leaf] is None or key < best[req.leaf]:
                best[req.leaf] = key
        return {leaf: (None if k is None else k[1]) for leaf, k in best.items()}

    # ------------------------------------------------------------------ policy
    def next_action(self) -> dict:
        env, goal, sh = self.env, self.env.goal, self.env.shopper
        unsearched = [r for r in goal.requirements if r.leaf not in self.searched]
        ready = [r for r in unsearched if not self._blocked(r)]
        calls = []
        if sh.omitted and (not self.asked or (unsearched and not ready)):
            calls.append(call("ask_user", question=self._question()))
            self.asked = True
        for req in ready:
            if len(calls) >= self.budget:
                break
            calls.append(self.search_call(req))
            self.searched.add(req.leaf)
        if calls:
            return {"tool_calls": calls}

        choices = self.choices()
        turns_left = env.axes.T_max - env.turn
        if turns_left >= 2:
            redo = []
            oos_req = env.requirement_of(goal.oos_row)
            for req in goal.requirements:
                lost = oos_req is req or choices[req.leaf] is None
                if lost and req.leaf not in self.rechecked and len(redo) < self.budget:
                    redo.append(req)
            if redo:  # a category lost its pick (stock-out): look again
                for req in redo:
                    self.rechecked.add(req.leaf)
                return {"tool_calls": [self.search_call(req) for req in redo]}
        ids = [env.catalog.product_id(row) for row in choices.values() if row is not None]
        return {"assistant_message": self._message(ids), "answer": {"recommended_product_ids": ids}}

    def _message(self, ids: list[str]) -> str:
        if not ids:
            return "I'm sorry, I couldn't put together a set that meets your requirements."
        return (f"Here is one product from each category:\n{listing(self.env, ids)}\n"
                "Each one meets your requirements, and I picked the least expensive options so the set "
                "stays within your budget.")
