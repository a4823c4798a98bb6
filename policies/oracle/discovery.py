"""Oracle for E_PD: ask about omitted slots -> filtered search -> the k best-utility valid
results.

The search uses the leaf name and the attribute values as the query, every constraint as
filters (`constraints.to_filters`) and the target's category path, so its results are valid
products, up to the retrieval depth (`axes.top_k`); privileged price, rating and shipping
bounds taken from the ideal answer keep a pool larger than that depth from hiding it. When that search scheduled a stock-out,
a second search checks stock when turns allow; either way the planner never answers a row
that is out of stock or scheduled to sell out. Only ids a search showed are answered. One
tool call per turn, so any B_tool(d) >= 1 is respected; at most four turns (ask, search,
re-check, answer), within T_max(d) >= 4.
"""

from __future__ import annotations

import numpy as np

from ecomrlve.envs.constraints import to_filters

from ecomrlve.envs.shopper import top_k

from .common import SearchAnswerPlanner, call, listing, narrowing, slot_question

FOCUS_WORDS = {"price": "price", "rating": "reviews", "shipping": "shipping speed", "brand": "brand",
               "popularity": "popularity", "similarity": "how closely they match the features you want"}

MAX_SEARCH_TOP_K = 200  # CatalogSearchArgs.top_k's upper bound


class DiscoveryPlanner(SearchAnswerPlanner):
    def __init__(self, env):
        super().__init__(env)
        self.asked = False

    def _search(self) -> dict:
        env, goal = self.env, self.env.goal
        attrs = [str(c.value) for c in goal.constraints if c.kind == "attribute"]
        filters = to_filters(goal.constraints).model_dump(exclude_none=True)
        filters["category"] = goal.path
        filters |= narrowing(env, env.ideal_rows()[: goal.k + 1], filters)
        top_k = max(1, min(env.axes.top_k, MAX_SEARCH_TOP_K))
        return call("catalog_search", query=" ".join([goal.leaf] + attrs), filters=filters, top_k=top_k)

    def _answer_ids(self) -> list[str]:
        env, goal = self.env, self.env.goal
        pending = {row for _, row in env.world.scheduled_stockouts}
        rows = sorted({r for r in (env.world.row(pid) for pid in env.searched_ids)
                       if env.is_valid(r) and r not in pending})
        if not rows:
            return []
        u = env.utility(np.array(rows, dtype=np.int64)).tolist()
        ranked = sorted(zip(rows, u), key=lambda t: (-t[1], t[0]))
        return [env.catalog.product_id(r) for r, _ in ranked[: goal.k]]

    def next_action(self) -> dict:
        env = self.env
        if env.shopper.omitted and not self.asked:
            self.asked = True
            return {"tool_calls": [call("ask_user", question=slot_question(env.shopper))]}
        return self.search_or_answer()

    def _message(self, ids: list[str]) -> str:
        if not ids:
            return "I'm sorry, I couldn't find anything that meets all of your requirements."
        focus = FOCUS_WORDS.get(self.env.goal.focus, "what matters most to you")
        head = f"Here is my top pick:" if len(ids) == 1 else f"Here are my {top_k(len(ids))}, best first:"
        why = "It meets" if len(ids) == 1 else "They all meet"
        return f"{head}\n{listing(self.env, ids)}\n{why} your requirements, and I ranked by {focus}."
