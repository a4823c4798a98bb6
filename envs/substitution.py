"""E_SUB: the product the shopper wanted is sold out; recommend compatible, similar alternatives.

Hidden goal. An original product is sampled; its overlay stock is set to 0 at reset and it
sits in the visit history (with two distractors: a same-leaf product of another brand and a
product of another leaf). The shopper names it by brand and kind ("the Anker wall charger I
was going to buy is sold out") and asks for its top k(d) alternatives.

Compatibility constraints (`ecomrlve.envs.constraints.Constraint`, m(d) of them at most), in order:
the original's leaf category (always, always said), the first attribute that makes a
substitute compatible in its department (`COMPAT_ATTRIBUTES`: electronics connector /
wattage / capacity, clothing size, kitchen material / capacity, beauty scent, grocery
flavor, ...), a price cap 10-60% above the original's price (`nice_price_cap`), the other
compatibility attributes, then (shuffled) the original's remaining attributes, and last
(shuffled) minimum rating, maximum shipping days and the original's brand. Each constraint
after the category is said in the opening or omitted with p_missing(d)
(`shopper.plan_disclosure`); the shopper answers `ask_user` questions about omitted ones.

Solvability at reset, independent of catalog size: the rows meeting a set of constraints come
from the catalog's per-leaf lookups (`constraints.compatible_rows`: the smallest of the leaf,
its rows under the price cap and its brand / attribute postings, filtered), never from a scan.
Candidate constraints are added greedily, skipping one that would leave
fewer than `need = max(2, k // 2)` compatible in-stock alternatives besides the original;
an original whose leaf cannot give `min(m, candidates)` constraints that way is resampled
(at most `MAX_ORIGINAL_TRIES`, deterministic), else the best try is kept.

Similarity (deterministic, `similarity_of()`), per product of the leaf, in [0, 1] (computed
for the compatible rows, `goal.rows`, when they are first listed, and per row otherwise):
w_attr * share of the original's attributes it matches + w_brand * same brand +
w_price * exp(-3 |ln(price / original price)|) + w_rating * (rating - 1) / 4. The hidden
weights come from `rand("prefs")` (Dirichlet(2, 2, 2, 2)) plus 1 on the aspect the shopper
states in the opening ("ideally close in price to what I picked"). `embedding_weight` > 0
mixes in the cosine of catalog embeddings when the catalog offers `embeddings(rows)` (the
dense-retrieval hook; 0, off, by default).

Mid-episode stock-out: with p_oos(d) (decided at reset) the first catalog_search whose
results hold at least two valid alternatives schedules the most similar of them to sell
out at the next turn (`world.scheduled_stockouts`), so another one always remains.

Verifier (`_score`). valid(row) = every constraint holds, in stock in the FINAL world
overlay, not the original. Ideal ranking = valid rows by similarity desc, row asc. With the
recommended ids deduplicated (order kept) and gain(row) = 0.1 + similarity for valid rows
(0 otherwise):

    ndcg  = DCG@k / IDCG@k                       (IDCG from the ideal ranking)
    share = valid recommended / recommended
    r_task = clip(2 (0.6 ndcg + 0.4 share) - 1 - 0.5 [original recommended]
                  - 0.5 (invalid non-original recommended / recommended), -1, 1)

so unknown or arbitrary ids give -1. `is_correct` requires: the top recommendation is valid
and appeared in a catalog_search result this episode, every recommended id is valid, and
at least min(k, |ideal|) were recommended.

Shopper reactions (`_react`): naming the original again -> "that's the one that's sold
out"; naming an incompatible product -> the broken constraint (revealing it if it was
omitted); a sold-out one -> says so; valid ones -> confirms. A text question without ids is
answered like `ask_user`. In a journey the shopper may raise its budget (`_switch_goal`).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .actions import Answer
from .base import ShopEnv
from .catalog import ATTRIBUTE_COLUMNS, CATEGORY_SEP
from .constraints import (
    Constraint,
    budget_switch_text,
    code_of,
    compatible_rows,
    count_compatible,
    nice_price_cap,
    relax_price_cap,
)
from .reward import TaskScore, clip
from .shopper import Utterance, brand_item, fill, is_plural, join_phrases, top_k
from .stockout import SearchStockout

MAX_ORIGINAL_TRIES = 40
MAX_ROW_TRIES = 200
GAIN_FLOOR = 0.1
W_NDCG, W_SHARE = 0.6, 0.4
PENALTY_ORIGINAL = 0.5
PENALTY_INVALID = 0.5
PRICE_DECAY = 3.0
MAX_MENTIONS = 32

# The attributes that make a substitute compatible, by department (lower-case l1), in order.
COMPAT_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "electronics": ("connector_type", "wattage", "capacity", "screen_size"),
    "clothing": ("size",),
    "home & kitchen": ("material", "capacity", "wattage", "size"),
    "beauty": ("scent", "capacity", "wattage"),
    "grocery": ("flavor", "capacity", "age_range"),
    "toys": ("age_range", "size"),
    "sports & outdoors": ("size", "capacity", "material"),
    "office": ("size", "material"),
    "tools": ("wattage", "size", "capacity", "material"),
}
DEFAULT_COMPAT: tuple[str, ...] = ("size", "capacity", "material")

ASPECTS: tuple[str, ...] = ("attributes", "brand", "price", "rating")
FOCUS_PHRASES: dict[str, tuple[str, ...]] = {
    "attributes": ("Ideally as close as possible to the original in features.",
                   "The closer to the original in features, the better."),
    "brand": ("I'd prefer to stay with the same brand if possible.",
              "Same brand would be nice if there is one."),
    "price": ("Ideally something close in price to what I picked.",
              "Something at a similar price would be best."),
    "rating": ("Well-reviewed options matter most to me.",
               "Good reviews matter a lot to me."),
}
SOLD_OUT_OPENINGS = (
    "Hi! Sadly, {ref} I was going to buy {is} sold out.",
    "Hey, {ref} I wanted {is} out of stock.",
    "Hello. I was about to order {ref}, but {it_is} sold out.",
    "Hi, I wanted {ref}, but {it_is} out of stock now.",
)
ASKS = (
    "Can you give me your {top}?",
    "Please give me your {top}.",
    "Could you suggest your {top} that {are} in stock?",
)
NEEDS = ("I need {what}.", "I'd like {what}.", "I'm looking for {what}.")
ORIGINAL_AGAIN = (
    "That's the one that's sold out. I need something else.",
    "That's the one I wanted, and it's sold out. Something else, please.",
)
CONFIRM_ONE = ("That one looks like a good replacement.", "That one would work for me.")
CONFIRM_MANY = ("Those look like good replacements.", "Those would work for me.")
SOLD_OUT_TOO = ("That one is out of stock too.", "That one says it's sold out as well.")
UNSUITABLE = ("That one won't work.", "That one doesn't fit what I need.")


@dataclass
class SubGoal:
    original_row: int
    original_id: str
    leaf: str
    path: str
    phrase: str  # how the shopper names the original
    constraints: list[Constraint]
    k: int
    focus: str
    weights: dict[str, float]
    rows: np.ndarray | None  # the rows meeting every constraint (stock ignored), ascending; see `_compatible`
    similarity: np.ndarray | None  # per row of `rows`, in [0, 1]
    history: list[str] = field(default_factory=list)
    oos_planned: bool = False
    oos_row: int | None = None  # the row scheduled to sell out mid-episode
    version: int = 0  # bumped when the shopper changes a constraint


class SubstitutionEnv(SearchStockout, ShopEnv):
    env_id = "E_SUB"
    tools = ("catalog_search", "catalog_get_product", "user_get_visit_history", "ask_user")
    answer_fields = ("recommended_product_ids",)
    task_brief = (
        "The product the shopper wanted is sold out. Recommend in-stock alternatives that are compatible "
        "with it (same kind of product, the attributes and limits the shopper needs) and as similar as "
        "possible, best first: answer {\"recommended_product_ids\": [...]}."
    )
    embedding_weight: ClassVar[float] = 0.0  # dense-retrieval hook: > 0 mixes embedding cosine in

    # ------------------------------------------------------------------ leaf-local vector helpers
    def _code(self, column: str, value: str) -> int | None:
        return code_of(self.catalog, column, value)

    def _eq(self, column: str, rows: np.ndarray, value: str | None) -> np.ndarray:
        code = self._code(column, value) if value is not None else None
        if code is None:
            return np.zeros(len(rows), dtype=bool)
        return np.asarray(self.catalog.codes(column)[0][rows]) == code

    def _constraint_mask(self, c: Constraint, rows: np.ndarray) -> np.ndarray:
        """`Constraint.holds` for every row of `rows` (vectorised; same arithmetic)."""
        cat = self.catalog
        if c.kind == "category":
            return self._eq("category_l3", rows, str(c.value))
        if c.kind == "price_max":
            return np.round(cat.numeric("price")[rows] * 100) <= int(round(float(c.value) * 100))
        if c.kind == "brand":
            return self._eq("brand", rows, str(c.value))
        if c.kind == "rating_min":
            return cat.numeric("rating")[rows] >= float(c.value) - 1e-6
        if c.kind == "ship_days_max":
            return cat.numeric("ship_days")[rows] <= int(c.value)
        return self._eq(c.attribute, rows, str(c.value))

    # ------------------------------------------------------------------ generation
    def _candidates(self, rng: np.random.Generator, row: int) -> list[Constraint]:
        """The constraints a substitute for `row` could have to meet, in the order they are used."""
        cat = self.catalog
        dept = (cat.value("category_l1", row) or "").lower()
        compat = [a for a in COMPAT_ATTRIBUTES.get(dept, DEFAULT_COMPAT) if cat.value(a, row)]
        out = [Constraint("category", cat.value("category_l3", row))]
        out += [Constraint("attribute", cat.value(a, row), a) for a in compat[:1]]
        out.append(Constraint("price_max", nice_price_cap(float(cat.numeric("price")[row]), rng)))
        out += [Constraint("attribute", cat.value(a, row), a) for a in compat[1:]]
        others = [Constraint("attribute", cat.value(a, row), a) for a in ATTRIBUTE_COLUMNS
                  if a not in compat and cat.value(a, row)]
        out += [others[i] for i in rng.permutation(len(others))]
        rating = float(cat.numeric("rating")[row])
        late = [
            Constraint("rating_min", max(3.0, math.floor(rating * 2) / 2 - 0.5)),
            Constraint("ship_days_max", max(2, int(cat.numeric("ship_days")[row]) + int(rng.integers(0, 3)))),
            Constraint("brand", cat.value("brand", row)),
        ]
        out += [late[i] for i in rng.permutation(len(late))]
        return out

    def _choose(self, rng: np.random.Generator, row: int, m: int, need: int):
        """Greedy constraints for original `row`: (constraints, min(need, number of valid
        alternatives they leave), number of candidate constraints). Counting stops at
        `need` (`constraints.count_compatible`), so no constraint set is listed in full."""
        candidates = self._candidates(rng, row)
        world = self.world

        def keep(rows: np.ndarray) -> np.ndarray:
            return world.stock_mask_any_order(rows) & (rows != row)

        chosen: list[Constraint] = []
        n_valid: int | None = None
        for j, c in enumerate(candidates):
            if len(chosen) >= m:
                break
            if j == 0:  # the leaf category always holds
                chosen.append(c)
                continue
            n = count_compatible(self.catalog, [*chosen, c], need, keep)
            if n >= need:
                chosen.append(c)
                n_valid = n
        if n_valid is None:
            n_valid = count_compatible(self.catalog, chosen, need, keep)
        return chosen, n_valid, len(candidates)

    def _sample_original(self, rng: np.random.Generator, need: int) -> int:
        cat = self.catalog
        stock = cat.numeric("stock")
        for _ in range(MAX_ROW_TRIES):
            row = int(rng.integers(len(cat)))
            if stock[row] > 0 and self.world.in_stock(row) and cat.value("category_l3", row):
                if len(cat.category_rows(cat.value("category_l3", row))) > need:
                    return row
        raise RuntimeError("catalog has too few in-stock products in populated categories")

    def _similarity(self, row: int, rows: np.ndarray, weights: dict[str, float]) -> np.ndarray:
        cat = self.catalog
        attrs = [a for a in ATTRIBUTE_COLUMNS if cat.value(a, row)]
        if attrs:
            attr = np.mean([self._eq(a, rows, cat.value(a, row)) for a in attrs], axis=0)
        else:
            attr = np.ones(len(rows))
        brand = self._eq("brand", rows, cat.value("brand", row)).astype(np.float64)
        price = cat.numeric("price")
        p0 = max(float(price[row]), 0.01)
        ratio = np.abs(np.log(np.maximum(price[rows].astype(np.float64), 0.01) / p0))
        price_sim = np.exp(-PRICE_DECAY * ratio)
        rating = (cat.numeric("rating")[rows].astype(np.float64) - 1.0) / 4.0
        sim = (weights["attributes"] * attr + weights["brand"] * brand + weights["price"] * price_sim
               + weights["rating"] * np.clip(rating, 0.0, 1.0))
        emb = self._embedding_cosine(row, rows)
        if emb is not None:
            w = float(self.embedding_weight)
            sim = (1.0 - w) * sim + w * np.clip(emb, 0.0, 1.0)
        return np.round(sim, 12)

    def _embedding_cosine(self, row: int, rows: np.ndarray) -> np.ndarray | None:
        """Cosine of the original's embedding with each row's, when dense retrieval is on
        (`embedding_weight` > 0 and the catalog has `embeddings(rows)` returning unit
        vectors); None otherwise."""
        if self.embedding_weight <= 0 or not hasattr(self.catalog, "embeddings"):
            return None
        vecs = np.asarray(self.catalog.embeddings(np.concatenate([[row], rows])), dtype=np.float64)
        return vecs[1:] @ vecs[0]

    def _history(self, rng: np.random.Generator, row: int, rows: np.ndarray) -> list[str]:
        """The original, a same-leaf product of another brand and one of another leaf."""
        cat = self.catalog
        brand = cat.value("brand", row)
        items = [cat.product_id(row)]
        for _ in range(32):
            r = int(rows[int(rng.integers(len(rows)))])
            if r != row and cat.value("brand", r) != brand:
                items.append(cat.product_id(r))
                break
        leaf = cat.value("category_l3", row)
        for _ in range(32):
            r = int(rng.integers(len(cat)))
            if cat.value("category_l3", r) != leaf and cat.value("brand", r) != brand:
                items.append(cat.product_id(r))
                break
        return [items[i] for i in rng.permutation(len(items))]

    def _generate(self) -> Utterance:
        rng = self.rand("goal")
        cat = self.catalog
        k, m = self.axes.k, self.axes.m
        need = max(2, k // 2)
        best = None
        for _ in range(MAX_ORIGINAL_TRIES):
            row = self._sample_original(rng, need)
            chosen, n_valid, n_cand = self._choose(rng, row, m, need)
            rank = (min(n_valid, need), len(chosen))
            if best is None or rank > best[0]:
                best = (rank, row, chosen)
            if len(chosen) >= min(m, n_cand) and n_valid >= need:
                break
        (n_valid, _), row, constraints = best
        if n_valid < 1:
            raise RuntimeError("catalog has no leaf category with an in-stock alternative to substitute")
        self.world.set_stock(row, 0)

        prefs = self.rand("prefs")
        raw = prefs.dirichlet([2.0] * len(ASPECTS))
        focus = ASPECTS[int(prefs.integers(len(ASPECTS)))]
        raw[ASPECTS.index(focus)] += 1.0
        weights = {a: float(w) for a, w in zip(ASPECTS, raw / raw.sum())}

        leaf = cat.value("category_l3", row)
        path = CATEGORY_SEP.join(cat.value(f"category_l{i}", row) or "" for i in (1, 2, 3))
        phrase = brand_item(cat.value("brand", row), leaf)
        self.goal = SubGoal(
            original_row=row, original_id=cat.product_id(row), leaf=leaf, path=path, phrase=phrase,
            constraints=constraints, k=k, focus=focus, weights=weights, rows=None, similarity=None,
        )
        self.goal.oos_planned = self.axes.p_oos > 0 and self.rand("oos").random() < self.axes.p_oos
        hist = self._history(self.rand("history"), row, cat.category_rows(leaf))
        self.goal.history = hist
        start = self.world.clock.now()
        self.world.visit_history = list(self.world.visit_history) + [
            (pid, (start - dt.timedelta(hours=int(5 * (len(hist) - j)))).isoformat(timespec="minutes"))
            for j, pid in enumerate(hist)
        ]
        self.searched_ids: set[str] = set()
        self.shopper.plan_disclosure([c.slot() for c in constraints], self.axes.p_missing, keep=1)
        # oracle plan: [history, ask about omitted slots] -> search -> [re-check after a stock-out] -> answer
        reads = 1 + int(bool(self.shopper.omitted))
        self.plan_turns = math.ceil(reads / self.axes.B_tool) + 2 + int(self.goal.oos_planned)
        self.plan_caused = {int(self.axes.B_tool == 1)} if self.shopper.omitted else set()
        return self._opening()

    def _opening(self) -> Utterance:
        sh, goal = self.shopper, self.goal
        many = is_plural(goal.phrase)
        first = fill(sh.choose(SOLD_OUT_OPENINGS), ref=goal.phrase, it_is="they're" if many else "it's",
                     **{"is": "are" if many else "is"})
        ask = fill(sh.choose(ASKS), top=top_k(goal.k, "alternative"), are="is" if goal.k == 1 else "are")
        said = [c.name for c in goal.constraints if sh.revealed(c.name)]
        cat_phrase = sh.slots[said[0]].phrase
        rest = [sh.spoken(c.name) for c in goal.constraints if c.name != said[0]]  # omitted ones as hints
        what = cat_phrase + (" " + join_phrases(rest) if rest else "")
        need = fill(sh.choose(NEEDS), what=what)
        focus = sh.choose(FOCUS_PHRASES[goal.focus])
        return sh.say(f"{first} {ask} {need} {focus}", "opening", tuple(said))

    # ------------------------------------------------------------------ goal state
    def _compatible(self) -> tuple[np.ndarray, np.ndarray]:
        """(`goal.rows`, `goal.similarity`): the rows meeting every constraint, ascending,
        and their similarity; listed on first use after reset or a change of constraints
        (scoring), from the catalog's lookups."""
        goal = self.goal
        if goal.rows is None:
            goal.rows = compatible_rows(self.catalog, goal.constraints)
            goal.similarity = self._similarity(goal.original_row, goal.rows, goal.weights)
        return goal.rows, goal.similarity

    def _goal_index(self, row: int) -> int | None:
        """The index of `row` in `goal.rows` when those are listed already, else None."""
        rows = self.goal.rows
        if rows is None:
            return None
        i = int(np.searchsorted(rows, row))
        return i if i < len(rows) and int(rows[i]) == row else None

    def compatible_mask(self) -> np.ndarray:
        """`goal.rows` meeting every constraint (stock ignored): all of them by construction."""
        return np.ones(len(self._compatible()[0]), dtype=bool)

    def valid_mask(self) -> np.ndarray:
        """`goal.rows` that are valid substitutes now: in stock and not the original."""
        rows = self._compatible()[0]
        return self.world.stock_mask(rows) & (rows != self.goal.original_row)

    def ideal_rows(self, limit: int | None = None) -> list[int]:
        """Valid rows by similarity desc, row asc (the first `limit` of them)."""
        return self._ideal(limit)[0]

    def _ideal(self, limit: int | None = None) -> tuple[list[int], int]:
        """(the first `limit` rows of the ideal ranking, the number of valid rows); only
        rows tying with the limit-th best similarity or above are sorted."""
        rows, similarity = self._compatible()
        idx = np.flatnonzero(self.valid_mask())
        n_valid = len(idx)
        sim = similarity[idx]
        if limit is not None and n_valid > 4 * limit:
            cut = np.partition(sim, n_valid - limit)[n_valid - limit]  # the limit-th largest
            keep = sim >= cut
            idx, sim = idx[keep], sim[keep]
        order = np.lexsort((rows[idx], -sim))[:limit]
        return [int(rows[i]) for i in idx[order]], n_valid

    def _in_leaf(self, row: int) -> bool:
        code = self._code("category_l3", self.goal.leaf)
        return code is not None and 0 <= row < len(self.catalog) and int(self.catalog.codes("category_l3")[0][row]) == code

    def similarity_of(self, row: int) -> float:
        i = self._goal_index(row)
        if i is not None:
            return float(self.goal.similarity[i])
        if not self._in_leaf(row):
            return 0.0
        goal = self.goal
        return float(self._similarity(goal.original_row, np.array([row], dtype=np.int64), goal.weights)[0])

    def broken_constraint(self, row: int) -> Constraint | None:
        """The first constraint `row` breaks, or None."""
        if self._goal_index(row) is not None:
            return None
        if not self._in_leaf(row):
            return self.goal.constraints[0]
        one = np.array([row], dtype=np.int64)
        return next((c for c in self.goal.constraints if not self._constraint_mask(c, one)[0]), None)

    def is_valid(self, row: int | None) -> bool:
        if row is None or row == self.goal.original_row:
            return False
        return self.broken_constraint(row) is None and self.world.in_stock(row)

    # ------------------------------------------------------------------ world events
    def _stockout_victim(self, shown_ids: list[str]) -> int | None:
        """The most similar valid product this search showed, once it showed two or more
        (so a valid one is left), not already scheduled; ties to the lowest row."""
        valid = [row for row in (self.world.row(i) for i in shown_ids) if self.is_valid(row)]
        valid = [r for r in dict.fromkeys(valid) if all(r != s for _, s in self.world.scheduled_stockouts)]
        if len(valid) < 2:
            return None
        return min(valid, key=lambda r: (-self.similarity_of(r), r))

    # ------------------------------------------------------------------ shopper reactions
    def _mentioned(self, message: str) -> list[int]:
        """Rows of the product ids (seen ones and the original) named in `message`, in order."""
        candidates = set(self.seen_ids) | {self.goal.original_id}
        found = []
        for pid in candidates:
            pos = message.find(pid)
            if pos >= 0 and self.world.row(pid) is not None:
                found.append((pos, pid))
        found.sort()
        return [self.world.row(pid) for _, pid in found[:MAX_MENTIONS]]

    def _react(self, message: str, turn: int, had_tools: bool) -> Utterance | None:
        sh, goal = self.shopper, self.goal
        rows = self._mentioned(message)
        if not rows:
            if "?" in message and not had_tools:  # a question in text, answered like ask_user
                return sh.answer(message, turn)
            return None
        if goal.original_row in rows:
            return sh.say(sh.choose(ORIGINAL_AGAIN), "original")
        for row in rows:
            c = self.broken_constraint(row)
            if c is not None:
                sh.reveal(c.name)
                return sh.say(f"{sh.choose(UNSUITABLE)} {sh.slots[c.name].reply}", "correction", (c.name,))
            if not self.world.in_stock(row):
                return sh.say(sh.choose(SOLD_OUT_TOO), "sold_out")
        return sh.say(sh.choose(CONFIRM_ONE if len(rows) == 1 else CONFIRM_MANY), "confirm")

    def _switch_goal(self, rng: np.random.Generator) -> Utterance | None:
        """The shopper changes its mind (journeys): a higher budget. Only relaxes, so every
        valid alternative stays valid."""
        goal = self.goal
        relaxed = relax_price_cap(goal.constraints, rng)
        if relaxed is None:
            return None
        _, new = relaxed
        goal.rows = goal.similarity = None  # listed again on next use
        goal.version += 1
        self.replan_turns += 1  # the oracle searches again with the new constraint
        slot = new.slot()
        self.shopper.restate(slot)
        return self.shopper.say(budget_switch_text(slot), "switch", (new.name,))

    # ------------------------------------------------------------------ verifier
    def _score(self, answer: Answer | None) -> TaskScore:
        goal = self.goal
        ideal, n_ideal = self._ideal(goal.k)
        details: dict = {"k": goal.k, "n_ideal": n_ideal, "original_id": goal.original_id}
        ids = list(dict.fromkeys(answer.recommended_product_ids or [])) if answer is not None else []
        if not ids:
            return TaskScore(-1.0, False, details | {"ndcg": 0.0, "share_valid": 0.0, "n_recommended": 0})
        rows = [self.world.row(i) for i in ids]
        valid = [self.is_valid(r) for r in rows]
        original = goal.original_row in rows
        n_invalid_other = sum(1 for r, v in zip(rows, valid) if not v and r != goal.original_row)

        def gain(row: int) -> float:
            return GAIN_FLOOR + self.similarity_of(row)

        dcg = sum(gain(r) / math.log2(i + 2) for i, (r, v) in enumerate(zip(rows[: goal.k], valid)) if v)
        idcg = sum(gain(r) / math.log2(i + 2) for i, r in enumerate(ideal[: goal.k]))
        ndcg = dcg / idcg if idcg > 0 else 0.0
        share = sum(valid) / len(ids)
        extra = max(0, len(ids) - goal.k)  # every id counts: ids past the k asked for are wrong
        r_task = clip(2 * (W_NDCG * ndcg + W_SHARE * share) - 1
                      - PENALTY_ORIGINAL * original - PENALTY_INVALID * n_invalid_other / len(ids)
                      - 2 * extra / len(ids))
        top_searched = ids[0] in self.searched_ids
        correct = (valid[0] and top_searched and all(valid) and min(goal.k, n_ideal) <= len(ids) <= goal.k)
        details |= {
            "ndcg": ndcg,
            "share_valid": share,
            "n_recommended": len(ids),
            "n_valid": sum(valid),
            "original_recommended": original,
            "n_unknown": sum(r is None for r in rows),
            "n_incompatible": sum(1 for r in rows if r is not None and self.broken_constraint(r) is not None),
            "n_out_of_stock": sum(1 for r in rows if r is not None and not self.world.in_stock(r)),
            "top_valid": valid[0],
            "top_searched": top_searched,
        }
        return TaskScore(float(r_task), bool(correct), details)
