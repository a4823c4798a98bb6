"""Oracle for E_SUB: history (+ ask about omitted slots) -> filtered search -> the k most
similar valid results.

The search uses the leaf name and the compatibility attribute values as the query and
every constraint as filters (`constraints.to_filters`, plus the original's category path),
so its results are exactly the valid alternatives, up to the retrieval depth. A stock-out
scheduled by that search is checked with a second search when turns allow (else the
planner leaves the scheduled row out, from the live world). Only ids a search showed are
answered.
"""

from __future__ import annotations

from ecomrlve.envs.constraints import to_filters
from ecomrlve.envs.shopper import is_plural, top_k

from .common import SearchAnswerPlanner, call, listing, narrowing, slot_question

SEARCH_TOP_K = 200


class SubstitutionPlanner(SearchAnswerPlanner):
    def __init__(self, env):
        super().__init__(env)
        self.history_read = False
        self.asked = False

    def _question(self) -> str:
        return slot_question(self.env.shopper)

    def _search(self) -> dict:
        goal = self.env.goal
        attrs = [str(c.value) for c in goal.constraints if c.kind == "attribute"]
        filters = to_filters(goal.constraints).model_dump(exclude_none=True)
        filters["category"] = goal.path
        filters |= narrowing(self.env, self.env.ideal_rows(goal.k + 1), filters)
        return call("catalog_search", query=" ".join([goal.leaf] + attrs), filters=filters, top_k=SEARCH_TOP_K)

    def _answer_ids(self) -> list[str]:
        env, goal = self.env, self.env.goal
        pending = {row for _, row in env.world.scheduled_stockouts}
        rows = [env.world.row(pid) for pid in env.searched_ids]
        rows = [r for r in rows if env.is_valid(r) and r not in pending]
        rows.sort(key=lambda r: (-env.similarity_of(r), r))
        return [env.catalog.product_id(r) for r in rows[: goal.k]]

    def next_action(self) -> dict:
        env = self.env
        reads = []
        if not self.history_read:
            reads.append(call("user_get_visit_history"))
            self.history_read = True
        if env.shopper.omitted and not self.asked:
            reads.append(call("ask_user", question=self._question()))
            self.asked = True
        if reads:
            for c in reads[self.budget:]:  # not executed this turn: plan them again
                if c["name"] == "ask_user":
                    self.asked = False
                else:
                    self.history_read = False
            return {"tool_calls": reads[: self.budget]}
        return self.search_or_answer()

    def _message(self, ids: list[str]) -> str:
        goal = self.env.goal
        lead = f"Since {goal.phrase} {'are' if is_plural(goal.phrase) else 'is'} sold out, I looked for similar products."
        if not ids:
            return f"{lead} I'm sorry, nothing else meets all of your requirements."
        head = "Here is my top alternative:" if len(ids) == 1 else f"Here are my {top_k(len(ids), 'alternative')}, closest first:"
        why = "It meets" if len(ids) == 1 else "They all meet"
        return f"{lead} {head}\n{listing(self.env, ids)}\n{why} your requirements."
