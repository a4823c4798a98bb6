"""E_PD (product discovery): recommend the shopper's top k(d) products for a need described
by constraints, ranked by the shopper's hidden preferences.

Hidden goal. An in-stock target product is sampled (O(1): random rows until one is in stock
in the world overlay and has attributes enough for m(d) constraints, `_sample_target`).
`constraints_for_target(catalog, row, m(d), rng)` gives up to m(d) constraints it satisfies:
its leaf category first, then a price cap, then a random mix of its attributes, brand,
minimum rating and maximum shipping days. Their `slot()`s go
to the shopper: the category is always said, every other slot is omitted with p_missing(d)
(`shopper.plan_disclosure`) and revealed when `ask_user` asks about it. The opening says
exactly the disclosed phrases ("Hi, I'm looking for wall chargers under $25 and in Black.
Could you suggest your top 3?"), plus one sentence naming the shopper's main priority. An
omitted phrase that happens to occur in the opening anyway counts as disclosed, so the
omitted set always equals exactly what the clean text leaves out.

Hidden preferences (`rand("prefs")`): weights over six aspects, `ASPECTS` = price (cheaper
is better, relative to the cap), rating, shipping speed, brand (the target's brand),
popularity (log rating count) and similarity (share of the target's attributes matched).
Dirichlet(2, ..., 2) plus `STATED_BIAS` on each aspect the shopper's opening states a
constraint about (a stated price cap raises the price weight, a stated minimum rating the
rating weight, ...), normalised. Utility of a row = sum of weight x feature, each feature in
[0, 1], rounded to 12 decimals (`utility(rows)`, vectorised, same value for a row whatever
array it is computed in).

Evaluation pool (scoring time): every product satisfying ALL constraints and in stock in the
world overlay; `constraints.compatible_rows` finds the compatible ones from the catalog's
per-leaf lookups without scanning the catalog (the same rows as `constraints.mask`). Ideal ranking = pool
by utility desc, row asc. With the recommended ids deduplicated (order kept) and the first k
considered:

    rel(row)  = utility(row) / max pool utility for pool members, 0 otherwise (unknown ids too)
    ndcg      = DCG@k / IDCG@k                              (IDCG from the ideal ranking)
    fit       = mean over items of (constraints satisfied / m), 0 for items outside the leaf
    stock     = mean over items of [in the leaf and in stock]
    r_task    = clip(2 (0.7 ndcg + 0.2 fit + 0.1 stock) - 1, -1, 1)

so unknown ids and products of another kind score exactly -1; a random catalog product of the
requested kind earns a little partial credit (a truly valid one is a fair hit). Every id
given counts: an answer with n > k ids loses 2 (n - k) / n more (50 ids for k = 3 score at
most -0.88) and is not correct. `is_correct` requires the top
recommendation to satisfy every constraint, be in stock in the final world and have appeared
in a catalog_search result this episode.

Mid-episode stock-out: with p_oos(d) (decided at reset), the episode's first catalog_search
schedules one product of the target's leaf to sell out at the next turn
(`world.scheduled_stockouts`), the one an answer would most likely hold (`_stockout_victim`):
a valid product other than the target when there is one (shown by that search first, then
by utility), else the in-stock product meeting the most constraints. A stale recommendation
is penalised (it leaves the pool, or loses its stock credit), and the target never sells
out, so a valid answer always remains.

Shopper reactions (`_react`): when the agent names seen products in text, the first one is
checked against the constraints the shopper has stated (the broken one is pointed out), then
its stock; otherwise the shopper confirms. A text question without tool calls is answered
like `ask_user`. In a journey the shopper may raise its budget (`_switch_goal`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .actions import Answer
from .base import ShopEnv
from .catalog import ATTRIBUTE_COLUMNS, CATEGORY_SEP
from .constraints import (
    Constraint,
    budget_switch_text,
    compatible_rows,
    constraints_for_target,
    relax_price_cap,
)
from .reward import TaskScore, clip
from .shopper import Utterance, fill, join_phrases, top_k
from .stockout import SearchStockout

MAX_TARGET_TRIES = 500
W_NDCG, W_FIT, W_STOCK = 7, 2, 1  # tenths (integers, so a perfect answer scores exactly 1)
STATED_BIAS = 0.5
POPULARITY_SCALE = 10_000  # rating_count at which popularity saturates
MAX_SHIP_DAYS = 15
MAX_MENTIONS = 32

ASPECTS: tuple[str, ...] = ("price", "rating", "shipping", "brand", "popularity", "similarity")
# constraint kind -> the preference aspect a stated constraint of that kind raises
KIND_ASPECT: dict[str, str] = {
    "price_max": "price",
    "rating_min": "rating",
    "ship_days_max": "shipping",
    "brand": "brand",
    "attribute": "similarity",
}
OPENINGS = (
    "Hi, I'm looking for {need}{details}. Could you suggest your {picks}?",
    "Hello! I need {need}{details}. What would be your {picks}?",
    "Hey, I'm shopping for {need}{details}. Can you recommend your {picks}?",
    "I want to buy {need}{details}. Please suggest your {options}.",
)
FOCUS_PHRASES: dict[str, tuple[str, ...]] = {
    "price": ("Keeping the price low matters most to me.", "I'd like to spend as little as possible."),
    "rating": ("Good reviews matter most to me.", "I care most about high ratings."),
    "shipping": ("Fast shipping matters most to me.", "I'd like it to arrive as soon as possible."),
    "brand": ("I tend to stick with brands I already know.", "Brand matters a lot to me."),
    "popularity": ("I like popular picks that lots of people buy.", "Something many shoppers have bought would be great."),
    "similarity": ("The exact specs matter most to me.", "Getting the details right matters most to me."),
}
CONFIRM = ("That one looks good to me.", "That one sounds like what I need.", "Great, that one works for me.")
UNSUITABLE = ("That one won't work.", "Hmm, that's not what I asked for.", "That one doesn't fit.")
SOLD_OUT = ("That one shows as out of stock.", "That one seems to be sold out.")


@dataclass
class DiscoveryGoal:
    target_row: int
    target_id: str
    leaf: str
    path: str  # "l1 > l2 > l3" of the target
    constraints: list[Constraint]
    k: int
    weights: dict[str, float]
    focus: str
    price_ref: float  # dollars; the price feature is exp(-price / price_ref)
    oos_planned: bool = False
    oos_row: int | None = None  # the row scheduled to sell out mid-episode
    version: int = 0  # bumped when the shopper changes a constraint


class DiscoveryEnv(SearchStockout, ShopEnv):
    env_id = "E_PD"
    tools = ("catalog_search", "catalog_get_product", "ask_user")
    answer_fields = ("recommended_product_ids",)
    task_brief = (
        "Find products that meet everything the shopper needs and recommend the best in-stock ones "
        "for them, best first: answer {\"recommended_product_ids\": [...]} with as many as they ask for."
    )

    # ------------------------------------------------------------------ generation
    def _n_candidates(self, row: int) -> int:
        """How many constraints `constraints_for_target` can make for `row`."""
        cat = self.catalog
        n_attrs = sum(1 for a in ATTRIBUTE_COLUMNS if cat.value(a, row))
        return 2 + n_attrs + 1 + (float(cat.numeric("rating")[row]) >= 3.0) + 1

    def _sample_target(self, rng: np.random.Generator) -> int:
        """A random in-stock product; one that can carry m(d) constraints when one turns up
        within `MAX_TARGET_TRIES` draws (else the richest in-stock one drawn)."""
        cat = self.catalog
        stock = cat.numeric("stock")
        best, best_n = None, -1
        for _ in range(MAX_TARGET_TRIES):
            row = int(rng.integers(len(cat)))
            if stock[row] > 0 and self.world.in_stock(row) and cat.value("category_l3", row):
                n = self._n_candidates(row)
                if n >= self.axes.m:
                    return row
                if n > best_n:
                    best, best_n = row, n
        if best is None:
            raise RuntimeError("catalog has too few in-stock products with a category")
        return best

    def _generate(self) -> Utterance:
        rng = self.rand("goal")
        cat = self.catalog
        row = self._sample_target(rng)
        constraints = constraints_for_target(cat, row, self.axes.m, rng)
        disclosed = self.shopper.plan_disclosure([c.slot() for c in constraints], self.axes.p_missing, keep=1)
        stated = {s.name for s in disclosed}

        prefs = self.rand("prefs")
        raw = prefs.dirichlet([2.0] * len(ASPECTS))
        for c in constraints:
            if c.name in stated and c.kind in KIND_ASPECT:
                raw[ASPECTS.index(KIND_ASPECT[c.kind])] += STATED_BIAS / max(1, _count_kind(constraints, stated, c.kind))
        raw = raw / raw.sum()
        weights = {a: float(w) for a, w in zip(ASPECTS, raw)}
        focus = ASPECTS[int(np.argmax(raw))]
        cap = next((float(c.value) for c in constraints if c.kind == "price_max"), None)
        price_ref = max(0.01, cap if cap is not None else 1.5 * float(cat.numeric("price")[row]))

        self.goal = DiscoveryGoal(
            target_row=row,
            target_id=cat.product_id(row),
            leaf=cat.value("category_l3", row),
            path=CATEGORY_SEP.join(cat.value(f"category_l{i}", row) or "" for i in (1, 2, 3)),
            constraints=constraints,
            k=self.axes.k,
            weights=weights,
            focus=focus,
            price_ref=price_ref,
        )
        self.goal.oos_planned = self.axes.p_oos > 0 and self.rand("oos").random() < self.axes.p_oos
        self.searched_ids: set[str] = set()
        self._pool_cache: tuple[int, np.ndarray] | None = None
        opening = self._opening()
        # oracle plan: [ask about omitted slots] -> search -> [re-check after a stock-out] -> answer
        self.plan_turns = int(bool(self.shopper.omitted)) + 2 + int(self.goal.oos_planned)
        self.plan_caused = {0} if self.shopper.omitted else set()
        return opening

    def _opening(self) -> Utterance:
        sh, goal = self.shopper, self.goal
        said = [c.name for c in goal.constraints if sh.revealed(c.name)]
        need = sh.slots[said[0]].phrase
        rest = [sh.spoken(c.name) for c in goal.constraints if c.name != said[0]]  # omitted ones as hints
        details = " " + join_phrases(rest) if rest else ""
        text = fill(sh.choose(OPENINGS), need=need, details=details, picks=top_k(goal.k, "pick"),
                    options=top_k(goal.k, "option"))
        clean = f"{text} {sh.choose(FOCUS_PHRASES[goal.focus])}"
        # an omitted phrase the text happens to contain was said after all
        for name in list(sh.omitted):
            if sh.slots[name].phrase in clean:
                sh.omitted.remove(name)
        disclosed = tuple(c.name for c in goal.constraints if sh.revealed(c.name))
        return sh.say(clean, "opening", disclosed)

    # ------------------------------------------------------------------ preferences & pool
    def utility(self, rows) -> np.ndarray:
        """The shopper's hidden utility of each row of `rows` (float64, in [0, 1]):
        round(w_price f_price + w_rating f_rating + w_shipping f_ship + w_brand f_brand
        + w_popularity f_pop + w_similarity f_sim, 12), summed in that order; a row's value
        does not depend on the other rows of `rows`. Rows of the target's leaf (the scoring
        pool: thousands of rows in a big catalog) are read from the catalog's compact
        per-leaf columns, other rows from the full columns; computed in place."""
        cat, goal = self.catalog, self.goal
        rows = np.asarray(rows, dtype=np.int64)
        column = self._column_reader(rows)
        w = goal.weights
        u = column("price").astype(np.float64)  # f_price = exp(-price / ref)
        np.negative(u, out=u)
        u /= goal.price_ref
        np.exp(u, out=u)
        u *= w["price"]
        f = column("rating").astype(np.float64)  # f_rating = clip((rating - 1) / 4, 0, 1)
        f -= 1.0
        f /= 4.0
        np.clip(f, 0.0, 1.0, out=f)
        f *= w["rating"]
        u += f
        f = column("ship_days").astype(np.float64)  # f_ship = clip(1 - (ship - 1) / 14, 0, 1)
        f -= 1.0
        f /= MAX_SHIP_DAYS - 1
        np.subtract(1.0, f, out=f)
        np.clip(f, 0.0, 1.0, out=f)
        f *= w["shipping"]
        u += f
        target_brand = cat.codes("brand")[0][goal.target_row]  # f_brand = same brand as the target
        u += np.where(column("brand") == target_brand, 1.0 * w["brand"], 0.0 * w["brand"])
        f = column("rating_count").astype(np.float64)  # f_pop = clip(log1p(n) / log1p(scale), 0, 1)
        np.log1p(f, out=f)
        f /= math.log1p(POPULARITY_SCALE)
        np.clip(f, 0.0, 1.0, out=f)
        f *= w["popularity"]
        u += f
        f = self._attribute_similarity(rows, column)
        f *= w["similarity"]
        u += f
        return np.round(u, 12, out=u)

    def _column_reader(self, rows: np.ndarray):
        """name -> the values of column `name` (numeric, or brand / attribute codes) at
        `rows`: from the target leaf's per-leaf columns when every row is of that leaf."""
        cat, leaf = self.catalog, self.goal.leaf
        if len(rows) > 1:
            pos = cat.category_positions(leaf, rows)
            if pos is not None:
                return lambda name: cat.category_column(leaf, name).take(pos)
        numeric = {"price", "rating", "ship_days", "rating_count"}
        return lambda name: (cat.numeric(name) if name in numeric else cat.codes(name)[0]).take(rows)

    def _attribute_similarity(self, rows: np.ndarray, column=None) -> np.ndarray:
        cat, target = self.catalog, self.goal.target_row
        column = column or self._column_reader(rows)
        matches = np.zeros(len(rows), dtype=np.int64)
        n = 0
        for attr in ATTRIBUTE_COLUMNS:
            code = int(cat.codes(attr)[0][target])
            if code >= 0:
                matches += column(attr) == code
                n += 1
        return matches / n if n else np.ones(len(rows), dtype=np.float64)

    def utility_of(self, row: int) -> float:
        return float(self.utility(np.array([row]))[0])

    def _compatible_rows(self) -> np.ndarray:
        """Every catalog row satisfying all constraints (stock ignored), ascending."""
        goal = self.goal
        if self._pool_cache is None or self._pool_cache[0] != goal.version:
            rows = compatible_rows(self.catalog, goal.constraints)
            self._pool_cache = (goal.version, rows)
        return self._pool_cache[1]

    def pool_rows(self) -> np.ndarray:
        """The evaluation pool now: rows meeting every constraint and in stock, ascending."""
        rows = self._compatible_rows()
        return rows[self.world.stock_mask(rows)]

    def ideal_rows(self) -> list[int]:
        """The pool by utility desc, row asc."""
        rows = self.pool_rows()
        order = np.lexsort((rows, -self.utility(rows)))
        return [int(r) for r in rows[order]]

    def broken_constraint(self, row: int | None, only_stated: bool = False) -> Constraint | None:
        """The first constraint `row` breaks (among the stated ones with `only_stated`)."""
        for c in self.goal.constraints:
            if only_stated and not self.shopper.revealed(c.name):
                continue
            if row is None or not c.holds(self.catalog, row):
                return c
        return None

    def is_valid(self, row: int | None) -> bool:
        """Meets every constraint and is in stock now."""
        return row is not None and self.broken_constraint(row) is None and self.world.in_stock(row)

    # ------------------------------------------------------------------ world events
    def _stockout_victim(self, shown_ids: list[str]) -> int | None:
        """The product a planned stock-out takes: among the in-stock, not yet scheduled
        products of the target's leaf other than the target, the one meeting the most
        constraints (valid ones first), then shown in `shown_ids`, then of highest utility,
        then of lowest row. None when the leaf has no such product."""
        goal, cat = self.goal, self.catalog
        shown_rows = [r for r in (self.world.row(i) for i in shown_ids) if r is not None]
        valid = self._compatible_rows()  # meeting every constraint: the first choices when any is left
        valid = valid[self.world.stock_mask(valid, exclude_pending=True) & (valid != goal.target_row)]
        if len(valid):
            return self._best_of(valid, _members(valid, shown_rows))
        rows = np.asarray(cat.category_rows(goal.leaf), dtype=np.int64)
        rows = rows[self.world.stock_mask(rows, exclude_pending=True) & (rows != goal.target_row)]
        if not len(rows):
            return None
        met = np.zeros(len(rows), dtype=np.int64)
        for c in goal.constraints:
            met += c.mask_rows(cat, rows)
        most = rows[met == met.max()]
        return self._best_of(most, _members(most, shown_rows))

    def _best_of(self, rows: np.ndarray, shown: np.ndarray) -> int:
        """The first row of ``rows[np.lexsort((rows, -utility, ~shown))]`` (`rows` ascending):
        the shown rows if any, else all; the highest utility; the lowest row. Utility is
        computed only for the rows that can win (a search shows a handful of the thousands of
        rows a pool has at 2M products)."""
        pick = rows[shown] if shown.any() else rows
        u = self.utility(pick)
        return int(pick[int(np.flatnonzero(u == u.max())[0])])

    # ------------------------------------------------------------------ shopper reactions
    def _mentioned(self, message: str) -> list[int]:
        """Rows of the seen product ids named in `message`, in order of appearance."""
        found = []
        for pid in sorted(self.seen_ids):
            pos = message.find(pid)
            if pos >= 0 and self.world.row(pid) is not None:
                found.append((pos, -len(pid), pid))
        found.sort()
        rows, end = [], -1
        for pos, neg_len, pid in found:
            if pos < end:  # inside a longer id already taken
                continue
            end = pos - neg_len
            rows.append(self.world.row(pid))
        return rows[:MAX_MENTIONS]

    def _react(self, message: str, turn: int, had_tools: bool) -> Utterance | None:
        sh = self.shopper
        rows = self._mentioned(message)
        if not rows:
            if "?" in message and not had_tools:
                return sh.answer(message, turn)
            return None
        top = rows[0]
        c = self.broken_constraint(top, only_stated=True)
        if c is not None:
            return sh.say(f"{sh.choose(UNSUITABLE)} {sh.slots[c.name].reply}", "correction", (c.name,))
        if not self.world.in_stock(top):
            return sh.say(sh.choose(SOLD_OUT), "sold_out")
        return sh.say(sh.choose(CONFIRM), "confirm")

    def _switch_goal(self, rng: np.random.Generator) -> Utterance | None:
        """The shopper changes its mind (journeys): a higher budget. Only relaxes, so every
        valid recommendation stays valid."""
        goal = self.goal
        relaxed = relax_price_cap(goal.constraints, rng)
        if relaxed is None:
            return None
        _, new = relaxed
        goal.version += 1
        self.replan_turns += 1  # the oracle searches again with the new constraint
        slot = new.slot()
        self.shopper.restate(slot)
        return self.shopper.say(budget_switch_text(slot), "switch", (new.name,))

    # ------------------------------------------------------------------ verifier
    def _score(self, answer: Answer | None) -> TaskScore:
        goal, cat = self.goal, self.catalog
        k, m = goal.k, len(goal.constraints)
        pool = self.pool_rows()
        pool_u = self.utility(pool)
        u_max = float(pool_u.max()) if len(pool) else 0.0
        top = pool_u if len(pool_u) <= k else np.partition(pool_u, len(pool_u) - k)[len(pool_u) - k:]
        ideal_u = np.sort(top)[::-1]  # the k best utilities, best first (a partition: O(pool))
        details: dict = {
            "k": k, "m": m, "n_pool": int(len(pool)), "target_id": goal.target_id,
            "oos_id": cat.product_id(goal.oos_row) if goal.oos_row is not None else None,
        }
        ids = list(dict.fromkeys(answer.recommended_product_ids or [])) if answer is not None else []
        if not ids:
            return TaskScore(-1.0, False, details | {
                "ndcg": 0.0, "constraint_share": 0.0, "stock_share": 0.0, "n_recommended": 0,
                "top_valid": False, "top_in_stock": False, "top_searched": False,
            })
        rows = [self.world.row(i) for i in ids]
        top_rows = rows[:k]

        def rel(row: int | None) -> float:
            if row is None or u_max <= 0:
                return 0.0
            i = int(np.searchsorted(pool, row))
            return float(pool_u[i]) / u_max if i < len(pool) and int(pool[i]) == row else 0.0

        dcg = sum(rel(r) / math.log2(i + 2) for i, r in enumerate(top_rows))
        idcg = sum(float(u) / u_max / math.log2(i + 2) for i, u in enumerate(ideal_u)) if u_max > 0 else 0.0
        ndcg = min(1.0, dcg / idcg) if idcg > 0 else 0.0
        leaf = goal.constraints[0]
        fits, stocks = [], []
        for r in top_rows:
            relevant = r is not None and leaf.holds(cat, r)
            fits.append(sum(c.holds(cat, r) for c in goal.constraints) / m if relevant else 0.0)
            stocks.append(1.0 if relevant and self.world.in_stock(r) else 0.0)
        fit = sum(fits) / len(fits)
        stock = sum(stocks) / len(stocks)
        # every id given counts: ids past the k asked for are each a wrong recommendation
        extra = max(0, len(ids) - k)
        r_task = clip(2 * (W_NDCG * ndcg + W_FIT * fit + W_STOCK * stock) / 10 - 1 - 2 * extra / len(ids))

        top = rows[0]
        top_satisfies = top is not None and self.broken_constraint(top) is None
        top_in_stock = top is not None and self.world.in_stock(top)
        top_searched = ids[0] in self.searched_ids
        details |= {
            "ndcg": ndcg,
            "constraint_share": fit,
            "stock_share": stock,
            "n_recommended": len(ids),
            "n_unknown": sum(r is None for r in rows),
            "n_in_pool": sum(rel(r) > 0 for r in top_rows),
            "top_satisfies_all": top_satisfies,
            "top_in_stock": top_in_stock,
            "top_searched": top_searched,
            "top_valid": top_satisfies and top_in_stock,
        }
        details["n_extra"] = extra
        correct = top_satisfies and top_in_stock and top_searched and extra == 0
        return TaskScore(float(r_task), bool(correct), details)


def _members(rows: np.ndarray, few: list[int]) -> np.ndarray:
    """``np.isin(rows, few)`` for ascending `rows` and a handful of `few`: O(len(few) log
    len(rows)) lookups instead of sorting both."""
    out = np.zeros(len(rows), dtype=bool)
    if len(rows) and few:
        at = np.searchsorted(rows, few)
        hit = at < len(rows)
        at = at[hit]
        out[at[rows[at] == np.asarray(few, dtype=np.int64)[hit]]] = True
    return out


def _count_kind(constraints: list[Constraint], stated: set[str], kind: str) -> int:
    """How many stated constraints share `kind` (attributes split one bias between them)."""
    return sum(1 for c in constraints if c.kind == kind and c.name in stated)
