"""The product table's schema and its validation: `PRODUCT_SCHEMA` (the columns of
`ecomrlve.envs.catalog` with their Arrow types) and `normalize_table`, which every source
(synthetic, parquet, Amazebay, a saved directory) goes through before it becomes a `Catalog`.

A table leaves `normalize_table` with exactly `PRODUCT_SCHEMA` or a ValueError naming the
column at fault. This module imports nothing else of the catalog service, so the generators
and loaders can depend on it without depending on `Catalog`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomrlve.envs.catalog import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS, PRODUCT_COLUMNS

__all__ = ["PRODUCT_SCHEMA", "TEXT_COLUMNS", "NUMERIC_DTYPES", "DICTIONARY_TYPE", "normalize_table", "unify_dictionary"]

TEXT_COLUMNS: tuple[str, ...] = ("product_id", "title", "description")
DICTIONARY_TYPE = pa.dictionary(pa.int32(), pa.string())
NUMERIC_TYPES: dict[str, pa.DataType] = {
    "price": pa.float64(),
    "rating": pa.float32(),
    "rating_count": pa.int32(),
    "ship_days": pa.int16(),
    "stock": pa.int32(),
}
NUMERIC_DTYPES: dict[str, np.dtype] = {
    "price": np.dtype(np.float64),
    "rating": np.dtype(np.float32),
    "rating_count": np.dtype(np.int32),
    "ship_days": np.dtype(np.int16),
    "stock": np.dtype(np.int32),
}
FEATURES_TYPE = pa.list_(pa.string())


def _field_type(name: str) -> pa.DataType:
    if name in TEXT_COLUMNS:
        return pa.string()
    if name in CATEGORICAL_COLUMNS:
        return DICTIONARY_TYPE
    if name in NUMERIC_TYPES:
        return NUMERIC_TYPES[name]
    if name == "features":
        return FEATURES_TYPE
    raise AssertionError(name)


PRODUCT_SCHEMA = pa.schema([pa.field(name, _field_type(name)) for name in PRODUCT_COLUMNS])
NON_NULL_COLUMNS: tuple[str, ...] = ("product_id", "title") + NUMERIC_COLUMNS


# --------------------------------------------------------------------------- validation


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _normalize_column(name: str, col: pa.ChunkedArray) -> pa.ChunkedArray:
    """`col` cast to the schema type of `name`; ValueError naming the column when the
    type is not compatible (or a numeric cast would lose information)."""
    t = col.type
    want = _field_type(name)
    if t == want:
        return col
    bad = ValueError(f"column {name!r} has type {t}, expected {want}")
    if pa.types.is_null(t):
        if name in NON_NULL_COLUMNS:
            raise bad
        return pa.chunked_array([pa.nulls(len(c), want) for c in col.chunks], type=want)
    if name in TEXT_COLUMNS:
        if _is_string(t) or (pa.types.is_dictionary(t) and _is_string(t.value_type)):
            return col.cast(pa.string())
        raise bad
    if name in CATEGORICAL_COLUMNS:
        if pa.types.is_dictionary(t) and _is_string(t.value_type):
            return col.cast(want)
        if _is_string(t):
            return pc.dictionary_encode(col.cast(pa.string())).cast(want)
        raise bad
    if name in NUMERIC_TYPES:
        ok = pa.types.is_integer(t) or (pa.types.is_floating(want) and pa.types.is_floating(t))
        if not ok:
            raise bad
        try:
            return col.cast(want, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(f"column {name!r} cannot be cast from {t} to {want}: {exc}") from None
    if name == "features":
        if (pa.types.is_list(t) or pa.types.is_large_list(t)) and _is_string(t.value_type):
            return col.cast(want)
        raise bad
    raise AssertionError(name)


def unify_dictionary(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Make every chunk of a dictionary column share one dictionary."""
    if col.num_chunks <= 1:
        return col
    first = col.chunk(0).dictionary
    if all(c.dictionary is first or c.dictionary.equals(first) for c in col.chunks[1:]):
        return col
    return col.unify_dictionaries()


def normalize_table(table: pa.Table, *, check_unique: bool = True) -> pa.Table:
    """Validate `table` and return it with exactly `PRODUCT_SCHEMA` (extra columns are
    dropped; unchanged columns are not copied).

    Raises ValueError naming the column when a column is missing, has an incompatible
    type, has nulls where none are allowed (`NON_NULL_COLUMNS`), has a negative or
    non-finite price, negative stock, or (with `check_unique`) duplicate product ids."""
    if not isinstance(table, pa.Table):
        raise TypeError(f"expected a pyarrow.Table, got {type(table).__name__}")
    columns = []
    for name in PRODUCT_COLUMNS:
        if name not in table.column_names:
            raise ValueError(f"product table is missing column {name!r}")
        if table.column_names.count(name) > 1:
            raise ValueError(f"product table has column {name!r} more than once")
        col = _normalize_column(name, table.column(name))
        if name in CATEGORICAL_COLUMNS:
            col = unify_dictionary(col)
        if name in NON_NULL_COLUMNS and col.null_count:
            raise ValueError(f"column {name!r} has {col.null_count} null values")
        columns.append(col)
    out = pa.Table.from_arrays(columns, schema=PRODUCT_SCHEMA)
    if len(out):
        price = out.column("price")
        if not pc.all(pc.is_finite(price)).as_py() or pc.min(price).as_py() < 0:
            raise ValueError("column 'price' must hold finite, non-negative dollars")
        for name in ("stock", "ship_days", "rating_count"):
            if pc.min(out.column(name)).as_py() < 0:
                raise ValueError(f"column {name!r} must be non-negative")
        if check_unique and pc.count_distinct(out.column("product_id")).as_py() != len(out):
            counts = pc.value_counts(out.column("product_id"))
            dup = next(v["values"] for v in counts.to_pylist() if v["counts"] > 1)
            raise ValueError(f"column 'product_id' has duplicate values (e.g. {dup!r})")
    return out
