"""The catalog contract that environments rely on.

`envs` never imports `catalog_service`; it defines here what a catalog must offer and
`catalog_service.Catalog` implements it. A catalog is read-only and shared by every
episode: environments read rows and columns, never copy the table, and keep all
per-episode changes (stock, variants, cart) in their own overlay (`ecomrlve.envs.world`).
Episode code never scans the whole catalog: per-leaf rows, per-leaf price order and
per-leaf brand / attribute postings and per-leaf in-stock rows (`category_rows`,
`category_rows_by_price`, `category_rows_below`, `category_postings`,
`category_in_stock_rows`, `category_in_stock_by_price`, `category_column`) are precomputed
once per catalog.

Product table columns (pyarrow), see `PRODUCT_COLUMNS`:

- ``product_id`` string, unique
- ``title``, ``description`` string
- ``category_l1``, ``category_l2``, ``category_l3`` string (dictionary encoded); the
  category path is ``"l1 > l2 > l3"``
- ``brand``, ``store`` string (dictionary encoded)
- ``price`` float64 (dollars, 2 decimals), ``rating`` float32 (1..5),
  ``rating_count`` int32, ``ship_days`` int16, ``stock`` int32
- one nullable string column per attribute in `ATTRIBUTE_COLUMNS`
- ``features`` list<string>

Each leaf category has a vocabulary (`CatalogLike.leaf_vocabulary`): for every attribute its
products carry, the values a product of that kind can plausibly take. Anything an environment
invents about a product (its variants) draws from that vocabulary, never from the
catalog-wide value lists.
"""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

ATTRIBUTE_COLUMNS: tuple[str, ...] = (
    "color",
    "size",
    "material",
    "connector_type",
    "wattage",
    "capacity",
    "screen_size",
    "scent",
    "flavor",
    "age_range",
)
CATEGORICAL_COLUMNS: tuple[str, ...] = (
    "category_l1",
    "category_l2",
    "category_l3",
    "brand",
    "store",
) + ATTRIBUTE_COLUMNS
NUMERIC_COLUMNS: tuple[str, ...] = ("price", "rating", "rating_count", "ship_days", "stock")
PRODUCT_COLUMNS: tuple[str, ...] = (
    ("product_id", "title", "description") + CATEGORICAL_COLUMNS + NUMERIC_COLUMNS + ("features",)
)
CATEGORY_SEP = " > "


MAX_PRICE_FILTER = 1_000_000.0  # dollars; bounds keep untrusted filters finite and small


class SearchFilters(BaseModel):
    """Structured filters for `catalog_search`. Every field is optional; all given
    fields must hold (logical AND). String matches are case-insensitive."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    price_min: float | None = Field(None, ge=0, le=MAX_PRICE_FILTER, description="Minimum price in dollars.")
    price_max: float | None = Field(None, ge=0, le=MAX_PRICE_FILTER, description="Maximum price in dollars.")
    brand: str | None = Field(None, max_length=200, description="Exact brand name.")
    category: str | None = Field(
        None,
        max_length=300,
        description="Category path prefix, levels joined by ' > ' (e.g. 'Electronics > Power').",
    )
    rating_min: float | None = Field(None, ge=0, le=5, description="Minimum average rating.")
    ship_days_max: int | None = Field(None, ge=0, le=365, description="Maximum shipping days.")
    in_stock: bool | None = Field(None, description="Only products with stock > 0.")
    attributes: dict[str, str] | None = Field(
        None,
        max_length=32,
        description="Attribute equality, e.g. {'color': 'black', 'connector_type': 'USB-C'}.",
    )


class SearchHits(BaseModel):
    """Ranked search result: row indices into the catalog table, best first, with
    their scores. Ties are broken by ascending row index."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    rows: np.ndarray  # int64
    scores: np.ndarray  # float32


@runtime_checkable
class CatalogLike(Protocol):
    """What an environment needs from a catalog. All methods are read-only."""

    def __len__(self) -> int: ...

    def product_id(self, row: int) -> str:
        """The id of row `row`."""

    def row_of(self, product_id: str) -> int | None:
        """The row of `product_id`, or None when no such product exists."""

    def numeric(self, name: str) -> np.ndarray:
        """A numpy view of a numeric column (cached, never copied per call)."""

    def codes(self, name: str) -> tuple[np.ndarray, Sequence[str]]:
        """A categorical column as (int32 codes, values); code -1 means null."""

    def value(self, name: str, row: int):
        """One cell as a Python value (None for null)."""

    def product(self, row: int) -> dict:
        """The whole product as a JSON-serialisable dict of `PRODUCT_COLUMNS`."""

    def category_rows(self, category_l3: str) -> np.ndarray:
        """Rows whose leaf category is `category_l3`, ascending int64 (precomputed: O(1),
        never a scan of the catalog)."""

    def category_rows_by_price(self, category_l3: str) -> tuple[np.ndarray, np.ndarray]:
        """The rows of leaf `category_l3` ordered by (price in integer cents, row), and
        their prices in cents (``round(price * 100)``, int64); read-only, O(1)."""

    def category_rows_below(self, category_l3: str, max_cents: int) -> np.ndarray:
        """Rows of leaf `category_l3` with ``round(price * 100) <= max_cents``, ascending
        int64; O(log leaf + result)."""

    def category_in_stock_rows(self, category_l3: str) -> np.ndarray:
        """Rows of leaf `category_l3` with catalog stock > 0, ascending; read-only, O(1)
        (callers apply their episode's stock overlay)."""

    def category_in_stock_by_price(self, category_l3: str) -> tuple[np.ndarray, np.ndarray]:
        """Rows of leaf `category_l3` with catalog stock > 0 ordered by (price in cents,
        row), and their cents; read-only, O(1) (no stock overlay applied)."""

    def category_column(self, category_l3: str, name: str) -> np.ndarray:
        """Column `name` (price, rating, ship_days, rating_count, or the codes of brand / an
        attribute) for `category_rows(category_l3)`, aligned with it; a read-only slice of a
        compact per-leaf block, O(1)."""

    def category_positions(self, category_l3: str, rows: np.ndarray) -> np.ndarray | None:
        """Where each of `rows` sits in `category_rows(category_l3)` (aligned with
        `category_column`), or None when some row is not of that leaf; O(len(rows))."""

    def category_postings(self, category_l3: str, column: str, value: str) -> np.ndarray:
        """Rows of leaf `category_l3` whose categorical `column` (``brand`` or an attribute
        column) equals `value` exactly, ascending int64; O(log + result)."""

    def leaf_vocabulary(self, category_l3: str) -> Mapping[str, tuple[str, ...]]:
        """The leaf's vocabulary: attribute column -> the distinct values a product of leaf
        `category_l3` can take, most common first; attributes the leaf lacks are absent.
        Deterministic in the catalog's contents and cached; empty for an unknown leaf."""

    def search(
        self, query: str, filters: SearchFilters | None = None, top_k: int = 10
    ) -> SearchHits:
        """Lexical (optionally hybrid) ranking of products for `query`, restricted by
        `filters`, at most `top_k` hits, deterministic."""
