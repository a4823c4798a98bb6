"""Deterministic, vectorised synthetic product catalog.

`generate_products(n_products, seed)` returns a `pyarrow.Table` with exactly the columns
and types of `ecomrlve.catalog_service.schema.PRODUCT_SCHEMA` (see `ecomrlve.envs.catalog`). Contract:

- Deterministic: the only randomness is `numpy.random.default_rng(seed)` (and child
  generators spawned from it); no `random`, no salted built-in hashing, no clock. Same `(n_products,
  seed)` gives a byte-identical table in any process.
- Ids are ``"p" + row`` zero padded to 7 digits (more when ``n_products > 10**7``), so
  row ``i`` has id ``"p%07d" % i``.
- Leaves are drawn from `taxonomy.LEAVES` with uneven (Zipf-like) popularity; brand,
  series word, attribute values and features come from the leaf's pools. Attribute
  columns are null where the leaf lacks the attribute.
- Titles: ``brand series [size/capacity/wattage/connector/material/scent/flavor] noun
  CODE[, color][, size][, ages]``, e.g. ``"Anker Nano 65W USB-C Wall Charger AX-4821,
  White"``; the random model code makes titles (almost always) unique.
- Prices are log-normal per leaf (ordered attributes such as capacity shift the price),
  rounded to cents, at least $0.99; ratings 1.0-5.0 with one decimal, skewed high;
  rating_count heavy tailed (>= 1); ship_days 1-14, mostly 1-5; stock 0 for about 7%,
  else 1-500.

Everything per product is numpy / pyarrow compute over whole columns; Python only walks
the (small) taxonomy. Rows are generated in chunks of `CHUNK_ROWS` (each chunk is one
record batch), which bounds peak memory and keeps string columns under 2 GiB per chunk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomrlve.catalog_service import taxonomy
from ecomrlve.catalog_service.schema import PRODUCT_SCHEMA
from ecomrlve.envs.catalog import ATTRIBUTE_COLUMNS

__all__ = ["generate_products", "id_width", "SHIP_DAYS_PROBS", "OUT_OF_STOCK_RATE", "CHUNK_ROWS"]

CHUNK_ROWS = 1 << 21  # 2,097,152 rows per record batch
OUT_OF_STOCK_RATE = 0.07
# P(ship_days = 1..14): 85% within 1-5 days.
SHIP_DAYS_PROBS = np.array(
    [0.18, 0.27, 0.20, 0.12, 0.08, 0.04, 0.04, 0.02, 0.01, 0.01, 0.01, 0.005, 0.005, 0.01]
)
SHIP_DAYS_PROBS = SHIP_DAYS_PROBS / SHIP_DAYS_PROBS.sum()

# Attributes written before the noun (in this order) and after it.
TITLE_PREFIX_ATTRS = ("screen_size", "capacity", "wattage", "connector_type", "material", "scent", "flavor")
TITLE_SUFFIX_ATTRS = ("color", "size", "age_range")
# Price elasticity of ordered attributes: price ~ magnitude ** elasticity.
PRICE_ELASTICITY = {"capacity": 0.45, "wattage": 0.35, "screen_size": 1.2, "size": 0.6}
_UNITS = {  # unit -> factor to a common base per dimension
    "GB": 1.0, "TB": 1000.0, "mAh": 1.0, "W": 1.0, "inch": 1.0, "qt": 1.0, "gal": 4.0,
    "oz": 1.0, "fl oz": 1.0, "lb": 16.0, "L": 1.0, "Cup": 1.0, "Count": 1.0, "Pieces": 1.0,
}
_MAGNITUDE = re.compile(r"^(\d+(?:\.\d+)?)\s*([A-Za-z ]+)$")
# Description templates: prefix + "<brand> <series> <noun>" + mid + feature + joiner + feature + end.
# The feature slots hold leaf phrases that may be noun or verb phrases, hence the colons.
DESCRIPTION_TEMPLATES = (
    ("The ", " offers ", " and ", "."),
    ("Meet the ", ": ", ", ", "."),
    ("", " highlights: ", " and ", "."),
    ("Why shoppers choose the ", ": ", " and ", "."),
    ("Key features of the ", ": ", ", ", "."),
)
CLOSING_SENTENCE_RATE = 0.55
BRAND_STORE_RATE = 0.8


def id_width(n_products: int) -> int:
    """Digits after the ``p`` in product ids: 7, or more when ids would not fit."""
    return max(7, len(str(max(n_products - 1, 0))))


# --------------------------------------------------------------------------- compiled taxonomy


@dataclass(frozen=True)
class _AttrTable:
    values: tuple[str, ...]  # the column's dictionary
    pool: np.ndarray  # (L, V) int32 value ids, padded with -1
    count: np.ndarray  # (L,) int32 pool sizes (0 = leaf lacks the attribute)
    log_price: np.ndarray  # (L, V) float64 log price multiplier per pool slot
    fragment: pa.Array  # title text per value id, plus "" at index len(values)


@dataclass(frozen=True)
class _Compiled:
    l1_values: tuple[str, ...]
    l2_values: tuple[str, ...]
    l3_values: tuple[str, ...]
    leaf_l1: np.ndarray
    leaf_l2: np.ndarray
    leaf_l3: np.ndarray
    nouns: pa.Array
    brand_values: tuple[str, ...]
    store_values: tuple[str, ...]
    brand_pool: np.ndarray
    brand_count: np.ndarray
    series_text: pa.Array
    series_pool: np.ndarray  # (n_l1, S)
    series_count: np.ndarray
    attrs: dict[str, _AttrTable]
    log_median: np.ndarray
    sigma: np.ndarray
    feature_text: pa.Array  # lower-case phrases
    feature_bullet: pa.Array  # capitalised phrases
    feature_pool: np.ndarray  # (L, F)
    feature_count: np.ndarray
    feature_is_department: np.ndarray  # (L, F) float32, 1 for department-wide phrases
    closer_text: pa.Array  # " sentence" per id, plus "" at the end
    closer_pool: np.ndarray  # (n_l1, K)
    closer_count: np.ndarray


def _pad(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(1, max(len(r) for r in rows))
    out = np.full((len(rows), width), -1, dtype=np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out, np.array([len(r) for r in rows], dtype=np.int32)


def _index(values: list[str]) -> dict[str, int]:
    return {v: i for i, v in enumerate(dict.fromkeys(values))}


def _magnitude(value: str) -> float | None:
    m = _MAGNITUDE.match(value)
    if not m or m.group(2).strip() not in _UNITS:
        return None
    return float(m.group(1)) * _UNITS[m.group(2).strip()]


def _log_price_shift(name: str, values: tuple[str, ...]) -> list[float]:
    """Log price multipliers for a leaf's pool: zero unless every value has a magnitude."""
    elasticity = PRICE_ELASTICITY.get(name)
    mags = [_magnitude(v) for v in values]
    if elasticity is None or len(values) < 2 or any(m is None or m <= 0 for m in mags):
        return [0.0] * len(values)
    logs = np.log(np.array(mags))
    return list(elasticity * (logs - logs.mean()))


def _title_fragment(name: str, value: str) -> str:
    if name in TITLE_PREFIX_ATTRS:
        return value + " "
    if name == "size" and (value in taxonomy.APPAREL_SIZES or re.fullmatch(r"\d+(\.\d+)?", value)):
        return ", Size " + value
    if name == "age_range":
        return ", Ages " + value
    return ", " + value


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


@lru_cache(maxsize=1)
def _compiled() -> _Compiled:
    leaves = taxonomy.LEAVES
    l1 = _index([leaf.l1 for leaf in leaves])
    l2 = _index([leaf.l2 for leaf in leaves])
    l3 = _index([leaf.l3 for leaf in leaves])
    brands = _index([b for leaf in leaves for b in leaf.brands])
    stores = _index(list(brands) + list(taxonomy.RESELLER_STORES))
    brand_pool, brand_count = _pad([[brands[b] for b in leaf.brands] for leaf in leaves])

    dept_names = list(l1)
    series = _index([w for d in dept_names for w in taxonomy.SERIES_WORDS[d]])
    series_pool, series_count = _pad([[series[w] for w in taxonomy.SERIES_WORDS[d]] for d in dept_names])
    closers = _index([s for d in dept_names for s in taxonomy.CLOSING_SENTENCES[d]])
    closer_pool, closer_count = _pad([[closers[s] for s in taxonomy.CLOSING_SENTENCES[d]] for d in dept_names])

    attrs: dict[str, _AttrTable] = {}
    for name in ATTRIBUTE_COLUMNS:
        pools = [leaf.attribute_values(name) or () for leaf in leaves]
        ids = _index([v for pool in pools for v in pool])
        pool, count = _pad([[ids[v] for v in p] for p in pools])
        shift = np.zeros(pool.shape, dtype=np.float64)
        for i, p in enumerate(pools):
            shift[i, : len(p)] = _log_price_shift(name, p)
        fragments = [_title_fragment(name, v) for v in ids] + [""]
        attrs[name] = _AttrTable(tuple(ids), pool, count, shift, pa.array(fragments, pa.string()))

    features = _index(
        [f for leaf in leaves for f in leaf.features + taxonomy.DEPARTMENT_FEATURES[leaf.l1]]
    )
    feature_pool, feature_count = _pad(
        [[features[f] for f in leaf.features + taxonomy.DEPARTMENT_FEATURES[leaf.l1]] for leaf in leaves]
    )
    return _Compiled(
        l1_values=tuple(l1),
        l2_values=tuple(l2),
        l3_values=tuple(l3),
        leaf_l1=np.array([l1[leaf.l1] for leaf in leaves], dtype=np.int32),
        leaf_l2=np.array([l2[leaf.l2] for leaf in leaves], dtype=np.int32),
        leaf_l3=np.array([l3[leaf.l3] for leaf in leaves], dtype=np.int32),
        nouns=pa.array([leaf.noun for leaf in leaves], pa.string()),
        brand_values=tuple(brands),
        store_values=tuple(stores),
        brand_pool=brand_pool,
        brand_count=brand_count,
        series_text=pa.array(list(series), pa.string()),
        series_pool=series_pool,
        series_count=series_count,
        attrs=attrs,
        log_median=np.log(np.array([leaf.price_median for leaf in leaves])),
        sigma=np.array([leaf.price_sigma for leaf in leaves]),
        feature_text=pa.array(list(features), pa.string()),
        feature_bullet=pa.array([_capitalise(f) for f in features], pa.string()),
        feature_pool=feature_pool,
        feature_count=feature_count,
        feature_is_department=np.array(
            [[1.0 if j >= len(leaf.features) else 0.0 for j in range(feature_pool.shape[1])] for leaf in leaves],
            dtype=np.float32,
        ),
        closer_text=pa.array([" " + s for s in closers] + [""], pa.string()),
        closer_pool=closer_pool,
        closer_count=closer_count,
    )


# --------------------------------------------------------------------------- helpers


def _pick(rng: np.random.Generator, pool: np.ndarray, count: np.ndarray, owner: np.ndarray, skew: float = 1.0) -> np.ndarray:
    """For each row, one id from `pool[owner]` (first entries more likely when skew > 1);
    -1 where the owner's pool is empty."""
    u = rng.random(owner.shape[0])
    n = count[owner]
    slot = np.minimum((u**skew * n).astype(np.int32), np.maximum(n - 1, 0))
    out = pool[owner, slot]
    return np.where(n > 0, out, -1).astype(np.int32)


def _take(text: pa.Array, ids: np.ndarray) -> pa.Array:
    return text.take(pa.array(ids, type=pa.int32()))


def _dictionary(ids: np.ndarray, values: pa.Array) -> pa.DictionaryArray:
    ids = ids.astype(np.int32, copy=False)
    mask = ids < 0
    indices = pa.array(ids, type=pa.int32(), mask=mask if mask.any() else None)
    return pa.DictionaryArray.from_arrays(indices, values)


def _join(*parts) -> pa.Array:
    """Concatenate non-null string arrays / Python strings element-wise."""
    return pc.binary_join_element_wise(*parts, "")


def _format_ids(start: int, m: int, width: int) -> pa.Array:
    digits = pc.cast(pa.array(np.arange(start, start + m, dtype=np.int64)), pa.string())
    return _join("p", pc.utf8_lpad(digits, width=width, padding="0"))


_LETTER_PAIRS = pa.array([a + b for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for b in "ABCDEFGHJKLMNPQRSTUVWXYZ"], pa.string())


def _model_codes(rng: np.random.Generator, m: int) -> pa.Array:
    letters = _take(_LETTER_PAIRS, rng.integers(0, len(_LETTER_PAIRS), size=m, dtype=np.int32))
    digits = pc.cast(pa.array(rng.integers(1000, 10000, size=m, dtype=np.int32)), pa.string())
    return _join(letters, "-", digits)


def _prices(rng: np.random.Generator, c: _Compiled, leaf: np.ndarray, brand: np.ndarray,
            brand_premium: np.ndarray, attr_shift: np.ndarray) -> np.ndarray:
    log_price = c.log_median[leaf] + c.sigma[leaf] * rng.standard_normal(leaf.shape[0])
    raw = np.exp(log_price + attr_shift + brand_premium[brand])
    charm = (rng.random(leaf.shape[0]) < 0.55) & (raw >= 2.0)
    price = np.where(charm, np.floor(raw) + 0.99, np.round(raw, 2))
    return np.round(np.maximum(price, 0.99), 2)


def _ratings(rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
    count = 1 + np.floor(np.exp(rng.normal(3.0, 1.8, size=m)))
    count = np.minimum(count, 2_000_000).astype(np.int32)
    # Few ratings -> noisier average; most products sit around 4.0-4.7.
    quality = 4.75 - rng.gamma(1.6, 0.35, size=m)
    noise = rng.normal(0.0, 1.0, size=m) * 0.6 / np.sqrt(count)
    rating = np.clip(np.round(quality + noise, 1), 1.0, 5.0).astype(np.float32)
    return rating, count


def _features(rng: np.random.Generator, c: _Compiled, leaf: np.ndarray) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(features list<string>, first feature id, second feature id) per row; 2-4 distinct
    features from the leaf's pool in random order, the leaf's own phrases tending to come
    before the department-wide ones."""
    m = leaf.shape[0]
    width = c.feature_pool.shape[1]
    count = c.feature_count[leaf]
    keys = rng.random((m, width), dtype=np.float32)
    keys += np.float32(0.5) * c.feature_is_department[leaf]
    keys[np.arange(width)[None, :] >= count[:, None]] = 2.0  # padding sorts last
    order = np.argsort(keys, axis=1, kind="stable")[:, :4].astype(np.int32)
    chosen = c.feature_pool[leaf[:, None], order]  # (m, 4)
    k = np.minimum(rng.integers(2, 5, size=m), count).astype(np.int32)
    keep = np.arange(4)[None, :] < k[:, None]
    offsets = np.zeros(m + 1, dtype=np.int32)
    np.cumsum(k, out=offsets[1:])
    values = _take(c.feature_bullet, chosen[keep])
    lists = pa.ListArray.from_arrays(pa.array(offsets), values)
    return lists, chosen[:, 0], chosen[:, 1]


# --------------------------------------------------------------------------- generation


def _chunk(rng: np.random.Generator, c: _Compiled, start: int, m: int, width: int,
           leaf_p: np.ndarray, brand_premium: np.ndarray, dicts: dict[str, pa.Array]) -> pa.RecordBatch:
    leaf = rng.choice(leaf_p.shape[0], size=m, p=leaf_p).astype(np.int32)
    dept = c.leaf_l1[leaf]
    brand = _pick(rng, c.brand_pool, c.brand_count, leaf, skew=1.6)
    reseller = rng.integers(len(c.brand_values), len(c.store_values), size=m, dtype=np.int32)
    store = np.where(rng.random(m) < BRAND_STORE_RATE, brand, reseller)
    series = _pick(rng, c.series_pool, c.series_count, dept)

    attr_ids: dict[str, np.ndarray] = {}
    attr_shift = np.zeros(m)
    for name in ATTRIBUTE_COLUMNS:
        table = c.attrs[name]
        u = rng.random(m)
        n = table.count[leaf]
        slot = np.minimum((u**1.4 * n).astype(np.int32), np.maximum(n - 1, 0))
        attr_ids[name] = np.where(n > 0, table.pool[leaf, slot], -1).astype(np.int32)
        attr_shift += np.where(n > 0, table.log_price[leaf, slot], 0.0)

    price = _prices(rng, c, leaf, brand, brand_premium, attr_shift)
    rating, rating_count = _ratings(rng, m)
    ship_days = (rng.choice(14, size=m, p=SHIP_DAYS_PROBS) + 1).astype(np.int16)
    in_stock = np.clip(np.round(np.exp(rng.normal(np.log(40.0), 1.1, size=m))), 1, 500)
    stock = np.where(rng.random(m) < OUT_OF_STOCK_RATE, 0, in_stock).astype(np.int32)
    features, first, second = _features(rng, c, leaf)
    codes = _model_codes(rng, m)
    template = rng.integers(0, len(DESCRIPTION_TEMPLATES), size=m, dtype=np.int32)
    closer = _pick(rng, c.closer_pool, c.closer_count, dept)
    closer = np.where(rng.random(m) < CLOSING_SENTENCE_RATE, closer, len(c.closer_text) - 1)

    brand_text = _take(dicts["brand"], brand)
    name = _join(brand_text, " ", _take(c.series_text, series), " ", _take(c.nouns, leaf))
    fragments = {
        a: _take(c.attrs[a].fragment, np.where(attr_ids[a] < 0, len(c.attrs[a].values), attr_ids[a]))
        for a in TITLE_PREFIX_ATTRS + TITLE_SUFFIX_ATTRS
    }
    title = _join(
        brand_text, " ", _take(c.series_text, series), " ",
        *(fragments[a] for a in TITLE_PREFIX_ATTRS),
        _take(c.nouns, leaf), " ", codes,
        *(fragments[a] for a in TITLE_SUFFIX_ATTRS),
    )
    pieces = [pa.array([t[i] for t in DESCRIPTION_TEMPLATES], pa.string()) for i in range(4)]
    description = _join(
        _take(pieces[0], template), name, _take(pieces[1], template), _take(c.feature_text, first),
        _take(pieces[2], template), _take(c.feature_text, second), _take(pieces[3], template),
        _take(c.closer_text, closer),
    )

    columns = {
        "product_id": _format_ids(start, m, width),
        "title": title,
        "description": description,
        "category_l1": _dictionary(dept, dicts["category_l1"]),
        "category_l2": _dictionary(c.leaf_l2[leaf], dicts["category_l2"]),
        "category_l3": _dictionary(c.leaf_l3[leaf], dicts["category_l3"]),
        "brand": _dictionary(brand, dicts["brand"]),
        "store": _dictionary(store, dicts["store"]),
        **{a: _dictionary(attr_ids[a], dicts[a]) for a in ATTRIBUTE_COLUMNS},
        "price": pa.array(price, pa.float64()),
        "rating": pa.array(rating, pa.float32()),
        "rating_count": pa.array(rating_count, pa.int32()),
        "ship_days": pa.array(ship_days, pa.int16()),
        "stock": pa.array(stock, pa.int32()),
        "features": features,
    }
    return pa.RecordBatch.from_arrays([columns[f.name] for f in PRODUCT_SCHEMA], schema=PRODUCT_SCHEMA)


def _leaf_popularity(rng: np.random.Generator, n_leaves: int) -> np.ndarray:
    """Zipf-like leaf weights over a seed-dependent popularity ranking."""
    rank = rng.permutation(n_leaves)
    weight = 1.0 / (rank + 3.0) ** 0.7
    return weight / weight.sum()


def generate_products(n_products: int, seed: int) -> pa.Table:
    """A synthetic catalog of `n_products` rows, deterministic in `(n_products, seed)`.

    Returns a table with `PRODUCT_SCHEMA` (one record batch per `CHUNK_ROWS` rows; all
    batches share each categorical column's dictionary)."""
    if isinstance(n_products, bool) or not isinstance(n_products, (int, np.integer)) or n_products < 0:
        raise ValueError(f"n_products must be a non-negative integer, got {n_products!r}")
    n_products = int(n_products)
    c = _compiled()
    rng = np.random.default_rng(seed)
    leaf_p = _leaf_popularity(rng, len(taxonomy.LEAVES))
    brand_premium = rng.normal(0.0, 0.15, size=len(c.brand_values))
    dicts = {
        "category_l1": pa.array(c.l1_values, pa.string()),
        "category_l2": pa.array(c.l2_values, pa.string()),
        "category_l3": pa.array(c.l3_values, pa.string()),
        "brand": pa.array(c.brand_values, pa.string()),
        "store": pa.array(c.store_values, pa.string()),
        **{a: pa.array(c.attrs[a].values, pa.string()) for a in ATTRIBUTE_COLUMNS},
    }
    width = id_width(n_products)
    n_chunks = max(1, -(-n_products // CHUNK_ROWS))
    children = rng.spawn(n_chunks)
    batches = []
    for i, child in enumerate(children):
        start = i * CHUNK_ROWS
        m = min(CHUNK_ROWS, n_products - start)
        batches.append(_chunk(child, c, start, m, width, leaf_p, brand_premium, dicts))
    return pa.Table.from_batches(batches, schema=PRODUCT_SCHEMA)
