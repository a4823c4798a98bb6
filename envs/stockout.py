"""A stock-out planned at reset and sprung on the agent after it searches.

E_PD, E_SUB and E_BUNDLE decide at reset (p_oos) whether one product will sell out during
the episode. The product is chosen only when a `catalog_search` has shown candidates, so
the stock-out lands on something the agent is likely to pick, and it takes effect on the
next turn (`world.scheduled_stockouts`). Each environment says which product it takes
(`_stockout_victim`); this mixin does the bookkeeping they share.
"""

from __future__ import annotations


class SearchStockout:
    """Mixin for a `ShopEnv` whose goal has ``oos_planned`` and ``oos_row`` and which keeps
    ``searched_ids`` (every product id a search showed, in any order)."""

    def _stockout_victim(self, shown_ids: list[str]) -> int | None:
        """The row the planned stock-out takes, given the ids this search showed (in result
        order), or None to wait for a later search."""
        raise NotImplementedError

    def _on_tool(self, name: str, args, result: dict) -> None:
        if name != "catalog_search":
            return
        ids = [r["product_id"] for r in result.get("results", []) if isinstance(r, dict) and "product_id" in r]
        self.searched_ids.update(ids)
        goal = self.goal
        if not goal.oos_planned or goal.oos_row is not None:
            return
        victim = self._stockout_victim(ids)
        if victim is not None:
            goal.oos_row = victim
            self.world.scheduled_stockouts.append((self.world.clock.turn + 1, victim))
