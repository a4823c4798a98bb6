"""`RowLookups`: the precomputed row indexes that keep an episode's work independent of
catalog size.

Episodes never scan the catalog. What they look up instead, built once per catalog (at
`Catalog.save` time it is written next to ``products.arrow`` and memory-mapped by
`Catalog.load`; an in-memory catalog builds it lazily, once):

- per-leaf rows: every row ordered by (leaf category code, row), with the offsets of each
  leaf, so `category_rows(leaf)` is a slice;
- per-leaf price order: every row ordered by (leaf code, price in integer cents, row), with
  the cents alongside, so "rows of this leaf priced at most c cents" is a prefix found by
  binary search;
- per-leaf in-stock rows (catalog stock > 0), in row order and in price order, with their
  offsets per leaf, so "the i-th in-stock row of this leaf" or "its i-th cheapest in-stock
  product" is one index (an episode's stock overlay is applied on top by the caller);
- per-leaf columns: the numeric columns and the brand / attribute codes in per-leaf row
  order, so the values of a set of rows of one leaf are read from that leaf's compact block
  (cache-friendly) instead of from all over the catalog;
- postings: for brand and every attribute column, rows ordered by (leaf code, value code,
  row), with the (leaf, value) keys that occur and their offsets, so "rows of this leaf with
  brand b" is a slice.

Codes are the catalog's dictionary codes (`Catalog.codes`; -1, null, sorts first). Cents are
``round(price * 100)`` (half to even, as `ecomrlve.envs.constraints` compares prices). All arrays are
read-only.

Files (Arrow IPC, uncompressed, memory-mapped on load): ``row_lookups.arrow`` holds the
catalog-length columns (`ROW_COLUMNS` and ``posting_<column>``), ``row_lookups_in_stock.arrow``
the in-stock ones (`IN_STOCK_COLUMNS`), ``row_lookups_leaf_columns.arrow`` the per-leaf
columns (`LEAF_COLUMNS`), ``row_lookup_offsets.arrow``
the small ones (one row per array: ``name``, ``values`` as list<int64>).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ecomrlve.envs.catalog import ATTRIBUTE_COLUMNS

__all__ = ["RowLookups", "POSTING_COLUMNS", "build_lookups", "save_lookups", "load_lookups", "LOOKUP_FILES"]

POSTING_COLUMNS: tuple[str, ...] = ("brand",) + ATTRIBUTE_COLUMNS
ROWS_FILE = "row_lookups.arrow"
IN_STOCK_FILE = "row_lookups_in_stock.arrow"
LEAF_COLUMNS_FILE = "row_lookups_leaf_columns.arrow"
OFFSETS_FILE = "row_lookup_offsets.arrow"
LOOKUP_FILES = (ROWS_FILE, IN_STOCK_FILE, LEAF_COLUMNS_FILE, OFFSETS_FILE)
LEAF_NUMERIC = ("price", "rating", "ship_days", "rating_count")
LEAF_COLUMNS = LEAF_NUMERIC + POSTING_COLUMNS  # codes for the categorical ones
ROW_COLUMNS = ("leaf_rows", "price_rows", "price_cents")
IN_STOCK_COLUMNS = ("in_stock_rows", "in_stock_price_rows", "in_stock_price_cents")


def _readonly(a: np.ndarray) -> np.ndarray:
    if a.flags.writeable:
        a.flags.writeable = False
    return a


@dataclass(frozen=True)
class Posting:
    """Rows ordered by (leaf code, value code, row); `keys` are the distinct
    ``(leaf + 1) * (n_values + 1) + value + 1`` that occur (ascending) and rows of key
    ``keys[i]`` are ``rows[starts[i]:starts[i + 1]]``."""

    rows: np.ndarray  # int32, catalog length
    keys: np.ndarray  # int64
    starts: np.ndarray  # int64, len(keys) + 1
    n_values: int

    def rows_of(self, leaf_code: int, value_code: int) -> np.ndarray:
        key = (leaf_code + 1) * (self.n_values + 1) + value_code + 1
        i = int(np.searchsorted(self.keys, key))
        if i == len(self.keys) or int(self.keys[i]) != key:
            return self.rows[:0]
        return self.rows[int(self.starts[i]) : int(self.starts[i + 1])]


@dataclass(frozen=True)
class RowLookups:
    """See the module doc. `leaf_starts[code + 1]:leaf_starts[code + 2]` delimits leaf
    `code` in both `leaf_rows` and `price_rows` (index 0 holds null leaves)."""

    n_rows: int
    leaf_rows: np.ndarray  # int64
    leaf_starts: np.ndarray  # int64, n_leaves + 2
    price_rows: np.ndarray  # int32
    price_cents: np.ndarray  # int64
    in_stock_rows: np.ndarray  # int32, rows with stock > 0 by (leaf, row)
    in_stock_starts: np.ndarray  # int64, n_leaves + 2
    in_stock_price_rows: np.ndarray  # int32, rows with stock > 0 by (leaf, cents, row)
    in_stock_price_cents: np.ndarray  # int64
    postings: dict[str, Posting]
    leaf_columns: dict[str, np.ndarray]  # `LEAF_COLUMNS` in `leaf_rows` order

    def leaf_slice(self, leaf_code: int) -> slice:
        return slice(int(self.leaf_starts[leaf_code + 1]), int(self.leaf_starts[leaf_code + 2]))

    def in_stock_slice(self, leaf_code: int) -> slice:
        return slice(int(self.in_stock_starts[leaf_code + 1]), int(self.in_stock_starts[leaf_code + 2]))

    @property
    def nbytes(self) -> int:
        arrays = [self.leaf_rows, self.leaf_starts, self.price_rows, self.price_cents, self.in_stock_rows,
                  self.in_stock_starts, self.in_stock_price_rows, self.in_stock_price_cents]
        for p in self.postings.values():
            arrays += [p.rows, p.keys, p.starts]
        arrays += list(self.leaf_columns.values())
        return int(sum(a.nbytes for a in arrays))


def _group_starts(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys, start offsets + final length) of an ascending key array."""
    if len(sorted_keys) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
    cut = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    starts = np.concatenate([[0], cut, [len(sorted_keys)]]).astype(np.int64)
    return sorted_keys[starts[:-1]].astype(np.int64), starts


def build_lookups(catalog) -> RowLookups:
    """Build every lookup of `catalog` (a `Catalog`): a few stable argsorts, O(n log n)."""
    n = len(catalog)
    leaf_codes, leaves = catalog.codes("category_l3")
    leaf = leaf_codes.astype(np.int64)
    leaf_rows = np.argsort(leaf, kind="stable").astype(np.int64)
    counts = np.bincount(leaf + 1, minlength=len(leaves) + 1)
    leaf_starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    cents = np.round(np.asarray(catalog.numeric("price"), dtype=np.float64) * 100).astype(np.int64)
    span = int(cents.max()) - int(cents.min()) + 1 if n else 1
    price_key = (leaf + 1) * span + (cents - (int(cents.min()) if n else 0))
    price_rows = np.argsort(price_key, kind="stable").astype(np.int32)
    in_stock = np.asarray(catalog.numeric("stock")) > 0
    in_stock_counts = np.bincount(leaf + 1, weights=in_stock, minlength=len(leaves) + 1).astype(np.int64)
    in_stock_price_rows = price_rows[in_stock[price_rows]]
    postings = {}
    for column in POSTING_COLUMNS:
        codes, values = catalog.codes(column)
        key = (leaf + 1) * (len(values) + 1) + codes.astype(np.int64) + 1
        order = np.argsort(key, kind="stable")
        keys, starts = _group_starts(key[order])
        postings[column] = Posting(_readonly(order.astype(np.int32)), _readonly(keys), _readonly(starts), len(values))
    return RowLookups(
        n_rows=n,
        leaf_rows=_readonly(leaf_rows),
        leaf_starts=_readonly(leaf_starts),
        price_rows=_readonly(price_rows),
        price_cents=_readonly(cents[price_rows]),
        in_stock_rows=_readonly(leaf_rows[in_stock[leaf_rows]].astype(np.int32)),
        in_stock_starts=_readonly(np.concatenate([[0], np.cumsum(in_stock_counts)]).astype(np.int64)),
        in_stock_price_rows=_readonly(in_stock_price_rows),
        in_stock_price_cents=_readonly(cents[in_stock_price_rows]),
        postings=postings,
        leaf_columns={
            name: _readonly(np.asarray(catalog.numeric(name) if name in LEAF_NUMERIC else catalog.codes(name)[0])[leaf_rows])
            for name in LEAF_COLUMNS
        },
    )


def save_lookups(lookups: RowLookups, directory: str | os.PathLike) -> None:
    """Write the lookup files into `directory` (atomically per file)."""
    directory = Path(directory)
    columns = {name: getattr(lookups, name) for name in ROW_COLUMNS}
    columns |= {f"posting_{c}": p.rows for c, p in lookups.postings.items()}
    rows_table = pa.table({k: pa.array(v) for k, v in columns.items()})
    in_stock_table = pa.table({name: pa.array(getattr(lookups, name)) for name in IN_STOCK_COLUMNS})
    leaf_table = pa.table({name: pa.array(a) for name, a in lookups.leaf_columns.items()})
    small = {"leaf_starts": lookups.leaf_starts, "in_stock_starts": lookups.in_stock_starts}
    for c, p in lookups.postings.items():
        small |= {f"keys_{c}": p.keys, f"starts_{c}": p.starts, f"n_values_{c}": np.array([p.n_values])}
    offsets_table = pa.table({
        "name": pa.array(list(small), pa.string()),
        "values": pa.array([np.asarray(v, dtype=np.int64) for v in small.values()], pa.list_(pa.int64())),
    })
    for name, table in ((ROWS_FILE, rows_table), (IN_STOCK_FILE, in_stock_table), (LEAF_COLUMNS_FILE, leaf_table),
                        (OFFSETS_FILE, offsets_table)):
        tmp = directory / (name + ".tmp")
        with pa.OSFile(str(tmp), "wb") as sink:
            with pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
        os.replace(tmp, directory / name)


def _column(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name)
    if col.num_chunks != 1:
        col = pa.chunked_array([pa.concat_arrays(col.chunks)])
    return _readonly(col.chunk(0).to_numpy(zero_copy_only=True))


def load_lookups(directory: str | os.PathLike, n_rows: int) -> RowLookups | None:
    """Memory-map the lookups saved in `directory`, or None when there are none (or they
    do not match a catalog of `n_rows` rows: they are then rebuilt in memory)."""
    directory = Path(directory)
    if not all((directory / f).is_file() for f in LOOKUP_FILES):
        return None
    rows_table = pa.ipc.open_file(pa.memory_map(str(directory / ROWS_FILE), "r")).read_all()
    in_stock_table = pa.ipc.open_file(pa.memory_map(str(directory / IN_STOCK_FILE), "r")).read_all()
    leaf_table = pa.ipc.open_file(pa.memory_map(str(directory / LEAF_COLUMNS_FILE), "r")).read_all()
    offsets = pa.ipc.open_file(pa.memory_map(str(directory / OFFSETS_FILE), "r")).read_all()
    if rows_table.num_rows != n_rows:
        return None
    names = offsets.column("name").to_pylist()
    values = offsets.column("values")
    small = {name: _readonly(values[i].values.to_numpy(zero_copy_only=False)) for i, name in enumerate(names)}
    postings = {
        c: Posting(_column(rows_table, f"posting_{c}"), small[f"keys_{c}"], small[f"starts_{c}"],
                   int(small[f"n_values_{c}"][0]))
        for c in POSTING_COLUMNS
    }
    return RowLookups(
        n_rows=n_rows,
        leaf_rows=_column(rows_table, "leaf_rows"),
        leaf_starts=small["leaf_starts"],
        price_rows=_column(rows_table, "price_rows"),
        price_cents=_column(rows_table, "price_cents"),
        in_stock_rows=_column(in_stock_table, "in_stock_rows"),
        in_stock_starts=small["in_stock_starts"],
        in_stock_price_rows=_column(in_stock_table, "in_stock_price_rows"),
        in_stock_price_cents=_column(in_stock_table, "in_stock_price_cents"),
        postings=postings,
        leaf_columns={name: _column(leaf_table, name) for name in LEAF_COLUMNS},
    )
