"""Structured search filters, evaluated without touching strings per row.

Contract (shared by `filter_mask`, `CompiledFilters.mask_rows` and `row_matches`; a
property test checks that they agree):

- ``price_min`` / ``price_max``: ``price_min <= price <= price_max`` (float64 dollars).
- ``rating_min``: ``rating >= rating_min``, compared in float32 (the column's dtype), so a
  product rated 4.1 passes ``rating_min=4.1``.
- ``ship_days_max``: ``ship_days <= ship_days_max``.
- ``in_stock``: ``True`` keeps products with ``stock > 0``; ``False`` or ``None`` adds no
  constraint (the filter is an "only in stock" switch, not "only out of stock").
- ``brand``: case-insensitive exact match (both sides stripped and case-folded).
- ``category``: case-insensitive *level-wise* prefix of the path ``"l1 > l2 > l3"``: the
  filter is split on ``">"``, each level stripped, and level ``i`` of the filter must equal
  level ``i`` of the product's path. ``"electronics>power"`` matches every product under
  ``Electronics > Power``; a partial level (``"Electronics > Pow"``) matches nothing. An
  empty filter string adds no constraint.
- ``attributes``: for each ``name: value``, the attribute column ``name`` (one of
  `ecomrlve.envs.catalog.ATTRIBUTE_COLUMNS`) must equal ``value`` case-insensitively; nulls never
  match. An unknown attribute name raises ``ValueError`` naming it.
- All given fields must hold (logical AND). A null categorical cell never matches.

Categorical filters are resolved once against the column's distinct values (a small list)
into a boolean lookup table indexed by code; evaluating a filter is then a gather over the
int32 code column. Lookup tables carry one extra trailing ``False`` so that code ``-1``
(null) indexes it.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ecomrlve.envs.catalog import ATTRIBUTE_COLUMNS, CATEGORY_SEP, SearchFilters

__all__ = [
    "CompiledFilters",
    "compile_filters",
    "filter_mask",
    "row_matches",
    "normalize_text",
    "category_levels",
]

_CATEGORY_COLUMNS = ("category_l1", "category_l2", "category_l3")


def normalize_text(value: str) -> str:
    """The form in which filter strings and catalog values are compared."""
    return " ".join(str(value).split()).casefold()


def category_levels(category: str) -> list[str]:
    """Split a category filter into normalised levels (``"A > b"`` -> ``["a", "b"]``).

    ``""`` (or only whitespace) gives ``[]``, meaning no constraint."""
    if not category.strip():
        return []
    return [normalize_text(level) for level in category.split(">")]


def _as_str_list(values: Sequence) -> list:
    """A categorical column's distinct values as a list of Python str / None."""
    if hasattr(values, "to_pylist"):
        return values.to_pylist()
    return list(values)


def _check_attribute_names(filters: SearchFilters) -> None:
    for name in filters.attributes or {}:
        if name not in ATTRIBUTE_COLUMNS:
            raise ValueError(
                f"unknown attribute {name!r} in filters.attributes; "
                f"known attributes: {', '.join(ATTRIBUTE_COLUMNS)}"
            )


@dataclass(frozen=True)
class _NumericPredicate:
    column: str
    values: np.ndarray
    lo: float | None  # inclusive
    hi: float | None  # inclusive
    strict_lo: bool = False  # lo is exclusive (used for stock > 0)

    def evaluate(self, values: np.ndarray) -> np.ndarray:
        ok = np.ones(values.shape, dtype=bool)
        if self.lo is not None:
            ok &= (values > self.lo) if self.strict_lo else (values >= self.lo)
        if self.hi is not None:
            ok &= values <= self.hi
        return ok


@dataclass(frozen=True)
class _CodePredicate:
    column: str
    codes: np.ndarray  # int32, -1 = null
    allowed: np.ndarray  # bool, len(values) + 1, last entry False (for code -1)

    def evaluate(self, codes: np.ndarray) -> np.ndarray:
        allowed_codes = np.flatnonzero(self.allowed[:-1])
        if allowed_codes.size == 1:  # the usual case: a compare beats a gather
            return codes == allowed_codes[0]
        return self.allowed[codes]


@dataclass(frozen=True)
class CompiledFilters:
    """`SearchFilters` resolved against one catalog: numeric ranges and code lookup tables.

    ``empty`` is True when the filters provably match nothing (a brand no product has);
    predicates are then irrelevant. ``is_trivial`` is True when nothing is constrained."""

    n_rows: int
    numeric: tuple[_NumericPredicate, ...] = ()
    categorical: tuple[_CodePredicate, ...] = ()
    empty: bool = False

    @property
    def is_trivial(self) -> bool:
        return not self.empty and not self.numeric and not self.categorical

    def mask(self) -> np.ndarray | None:
        """Boolean mask over all rows, or None when nothing is constrained."""
        if self.is_trivial:
            return None
        out = np.zeros(self.n_rows, dtype=bool)
        out[self.rows()] = True
        return out

    def rows(self) -> np.ndarray:
        """The matching rows, ascending (int64). The first predicate (a categorical one when
        there is one: usually the most selective) scans every row; the others only check
        the rows still in."""
        if self.empty:
            return np.zeros(0, dtype=np.int64)
        preds = list(self.categorical) + list(self.numeric)
        if not preds:
            return np.arange(self.n_rows, dtype=np.int64)
        first, rest = preds[0], preds[1:]
        column = first.codes if isinstance(first, _CodePredicate) else first.values
        rows = np.flatnonzero(first.evaluate(column))
        for pred in rest:
            if not rows.size:
                break
            column = pred.codes if isinstance(pred, _CodePredicate) else pred.values
            rows = rows[pred.evaluate(column[rows])]
        return rows

    def mask_rows(self, rows: np.ndarray) -> np.ndarray:
        """Boolean mask over `rows` (any order, any length): which of them match."""
        rows = np.asarray(rows)
        if self.is_trivial:
            return np.ones(rows.shape, dtype=bool)
        if self.empty:
            return np.zeros(rows.shape, dtype=bool)
        out = np.ones(rows.shape, dtype=bool)
        for pred in self.categorical:
            out &= pred.evaluate(pred.codes[rows])
        for pred in self.numeric:
            out &= pred.evaluate(pred.values[rows])
        return out

    def matches(self, row: int) -> bool:
        """Whether one row matches (same predicates as `mask`)."""
        return bool(self.mask_rows(np.array([row]))[0])


def _value_index(values: list) -> dict[str, list[int]]:
    """normalize(value) -> the codes holding it."""
    index: dict[str, list[int]] = {}
    for code, value in enumerate(values):
        if value is not None:
            index.setdefault(normalize_text(value), []).append(code)
    return index


# catalog -> {column: (the values object it came from, its _value_index)}; catalogs are
# read-only, so this is computed once per column (catalogs that cannot be weakly
# referenced are simply not cached)
_VALUE_INDEX: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_VALUE_INDEX_LOCK = threading.Lock()


def _codes_and_index(catalog, column: str) -> tuple[np.ndarray, int, dict[str, list[int]]]:
    """(codes, number of distinct values, normalised value index) of a categorical column."""
    codes, values = catalog.codes(column)
    try:
        per_catalog = _VALUE_INDEX.get(catalog)
    except TypeError:
        per_catalog = None
    cached = per_catalog.get(column) if per_catalog is not None else None
    if cached is not None and cached[0] is values:
        return codes, len(values), cached[1]
    index = _value_index(_as_str_list(values))
    try:
        with _VALUE_INDEX_LOCK:
            _VALUE_INDEX.setdefault(catalog, {})[column] = (values, index)
    except TypeError:
        pass
    return codes, len(values), index


def _lookup_table(n_values: int, index: dict[str, list[int]], wanted: str) -> np.ndarray:
    """allowed[code] = normalize(values[code]) == wanted; trailing False for null."""
    allowed = np.zeros(n_values + 1, dtype=bool)
    allowed[index.get(wanted, [])] = True
    return allowed


def compile_filters(catalog, filters: SearchFilters | None) -> CompiledFilters:
    """Resolve `filters` against `catalog` (a `CatalogLike`).

    Raises ValueError naming the field for an unknown attribute name."""
    n = len(catalog)
    if filters is None:
        return CompiledFilters(n_rows=n)
    _check_attribute_names(filters)
    numeric: list[_NumericPredicate] = []
    categorical: list[_CodePredicate] = []
    empty = False

    if filters.price_min is not None or filters.price_max is not None:
        numeric.append(
            _NumericPredicate("price", catalog.numeric("price"), filters.price_min, filters.price_max)
        )
    if filters.rating_min is not None:
        rating = catalog.numeric("rating")
        lo = np.asarray(filters.rating_min, dtype=rating.dtype if rating.dtype.kind == "f" else np.float64)
        numeric.append(_NumericPredicate("rating", rating, lo[()], None))
    if filters.ship_days_max is not None:
        numeric.append(
            _NumericPredicate("ship_days", catalog.numeric("ship_days"), None, filters.ship_days_max)
        )
    if filters.in_stock:
        numeric.append(_NumericPredicate("stock", catalog.numeric("stock"), 0, None, strict_lo=True))

    def add_equality(column: str, wanted: str) -> None:
        nonlocal empty
        codes, n_values, index = _codes_and_index(catalog, column)
        allowed = _lookup_table(n_values, index, wanted)
        if not allowed.any():
            empty = True
        categorical.append(_CodePredicate(column, codes, allowed))

    if filters.brand is not None:
        add_equality("brand", normalize_text(filters.brand))
    if filters.category is not None:
        levels = category_levels(filters.category)
        if len(levels) > len(_CATEGORY_COLUMNS):
            empty = True
        for column, wanted in zip(_CATEGORY_COLUMNS, levels):
            add_equality(column, wanted)
    for name, value in (filters.attributes or {}).items():
        add_equality(name, normalize_text(value))

    return CompiledFilters(
        n_rows=n, numeric=tuple(numeric), categorical=tuple(categorical), empty=empty
    )


def filter_mask(catalog, filters: SearchFilters | None) -> np.ndarray | None:
    """Boolean mask of the rows of `catalog` matching `filters`, or None when `filters`
    constrains nothing (None, or all fields unset). Vectorised: compares numeric columns
    and int32 category codes, never strings per row."""
    return compile_filters(catalog, filters).mask()


def row_matches(catalog, row: int, filters: SearchFilters | None) -> bool:
    """Whether product `row` matches `filters`, evaluated from Python cell values.

    Independent of `filter_mask` (reads `catalog.value`), and must agree with it."""
    if filters is None:
        return True
    _check_attribute_names(filters)
    f = filters
    if f.price_min is not None or f.price_max is not None:
        price = catalog.value("price", row)
        if price is None:
            return False
        if f.price_min is not None and not price >= f.price_min:
            return False
        if f.price_max is not None and not price <= f.price_max:
            return False
    if f.rating_min is not None:
        rating = catalog.value("rating", row)
        if rating is None or not np.float32(rating) >= np.float32(f.rating_min):
            return False
    if f.ship_days_max is not None:
        ship = catalog.value("ship_days", row)
        if ship is None or not ship <= f.ship_days_max:
            return False
    if f.in_stock:
        stock = catalog.value("stock", row)
        if stock is None or not stock > 0:
            return False

    def equal(column: str, wanted: str) -> bool:
        value = catalog.value(column, row)
        return value is not None and normalize_text(value) == wanted

    if f.brand is not None and not equal("brand", normalize_text(f.brand)):
        return False
    if f.category is not None:
        levels = category_levels(f.category)
        if len(levels) > len(_CATEGORY_COLUMNS):
            return False
        for column, wanted in zip(_CATEGORY_COLUMNS, levels):
            if not equal(column, wanted):
                return False
    for name, value in (f.attributes or {}).items():
        if not equal(name, normalize_text(value)):
            return False
    return True


def category_path(catalog, row: int) -> str:
    """The product's category path ``"l1 > l2 > l3"`` (null levels left out)."""
    levels = [catalog.value(c, row) for c in _CATEGORY_COLUMNS]
    return CATEGORY_SEP.join(level for level in levels if level is not None)
