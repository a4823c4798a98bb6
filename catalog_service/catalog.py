"""`Catalog`: the read-only product table every episode shares.

A `Catalog` wraps one `pyarrow.Table` with `PRODUCT_SCHEMA` (the columns documented in
`ecomrlve.envs.catalog`) and implements `ecomrlve.envs.catalog.CatalogLike`. The table is never copied per
episode; column views (`numeric`, `codes`, `category_rows`) are built once, cached, and
returned read-only. Environments keep per-episode changes (stock, carts) in their own
overlay.

Constructors:

- `Catalog.synthetic(n_products, seed)`: `ecomrlve.catalog_service.synthetic.generate_products`.
- `Catalog.from_table(table)`: validates and normalises any table with our columns
  (categoricals may be plain strings; numbers are cast when lossless). A missing or
  mistyped column raises ``ValueError`` naming it.
- `Catalog.from_parquet(path)`: a parquet file in our schema.
- `Catalog.from_amazebay(path)`: the public Amazebay-catalog-2M parquet schema, see
  `ecomrlve.catalog_service.loaders`; the skip report is kept at `catalog.load_report`.
- `Catalog.load(directory)`: memory-maps ``products.arrow`` written by `Catalog.save`
  (near-zero resident memory; pages are shared between processes), the saved row lookups
  (`ecomrlve.catalog_service.lookups`) and attaches a saved search index when
  `ecomrlve.catalog_service.search` can load one.

Row lookups (`lookups()`: per-leaf rows, per-leaf price order, brand / attribute postings
per leaf) answer `category_rows`, `category_rows_by_price` and `category_postings` without
touching other rows; they are built once per catalog (lazily in memory, or at `save` and
memory-mapped at `load`), never per episode.

Leaf vocabularies (`leaf_vocabulary`) are derived from the table itself, the same way for
every source, so a catalog and its saved-and-loaded copy give identical episodes: a leaf's
values per attribute are the values its products carry, most common first (ties by value).
A leaf whose products show no choice at all (no attribute with two or more values: too few
products, or attributes missing) falls back to its parent category (same ``l1 > l2``): the
parent's values for the attributes the leaf carries, or every parent attribute when the leaf
carries none. For a synthetic catalog this is the taxonomy leaf's own value pool (restricted
to the values drawn).

Search is delegated to `ecomrlve.catalog_service.search` (built lazily on the first `search`).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Callable, Mapping

import numpy as np
from pydantic import AfterValidator
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ecomrlve.catalog_service.lookups import POSTING_COLUMNS, RowLookups, build_lookups, load_lookups, save_lookups
from ecomrlve.envs.catalog import (
    ATTRIBUTE_COLUMNS,
    CATEGORICAL_COLUMNS,
    CATEGORY_SEP,
    NUMERIC_COLUMNS,
    PRODUCT_COLUMNS,
    SearchFilters,
    SearchHits,
)

from .schema import NUMERIC_DTYPES, PRODUCT_SCHEMA, TEXT_COLUMNS, normalize_table, unify_dictionary

__all__ = [
    "Catalog",
    "SCHEMA_VERSION",
    "coerce_filters",
    "check_catalog_dir",
    "CatalogDir",
]

SCHEMA_VERSION = 1
TABLE_FILE = "products.arrow"
MANIFEST_FILE = "manifest.json"
def check_catalog_dir(directory: str | None) -> str | None:
    """`directory` unchanged when it is None or a built catalog directory (it holds a
    manifest); else ValueError saying what is there and how to build one."""
    if directory is None:
        return None
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise ValueError(f"no catalog directory at {directory} (build one with `ecomrlve catalog build --out DIR`)")
    if not (path / MANIFEST_FILE).is_file():
        raise ValueError(f"{directory} is not a catalog directory (no {MANIFEST_FILE})")
    return directory


# a config field naming a built catalog directory, or None (a synthetic catalog)
CatalogDir = Annotated[str | None, AfterValidator(check_catalog_dir)]
MIN_CHOICE = 2  # values an attribute needs in a leaf before the leaf counts as showing a choice


def coerce_filters(filters: SearchFilters | Mapping[str, Any] | None) -> SearchFilters | None:
    """`filters` as a `SearchFilters` (a dict is validated; pydantic's ValidationError, a
    ValueError, names the bad field), or None."""
    if filters is None or isinstance(filters, SearchFilters):
        return filters
    if isinstance(filters, Mapping):
        return SearchFilters.model_validate(dict(filters))
    raise TypeError(f"filters must be SearchFilters, a dict or None, got {type(filters).__name__}")


def _indices_as_codes(indices: pa.Array) -> np.ndarray:
    """Int32 codes (-1 for null) of a dictionary chunk's indices. Zero-copy (a view of the
    Arrow buffer, e.g. of a memory-mapped file, so pages are shared between processes)
    when there are no nulls or every null slot already stores -1, as the synthetic
    generator writes them; otherwise one copy."""
    if indices.type != pa.int32():
        indices = indices.cast(pa.int32())
    if len(indices) == 0:
        return np.empty(0, dtype=np.int32)
    data = indices.buffers()[1]
    raw = np.frombuffer(data, dtype=np.int32, count=len(indices) + indices.offset)[indices.offset :]
    if indices.null_count == 0:
        return raw
    valid = indices.is_valid().to_numpy(zero_copy_only=False)
    if np.all(raw[~valid] == -1):
        return raw
    return pc.fill_null(indices, -1).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)


def _text_reader(col: pa.ChunkedArray) -> Callable[[int], str] | None:
    """``row -> str`` for a column of one chunk of strings without nulls: the cell is the
    slice of the UTF-8 data buffer between two offsets (zero-copy on a memory-mapped table;
    about a tenth of an arrow scalar's cost). None for any other column."""
    if col.num_chunks != 1:
        return None
    arr = col.chunk(0)
    large = pa.types.is_large_string(arr.type)
    if arr.null_count or not (large or pa.types.is_string(arr.type)):
        return None
    _, offsets, data = arr.buffers()
    if data is None:  # every cell is empty
        return lambda row: ""
    ends = np.frombuffer(offsets, dtype=np.int64 if large else np.int32)[arr.offset:arr.offset + len(arr) + 1]
    view = memoryview(data)
    return lambda row: str(view[ends[row]:ends[row + 1]], "utf-8")


def _readonly(array: np.ndarray) -> np.ndarray:
    if array.flags.writeable:
        array.flags.writeable = False
    return array


# --------------------------------------------------------------------------- the catalog


class Catalog:
    """A read-only product catalog over one pyarrow Table (see module doc).

    Row indices are 0-based positions in `table`. All accessors raise IndexError for a
    row outside ``[0, len(catalog))`` and KeyError for an unknown column name."""

    def __init__(
        self,
        table: pa.Table,
        *,
        source: str = "table",
        seed: int | None = None,
        validate: bool = True,
        sequential_ids: bool | None = None,
    ) -> None:
        """Wrap `table`. With `validate` (the default) the table goes through
        `normalize_table`; pass ``validate=False`` only for tables already in
        `PRODUCT_SCHEMA` with unique ids. `sequential_ids=True` promises that row ``i``
        has id ``"p%07d" % i`` (checked lazily when None)."""
        self._table = normalize_table(table) if validate else table
        self.source = source
        self.seed = seed
        self.load_report = None  # a loaders.LoadReport for Amazebay catalogs
        self._n = self._table.num_rows
        self._sequential = sequential_ids
        self._id_width = max(7, len(str(max(self._n - 1, 0))))  # synthetic ids: "p" + this many digits
        self._lock = threading.RLock()
        self._numeric: dict[str, np.ndarray] = {}
        self._codes: dict[str, tuple[np.ndarray, tuple[str, ...]]] = {}
        self._chunk_starts: dict[str, np.ndarray] = {}
        self._text_readers: dict[str, Callable[[int], str] | None] = {}
        self._positions: np.ndarray | None = None  # `_leaf_positions`, derived on first use
        self._category_index: dict[str, int] | None = None
        self._first_codes: dict[str, dict[str, int]] = {}
        self._lookups: RowLookups | None = None
        self._id_to_row: dict[str, int] | None = None
        self._vocabularies: dict[str, MappingProxyType] = {}
        self._searcher = None

    # ----------------------------------------------------------------- constructors

    @classmethod
    def synthetic(cls, n_products: int = 10_000, seed: int = 0) -> "Catalog":
        """A deterministic synthetic catalog (`synthetic.generate_products`)."""
        from ecomrlve.catalog_service.synthetic import generate_products

        table = generate_products(n_products, seed)
        return cls(table, source="synthetic", seed=seed, validate=False, sequential_ids=True)

    @classmethod
    def from_table(cls, table: pa.Table, *, source: str = "table") -> "Catalog":
        """Validate and wrap `table` (see `normalize_table`)."""
        return cls(table, source=source)

    @classmethod
    def from_parquet(cls, path: str | os.PathLike) -> "Catalog":
        """A parquet file whose columns follow `PRODUCT_SCHEMA` (categoricals may be
        plain strings)."""
        return cls(pq.read_table(str(path)), source="parquet")

    @classmethod
    def from_amazebay(cls, path: str | os.PathLike, *, batch_size: int = 65_536) -> "Catalog":
        """A catalog from an Amazebay-catalog-2M parquet file; invalid rows are skipped
        and counted in `catalog.load_report` (`loaders.LoadReport`)."""
        from ecomrlve.catalog_service.loaders import load_amazebay

        table, report = load_amazebay(path, batch_size=batch_size)
        catalog = cls(table, source="amazebay", validate=False)
        catalog.load_report = report
        return catalog

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Catalog":
        """Memory-map a catalog written by `save` and attach its saved search index
        (via `ecomrlve.catalog_service.searchers.load_searcher`) when there is one."""
        directory = Path(directory)
        manifest_path = directory / MANIFEST_FILE
        if not manifest_path.is_file():
            raise FileNotFoundError(f"no {MANIFEST_FILE} in {str(directory)!r}")
        manifest = json.loads(manifest_path.read_text())
        version = manifest.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"{manifest_path}: schema_version {version!r}, this code reads {SCHEMA_VERSION}")
        source = pa.memory_map(str(directory / TABLE_FILE), "r")
        table = pa.ipc.open_file(source).read_all()
        if len(table) != manifest.get("n_products"):
            raise ValueError(f"{manifest_path}: n_products {manifest.get('n_products')} != {len(table)} rows")
        same_schema = table.schema.equals(PRODUCT_SCHEMA, check_metadata=False)
        catalog = cls(
            table if same_schema else normalize_table(table, check_unique=False),
            source=manifest.get("source", "table"),
            seed=manifest.get("seed"),
            validate=False,
            sequential_ids=True if manifest.get("sequential_ids") is True else None,
        )
        catalog._lookups = load_lookups(directory, len(table))
        from .searchers import load_searcher

        searcher = load_searcher(catalog, directory)
        if searcher is not None:
            catalog.set_searcher(searcher)
        return catalog

    def save(self, directory: str | os.PathLike, with_index: bool = False) -> Path:
        """Write ``products.arrow`` (uncompressed Arrow IPC file), the row lookups
        (`ecomrlve.catalog_service.lookups`, built first if needed) and ``manifest.json`` to
        `directory` (created if needed); with `with_index`, also the search index (built
        first if needed) via ``searcher.save(directory)``. Returns the directory."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (TABLE_FILE + ".tmp")
        with pa.OSFile(str(tmp), "wb") as sink:
            with pa.ipc.new_file(sink, self._table.schema) as writer:
                writer.write_table(self._table)
        os.replace(tmp, directory / TABLE_FILE)
        save_lookups(self.lookups(), directory)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "n_products": self._n,
            "seed": self.seed,
            "source": self.source,
            "format": "arrow-ipc-file",
            "columns": list(PRODUCT_COLUMNS),
            "sequential_ids": bool(self._sequential),  # row i has id "p%07d" % i
        }
        if self.load_report is not None:
            manifest["load_report"] = self.load_report.to_dict()
        (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if with_index:
            self._get_searcher().save(directory)
        return directory

    # ----------------------------------------------------------------- basics

    def __len__(self) -> int:
        return self._n

    _CACHES = ("_numeric", "_codes", "_chunk_starts", "_text_readers", "_positions", "_category_index",
               "_first_codes", "_id_to_row", "_vocabularies")

    def __getstate__(self) -> dict:
        """Pickle the table and metadata (and an attached searcher and the row lookups
        when built), not the lock or the derived caches, which are rebuilt on demand."""
        state = self.__dict__.copy()
        del state["_lock"]
        for name in self._CACHES:
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._numeric, self._codes, self._chunk_starts, self._text_readers = {}, {}, {}, {}
        self._positions = None
        self._category_index = None
        self._first_codes = {}
        self._lookups = state.get("_lookups")
        self._id_to_row = None
        self._vocabularies = {}

    def __copy__(self) -> "Catalog":
        return self

    def __deepcopy__(self, memo: dict) -> "Catalog":
        """A catalog is read-only and shared by every episode: copies are the same object."""
        return self

    def __repr__(self) -> str:
        return f"Catalog(n_products={self._n}, source={self.source!r}, seed={self.seed!r})"

    @property
    def table(self) -> pa.Table:
        """The underlying table (`PRODUCT_SCHEMA`); treat it as read-only."""
        return self._table

    def _row(self, row: int) -> int:
        if type(row) is int and 0 <= row < self._n:  # the common case, checked first
            return row
        if isinstance(row, (bool, np.bool_)) or not isinstance(row, (int, np.integer)):
            raise TypeError(f"row must be an integer, got {type(row).__name__}")
        r = int(row)
        if not 0 <= r < self._n:
            raise IndexError(f"row {r} out of range for a catalog of {self._n} products")
        return r

    def _cell(self, name: str, row: int):
        """The arrow scalar at (`name`, `row`) without combining chunks."""
        col = self._table.column(name)
        if col.num_chunks == 1:
            return col.chunk(0)[row]
        starts = self._chunk_starts.get(name)
        if starts is None:
            starts = np.cumsum([0] + [len(c) for c in col.chunks])
            self._chunk_starts[name] = starts
        i = int(np.searchsorted(starts, row, side="right")) - 1
        return col.chunk(i)[row - int(starts[i])]

    def _text(self, name: str, row: int) -> str | None:
        """The text cell at (`name`, `row`), `row` already checked: one slice and decode of
        the column's UTF-8 buffer (`_text_reader`), or through an arrow scalar for a column
        that reader does not cover."""
        reader = self._text_readers.get(name)
        if reader is None:
            reader = self._text_readers.setdefault(name, _text_reader(self._table.column(name)) or False)
        return reader(row) if reader else self._cell(name, row).as_py()

    # ----------------------------------------------------------------- columns

    def numeric(self, name: str) -> np.ndarray:
        """Read-only numpy array of numeric column `name` (one of `NUMERIC_COLUMNS`),
        cached; zero-copy when the column is a single chunk."""
        arr = self._numeric.get(name)
        if arr is not None:
            return arr
        if name not in NUMERIC_COLUMNS:
            raise KeyError(f"{name!r} is not a numeric column; numeric columns: {', '.join(NUMERIC_COLUMNS)}")
        with self._lock:
            col = self._table.column(name)
            dtype = NUMERIC_DTYPES[name]
            if col.num_chunks == 1:
                arr = col.chunk(0).to_numpy(zero_copy_only=True)
            elif col.num_chunks == 0:
                arr = np.empty(0, dtype=dtype)
            else:
                arr = np.concatenate([c.to_numpy(zero_copy_only=True) for c in col.chunks])
            arr = _readonly(arr)
            self._numeric[name] = arr
        return arr

    def codes(self, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
        """Categorical column `name` as (read-only int32 codes, values); code -1 means
        null and ``values[code]`` is the string otherwise. Cached."""
        cached = self._codes.get(name)
        if cached is not None:
            return cached
        if name not in CATEGORICAL_COLUMNS:
            raise KeyError(f"{name!r} is not a categorical column; categorical columns: {', '.join(CATEGORICAL_COLUMNS)}")
        with self._lock:
            col = unify_dictionary(self._table.column(name))
            if col.num_chunks == 0:
                out = (_readonly(np.empty(0, dtype=np.int32)), ())
            else:
                values = tuple(col.chunk(0).dictionary.to_pylist())
                parts = [_indices_as_codes(c.indices) for c in col.chunks]
                codes = parts[0] if len(parts) == 1 else np.concatenate(parts)
                out = (_readonly(codes), values)
            self._codes[name] = out
        return out

    def value(self, name: str, row: int):
        """One cell as a Python value: str / float / int / list[str], None for null.
        Float32 ratings are rounded to 6 decimals (4.3 stays 4.3)."""
        r = self._row(row)
        cached = self._codes.get(name)  # a categorical column already decoded
        if cached is not None or name in CATEGORICAL_COLUMNS:
            codes, values = cached or self.codes(name)
            code = int(codes[r])
            return values[code] if code >= 0 else None
        if name in NUMERIC_COLUMNS:
            v = self.numeric(name)[r]
            if name == "rating":
                return round(float(v), 6)
            return float(v) if name == "price" else int(v)
        if name in TEXT_COLUMNS:
            return self._text(name, r)
        if name == "features":
            return self._cell(name, r).as_py()
        raise KeyError(f"unknown column {name!r}")

    def product(self, row: int) -> dict:
        """All `PRODUCT_COLUMNS` of `row` as a JSON-serialisable dict."""
        r = self._row(row)
        return {name: self.value(name, r) for name in PRODUCT_COLUMNS}

    def product_id(self, row: int) -> str:
        """The id of row `row`."""
        r = self._row(row)
        if self._ids_are_sequential():
            return f"p{r:0{self._id_width}d}"
        return self._text("product_id", r)

    def category_path(self, row: int) -> str:
        """``"l1 > l2 > l3"`` of `row`."""
        r = self._row(row)
        return CATEGORY_SEP.join(
            self.value(level, r) or "" for level in ("category_l1", "category_l2", "category_l3")
        )

    # ----------------------------------------------------------------- lookups

    def _ids_are_sequential(self) -> bool:
        """Whether row i has id ``"p" + zero-padded i`` for every row (checked once)."""
        if self._sequential is None:
            from ecomrlve.catalog_service.synthetic import _format_ids, id_width

            with self._lock:
                if self._n == 0:
                    self._sequential = True
                else:
                    ids = self._table.column("product_id")
                    width = id_width(self._n)
                    expected = _format_ids(0, self._n, width)
                    self._sequential = bool(pc.all(pc.equal(ids, expected)).as_py())
        return self._sequential

    def row_of(self, product_id: str) -> int | None:
        """The row of `product_id`, or None when no product has that id (also for
        non-string input). Synthetic-style ids are parsed arithmetically; other ids use
        a dict built on first use."""
        if not isinstance(product_id, str):
            return None
        if self._ids_are_sequential():
            digits = product_id[1:]
            if (
                product_id[:1] == "p"
                and len(digits) == self._id_width
                and digits.isascii()
                and digits.isdigit()
            ):
                row = int(digits)
                return row if row < self._n else None
            return None
        if self._id_to_row is None:
            with self._lock:
                if self._id_to_row is None:
                    ids = self._table.column("product_id").to_pylist()
                    self._id_to_row = dict(zip(ids, range(len(ids))))
        return self._id_to_row.get(product_id)

    def lookups(self) -> RowLookups:
        """The row lookups (`ecomrlve.catalog_service.lookups`): memory-mapped when the catalog was
        loaded from a directory that has them, else built once on first use."""
        if self._lookups is None:
            with self._lock:
                if self._lookups is None:
                    self._lookups = build_lookups(self)
        return self._lookups

    def attach_lookups(self, lookups: RowLookups) -> None:
        """Use `lookups` (built for this table, e.g. shared through Ray's object store)
        instead of building them; ValueError when they are for another number of rows."""
        if lookups.n_rows != self._n:
            raise ValueError(f"row lookups are for {lookups.n_rows} rows, this catalog has {self._n}")
        self._lookups = lookups

    def _leaf_code(self, category_l3: str) -> int | None:
        if self._category_index is None:
            with self._lock:
                self._category_index = {v: i for i, v in enumerate(self.codes("category_l3")[1])}
        return self._category_index.get(category_l3)

    def _first_code(self, column: str, value: str) -> int | None:
        """The first dictionary code of `value` in categorical `column` (the code an equality
        constraint compares with), or None."""
        index = self._first_codes.get(column)
        if index is None:
            index = {}
            for i, v in enumerate(self.codes(column)[1]):
                index.setdefault(v, i)
            self._first_codes[column] = index
        return index.get(value)

    def category_rows(self, category_l3: str) -> np.ndarray:
        """Rows whose leaf category is `category_l3`, ascending int64 (a read-only slice of
        the row lookups); empty for an unknown category."""
        code = self._leaf_code(category_l3)
        if code is None:
            return _readonly(np.empty(0, dtype=np.int64))
        lk = self.lookups()
        return lk.leaf_rows[lk.leaf_slice(code)]

    def category_rows_by_price(self, category_l3: str) -> tuple[np.ndarray, np.ndarray]:
        """The rows of leaf `category_l3` ordered by (price in integer cents, row) (int32)
        and their prices in cents (``round(price * 100)``, int64): read-only slices of the
        row lookups, O(1); empty for an unknown category."""
        code = self._leaf_code(category_l3)
        lk = self.lookups()
        if code is None:
            return lk.price_rows[:0], lk.price_cents[:0]
        sl = lk.leaf_slice(code)
        return lk.price_rows[sl], lk.price_cents[sl]

    def category_rows_below(self, category_l3: str, max_cents: int) -> np.ndarray:
        """Rows of leaf `category_l3` priced at most `max_cents` (``round(price * 100) <=
        max_cents``), ascending int64. O(log leaf + result)."""
        code = self._leaf_code(category_l3)
        if code is None:
            return np.empty(0, dtype=np.int64)
        lk = self.lookups()
        sl = lk.leaf_slice(code)
        end = int(np.searchsorted(lk.price_cents[sl], int(max_cents), side="right"))
        return np.sort(lk.price_rows[sl.start : sl.start + end]).astype(np.int64)

    def category_in_stock_rows(self, category_l3: str) -> np.ndarray:
        """Rows of leaf `category_l3` with catalog stock > 0, ascending (int32, read-only,
        O(1)); an episode's stock overlay is not applied."""
        code = self._leaf_code(category_l3)
        lk = self.lookups()
        return lk.in_stock_rows[:0] if code is None else lk.in_stock_rows[lk.in_stock_slice(code)]

    def category_in_stock_by_price(self, category_l3: str) -> tuple[np.ndarray, np.ndarray]:
        """Rows of leaf `category_l3` with catalog stock > 0 ordered by (price in cents, row)
        (int32) and their cents (int64); read-only, O(1); no stock overlay applied."""
        code = self._leaf_code(category_l3)
        lk = self.lookups()
        if code is None:
            return lk.in_stock_price_rows[:0], lk.in_stock_price_cents[:0]
        sl = lk.in_stock_slice(code)
        return lk.in_stock_price_rows[sl], lk.in_stock_price_cents[sl]

    def category_column(self, category_l3: str, name: str) -> np.ndarray:
        """The values of column `name` (``price``, ``rating``, ``ship_days``,
        ``rating_count``, or the codes of ``brand`` / an attribute) for
        `category_rows(category_l3)`, in the same order: a read-only slice of one compact
        per-leaf block, O(1)."""
        lk = self.lookups()
        if name not in lk.leaf_columns:
            raise KeyError(f"{name!r} has no per-leaf column; per-leaf columns: {', '.join(lk.leaf_columns)}")
        code = self._leaf_code(category_l3)
        column = lk.leaf_columns[name]
        return column[:0] if code is None else column[lk.leaf_slice(code)]

    def category_positions(self, category_l3: str, rows: np.ndarray) -> np.ndarray | None:
        """Where each of `rows` (any order) sits in `category_rows(category_l3)`, so that
        ``category_column(category_l3, name).take(positions)`` reads their values; None when
        some row is not of that leaf. O(len(rows)): one gather from a row -> position array
        derived once per catalog from the row lookups (about 15 ms at 2M products, 4 bytes a row)."""
        code = self._leaf_code(category_l3)
        if code is None:
            return None
        rows = np.asarray(rows, dtype=np.int64)
        positions = self._leaf_positions().take(rows).astype(np.int64)
        lk = self.lookups()
        block = lk.leaf_rows[lk.leaf_slice(code)]
        if len(rows) and not (len(block) and np.array_equal(block.take(positions, mode="clip"), rows)):
            return None
        return positions

    def _leaf_positions(self) -> np.ndarray:
        """Row -> its position within its leaf's block of the row lookups (int32)."""
        if self._positions is None:
            with self._lock:
                if self._positions is None:
                    lk = self.lookups()
                    within = np.arange(len(lk.leaf_rows), dtype=np.int64)
                    within -= np.repeat(lk.leaf_starts[:-1], np.diff(lk.leaf_starts))
                    positions = np.zeros(self._n, dtype=np.int32)
                    positions[lk.leaf_rows] = within
                    positions.flags.writeable = False
                    self._positions = positions
        return self._positions

    def category_postings(self, category_l3: str, column: str, value: str) -> np.ndarray:
        """Rows of leaf `category_l3` whose `column` (``brand`` or an attribute column)
        equals `value` exactly, ascending int64. O(log + result)."""
        if column not in POSTING_COLUMNS:
            raise KeyError(f"{column!r} has no postings; posting columns: {', '.join(POSTING_COLUMNS)}")
        leaf = self._leaf_code(category_l3)
        code = self._first_code(column, value)
        if leaf is None or code is None:
            return np.empty(0, dtype=np.int64)
        return self.lookups().postings[column].rows_of(leaf, code).astype(np.int64)

    def category_counts(self) -> dict[str, int]:
        """Number of products per leaf category (only leaves that have products)."""
        lk = self.lookups()
        sizes = np.diff(lk.leaf_starts)[1:]
        self._leaf_code("")
        return {v: int(sizes[i]) for v, i in self._category_index.items() if sizes[i] > 0}

    # ----------------------------------------------------------------- vocabularies

    def leaf_vocabulary(self, category_l3: str) -> MappingProxyType:
        """Attribute -> the values a product of leaf `category_l3` can take, most common
        first (a read-only mapping of tuples, derived as the module doc says). The first call
        derives every leaf's vocabulary at once (O(catalog), once per catalog: about 0.3 s at
        2M products), so no episode pays for a leaf it meets first. Empty for an unknown leaf."""
        if not self._vocabularies:
            with self._lock:
                if not self._vocabularies:
                    self._vocabularies.update(
                        {leaf: MappingProxyType(self._derive_vocabulary(leaf)) for leaf in self.category_counts()})
        vocab = self._vocabularies.get(category_l3)
        if vocab is None:  # a leaf without products
            with self._lock:
                vocab = self._vocabularies.setdefault(category_l3, MappingProxyType(self._derive_vocabulary(category_l3)))
        return vocab

    def _values_seen(self, rows: np.ndarray) -> dict[str, tuple[str, ...]]:
        """Attribute -> distinct non-empty values among `rows`, most common first, ties by value."""
        out: dict[str, tuple[str, ...]] = {}
        for attr in ATTRIBUTE_COLUMNS:
            codes, values = self.codes(attr)
            present = codes[rows]
            present = present[present >= 0]
            if not len(present):
                continue
            uniq, counts = np.unique(present, return_counts=True)
            tally: dict[str, int] = {}
            for code, n in zip(uniq.tolist(), counts.tolist()):
                if values[code]:
                    tally[values[code]] = tally.get(values[code], 0) + n
            if tally:
                out[attr] = tuple(sorted(tally, key=lambda v: (-tally[v], v)))
        return out

    def _derive_vocabulary(self, category_l3: str) -> dict[str, tuple[str, ...]]:
        rows = self.category_rows(category_l3)
        own = self._values_seen(rows)
        if not len(rows) or any(len(values) >= MIN_CHOICE for values in own.values()):
            return own
        l1, _ = self.codes("category_l1")
        l2, l2_values = self.codes("category_l2")
        key = l1.astype(np.int64) * (len(l2_values) + 1) + l2
        parents = np.unique(key[rows])
        parent = self._values_seen(np.flatnonzero(np.isin(key, parents)))
        if not own:
            return parent
        return {a: parent[a] if len(parent.get(a, ())) >= MIN_CHOICE else values for a, values in own.items()}

    # ----------------------------------------------------------------- search

    def _get_searcher(self):
        if self._searcher is None:
            with self._lock:
                if self._searcher is None:
                    from .searchers import build_searcher

                    self._searcher = build_searcher(self)
        return self._searcher

    @property
    def searcher(self):
        """The attached searcher, or None when none was built or loaded yet."""
        return self._searcher

    def set_searcher(self, searcher) -> None:
        """Attach a searcher (anything with ``.search(query, filters, top_k)``)."""
        self._searcher = searcher

    def search(
        self,
        query: str,
        filters: SearchFilters | Mapping[str, Any] | None = None,
        top_k: int = 10,
    ) -> SearchHits:
        """Rank products for `query` under `filters` (SearchFilters, a dict validated
        into one, or None); at most `top_k` hits. The searcher is built on first use."""
        return self._get_searcher().search(query, coerce_filters(filters), top_k)
