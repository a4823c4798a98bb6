"""Shopper constraints over products: how they are said, checked one row at a time, and
checked for the whole catalog at once (vectorised, for exact evaluation pools).

A `Constraint` is one requirement (leaf category, price cap, brand, attribute value,
minimum rating, maximum shipping days). `Constraint.slot()` gives the shopper's words for
it; `holds()` checks one row; `mask()` checks every row with numpy over catalog columns;
`to_filters()` turns a list into `SearchFilters` for `catalog_search`. `compatible_rows()`
gives exactly the rows `mask()` selects without scanning the catalog: it starts from the
smallest precomputed per-leaf list the constraints allow (the leaf, its rows under the price
cap, its brand / attribute postings) and filters that with `Constraint.mask_rows`.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np

from .catalog import ATTRIBUTE_COLUMNS, CatalogLike, SearchFilters
from .shopper import Slot, article, count_noun, plural

Kind = Literal["category", "price_max", "brand", "attribute", "rating_min", "ship_days_max"]

ATTRIBUTE_WORDS: dict[str, tuple[str, tuple[str, ...]]] = {
    # attribute -> (phrase template, question keywords)
    "color": ("in {v}", ("color", "colour")),
    "size": ("in size {v}", ("size", "fit")),
    "material": ("made of {v}", ("material", "made of")),
    "connector_type": ("with {a} {v} connector", ("connector", "port", "plug", "cable")),
    "wattage": ("rated {v}", ("watt", "power")),
    "capacity": ("with {v} capacity", ("capacity", "storage", "volume", "how big")),
    "screen_size": ("with {a} {v} screen", ("screen", "display")),
    "scent": ("in the {v} scent", ("scent", "smell", "fragrance")),
    "flavor": ("in the {v} flavor", ("flavor", "flavour", "taste")),
    "age_range": ("for ages {v}", ("age", "old")),
}

# attribute -> what the shopper says while the value is still unsaid (holds a question keyword)
ATTRIBUTE_HINTS: dict[str, str] = {
    "color": "in a particular color",
    "size": "in a particular size",
    "material": "in a particular material",
    "connector_type": "with a particular connector",
    "wattage": "with a particular power rating",
    "capacity": "with a particular capacity",
    "screen_size": "with a particular screen size",
    "scent": "with a particular scent",
    "flavor": "in a particular flavor",
    "age_range": "for a particular age",
}
KIND_HINTS: dict[str, str] = {
    "price_max": "within a budget I have in mind",
    "brand": "from a brand I like",
    "rating_min": "with good enough ratings",
    "ship_days_max": "that ships quickly enough",
}


def attribute_phrase(attribute: str, value: str) -> str:
    """How a shopper says an attribute value: 'in Black', 'made of Denim', 'with a USB-C
    connector', 'in the Unscented scent' (articles from `inflect`)."""
    template = ATTRIBUTE_WORDS.get(attribute, ("in {v}", ()))[0]
    return template.format(v=value, a=article(str(value)))


@dataclass(frozen=True)
class Constraint:
    kind: Kind
    value: str | float | int
    attribute: str | None = None

    @property
    def name(self) -> str:
        return f"attr:{self.attribute}" if self.kind == "attribute" else self.kind

    def slot(self) -> Slot:
        v = self.value
        if self.kind == "category":
            return Slot(self.name, plural(str(v)), f"I'm looking for {plural(str(v))}.", ("category", "type of"))
        if self.kind == "price_max":
            p = f"${v:,.2f}".replace(".00", "")
            return Slot(self.name, f"under {p}", f"My budget is {p} at most.",
                        ("price", "budget", "cost", "spend", "$", "expensive", "cheap"), KIND_HINTS[self.kind])
        if self.kind == "brand":
            return Slot(self.name, f"from {v}", f"I'd like it from {v}.", ("brand", "make", "manufacturer"),
                        KIND_HINTS[self.kind])
        if self.kind == "rating_min":
            return Slot(self.name, f"rated at least {v:.1f} stars", f"It should be rated at least {v:.1f} stars.",
                        ("rating", "stars", "review"), KIND_HINTS[self.kind])
        if self.kind == "ship_days_max":
            days = count_noun(int(v), "day")
            return Slot(self.name, f"shipping within {days}", f"It has to ship within {days}.",
                        ("ship", "deliver", "arrive", "fast", "quick"), KIND_HINTS[self.kind])
        keywords = ATTRIBUTE_WORDS[self.attribute][1]
        phrase = attribute_phrase(self.attribute, str(v))
        return Slot(self.name, phrase, f"I want it {phrase}.", keywords, ATTRIBUTE_HINTS[self.attribute])

    def holds(self, catalog: CatalogLike, row: int) -> bool:
        if self.kind == "category":
            return catalog.value("category_l3", row) == self.value
        if self.kind == "price_max":
            return _cents(float(catalog.numeric("price")[row])) <= _cents(float(self.value))
        if self.kind == "brand":
            return catalog.value("brand", row) == self.value
        if self.kind == "rating_min":
            return float(catalog.numeric("rating")[row]) >= float(self.value) - 1e-6
        if self.kind == "ship_days_max":
            return int(catalog.numeric("ship_days")[row]) <= int(self.value)
        return catalog.value(self.attribute, row) == self.value

    @property
    def column(self) -> str:
        """The catalog column the constraint reads (codes for the categorical ones)."""
        return {"category": "category_l3", "brand": "brand", "price_max": "price", "rating_min": "rating",
                "ship_days_max": "ship_days"}.get(self.kind) or str(self.attribute)

    def mask_values(self, catalog: CatalogLike, values: np.ndarray) -> np.ndarray:
        """Whether each value of the constraint's `column` (codes for a categorical column,
        taken at any rows) meets it: the one implementation of the arithmetic `holds` states."""
        if self.kind in ("category", "brand", "attribute"):
            code = code_of(catalog, self.column, self.value)
            return np.zeros(len(values), dtype=bool) if code is None else values == code
        if self.kind == "price_max":
            return np.round(values * 100) <= _cents(float(self.value))
        if self.kind == "rating_min":
            return values >= float(self.value) - 1e-6
        return values <= int(self.value)

    def _values(self, catalog: CatalogLike) -> np.ndarray:
        column = self.column
        return catalog.codes(column)[0] if self.kind in ("category", "brand", "attribute") else catalog.numeric(column)

    def mask(self, catalog: CatalogLike) -> np.ndarray:
        return self.mask_values(catalog, self._values(catalog))

    def mask_rows(self, catalog: CatalogLike, rows: np.ndarray) -> np.ndarray:
        """`mask(catalog)[rows]`, computed on `rows` only (the same arithmetic per row)."""
        return self.mask_values(catalog, self._values(catalog)[rows])


_CODE_INDEX: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # catalog -> column -> value -> code


def code_of(catalog: CatalogLike, column: str, value: str) -> int | None:
    """The dictionary code of `value` in a categorical column, or None (cached per catalog)."""
    try:
        per_catalog = _CODE_INDEX.setdefault(catalog, {})
    except TypeError:  # a catalog that cannot be weakly referenced: no cache
        per_catalog = {}
    index = per_catalog.get(column)
    if index is None:
        index = {}
        for i, v in enumerate(catalog.codes(column)[1]):
            index.setdefault(v, i)
        per_catalog[column] = index
    return index.get(value)


def _cents(x: float) -> int:
    return int(round(x * 100))


def mask(catalog: CatalogLike, constraints: Sequence[Constraint]) -> np.ndarray:
    """Rows satisfying every constraint (category first, so later masks stay cheap)."""
    out = np.ones(len(catalog), dtype=bool)
    for c in constraints:
        out &= c.mask(catalog)
    return out


def _smallest_candidates(catalog: CatalogLike, constraints: Sequence[Constraint]):
    """(rows in any order, the constraint they come from) for the smallest precomputed
    list the constraints allow: the leaf's rows, its rows within the price cap (in price
    order) or its posting for a brand / attribute constraint. Needs a category constraint."""
    leaf = next(c for c in constraints if c.kind == "category")
    name = str(leaf.value)
    best, source = catalog.category_rows(name), leaf
    for c in constraints:
        if c.kind in ("brand", "attribute") and len(best):
            column = "brand" if c.kind == "brand" else c.attribute
            rows = catalog.category_postings(name, column, str(c.value))
            if len(rows) < len(best):
                best, source = rows, c
        elif c.kind == "price_max" and len(best):
            by_price, cents = catalog.category_rows_by_price(name)
            end = int(np.searchsorted(cents, _cents(float(c.value)), side="right"))
            if end < len(best):
                best, source = by_price[:end], c
    return best, source


def _filter(catalog: CatalogLike, constraints: Sequence[Constraint], source: Constraint, rows: np.ndarray,
            leaf_start: int | None = None) -> np.ndarray:
    """`rows` meeting the constraints a candidate list from `source` does not guarantee.
    (Leaf lists hold the rows whose leaf is that category, so the category constraint holds
    for every candidate: category values are unique in a catalog's dictionary.) With
    `leaf_start`, `rows` are ``category_rows(leaf)[leaf_start:leaf_start + len(rows)]`` and
    the constraints read the leaf's compact per-leaf columns over the same span (contiguous
    reads) instead of gathering from the full columns."""
    if leaf_start is not None and len(rows):
        leaf, end = str(source.value), leaf_start + len(rows)
        keep = np.ones(len(rows), dtype=bool)
        for c in constraints:
            if c.kind != "category":
                keep &= c.mask_values(catalog, catalog.category_column(leaf, c.column)[leaf_start:end])
        return rows[keep]
    for c in constraints:
        if not len(rows):
            break
        if c is not source and c.kind != "category":
            rows = rows[c.mask_rows(catalog, rows)]
    return rows


def compatible_rows(catalog: CatalogLike, constraints: Sequence[Constraint]) -> np.ndarray:
    """``np.flatnonzero(mask(catalog, constraints))`` as int64, without a catalog scan when
    a category constraint is present: O(size of the smallest candidate list + log). The
    candidates are the leaf's rows, its rows priced within a price cap and its postings
    for each brand / attribute constraint; the smallest is filtered by the constraints it
    does not already guarantee."""
    if not any(c.kind == "category" for c in constraints):
        return np.flatnonzero(mask(catalog, constraints)).astype(np.int64)
    best, source = _smallest_candidates(catalog, constraints)
    rows = np.asarray(best, dtype=np.int64)
    if source.kind == "category":  # the whole leaf
        return _filter(catalog, constraints, source, rows, leaf_start=0)
    if source.kind == "price_max":  # price order -> row order
        leaf = str(next(c for c in constraints if c.kind == "category").value)
        leaf_rows = catalog.category_rows(leaf)
        # many rows: mark their places in the leaf (O(leaf)) rather than sort them (O(n log n))
        places = catalog.category_positions(leaf, rows) if len(rows) * len(rows).bit_length() > len(leaf_rows) else None
        if places is None:
            rows = np.sort(rows)
        else:
            keep = np.zeros(len(leaf_rows), dtype=bool)
            keep[places] = True
            rows = np.asarray(leaf_rows[keep], dtype=np.int64)
    return _filter(catalog, constraints, source, rows)


def count_compatible(catalog: CatalogLike, constraints: Sequence[Constraint], limit: int,
                     keep: Callable[[np.ndarray], np.ndarray] | None = None) -> int:
    """``min(limit, number of rows meeting every constraint and `keep`)``, where `keep`
    maps rows (any order) to a boolean mask (e.g. the episode's stock). Walks the smallest
    candidate list in growing chunks and stops once `limit` rows are found."""
    if not any(c.kind == "category" for c in constraints):
        rows = compatible_rows(catalog, constraints)
        return min(limit, int(keep(rows).sum()) if keep is not None else len(rows))
    best, source = _smallest_candidates(catalog, constraints)
    found, start, size = 0, 0, 64
    while start < len(best) and found < limit:
        rows = _filter(catalog, constraints, source, np.asarray(best[start : start + size], dtype=np.int64),
                       leaf_start=start if source.kind == "category" else None)
        found += int(keep(rows).sum()) if keep is not None else len(rows)
        start, size = start + size, size * 4
    return min(found, limit)


def satisfied(catalog: CatalogLike, row: int, constraints: Sequence[Constraint]) -> int:
    """How many of `constraints` row `row` satisfies."""
    return sum(c.holds(catalog, row) for c in constraints)


def to_filters(constraints: Sequence[Constraint], in_stock: bool = True) -> SearchFilters:
    f: dict = {"in_stock": in_stock or None}
    attrs: dict[str, str] = {}
    for c in constraints:
        if c.kind == "category":
            continue  # categories go in the query text; leaf names are not path prefixes
        if c.kind == "price_max":
            f["price_max"] = float(c.value)
        elif c.kind == "brand":
            f["brand"] = str(c.value)
        elif c.kind == "rating_min":
            f["rating_min"] = float(c.value)
        elif c.kind == "ship_days_max":
            f["ship_days_max"] = int(c.value)
        else:
            attrs[c.attribute] = str(c.value)
    if attrs:
        f["attributes"] = attrs
    return SearchFilters(**f)


def relax_price_cap(constraints: list[Constraint], rng: np.random.Generator) -> tuple[int, Constraint] | None:
    """Raise the price cap in place (a shopper changing its mind: only loosens, so every
    valid product stays valid). Returns (index, new constraint), or None without a cap."""
    for i, c in enumerate(constraints):
        if c.kind == "price_max":
            constraints[i] = Constraint("price_max", nice_price_cap(float(c.value), rng))
            return i, constraints[i]
    return None


def budget_switch_text(slot: Slot) -> str:
    return f"Actually, I changed my mind about the budget: anything {slot.phrase} is fine."


def nice_price_cap(price: float, rng: np.random.Generator) -> float:
    """A round budget a shopper would say, at or above `price` (10-60% headroom)."""
    target = price * (1.1 + 0.5 * rng.random())
    step = 5 if target < 100 else 25 if target < 500 else 100
    return float(math.ceil(target / step) * step)


def constraints_for_target(catalog: CatalogLike, row: int, m: int, rng: np.random.Generator) -> list[Constraint]:
    """Up to `m` constraints that product `row` satisfies: its leaf category first, then a
    price cap, then a random mix of its attributes, brand, rating and shipping speed."""
    out = [Constraint("category", catalog.value("category_l3", row))]
    if m >= 2:
        out.append(Constraint("price_max", nice_price_cap(float(catalog.numeric("price")[row]), rng)))
    extra: list[Constraint] = []
    for attr in ATTRIBUTE_COLUMNS:
        v = catalog.value(attr, row)
        if v:
            extra.append(Constraint("attribute", v, attr))
    extra.append(Constraint("brand", catalog.value("brand", row)))
    rating = float(catalog.numeric("rating")[row])
    if rating >= 3.0:
        extra.append(Constraint("rating_min", math.floor(rating * 2) / 2))
    extra.append(Constraint("ship_days_max", int(catalog.numeric("ship_days")[row]) + int(rng.integers(0, 3))))
    order = rng.permutation(len(extra))
    out += [extra[i] for i in order[: max(0, m - len(out))]]
    return out
