"""Loader for the public Amazebay-catalog-2M parquet schema.

Input columns (only ``parent_asin``, ``title`` and ``price`` are required):
``parent_asin``, ``title``, ``main_category``, ``categories`` (list of strings),
``price`` (string like ``"$1,299.00"``; may be null, empty, ``"None"`` or a range; a
numeric column is accepted too), ``average_rating``, ``rating_number``, ``features``
(list of strings), ``description`` (list of strings or a string), ``store``,
``details`` (a JSON object as a string, keys like ``"Brand"``, ``"Color"``...).

Mapping onto `ecomrlve.catalog_service.schema.PRODUCT_SCHEMA`:

- ``product_id`` = ``parent_asin``.
- ``category_l1..l3`` = the first three entries of ``categories``; when it is empty,
  ``main_category``; missing levels repeat the last known one (``["Electronics"]`` gives
  ``Electronics > Electronics > Electronics``); with neither, ``"Uncategorized"``. A
  ``">"`` inside a category name becomes ``"/"`` so paths stay unambiguous.
- ``brand`` = ``details["Brand"]`` (or ``"Brand Name"``), else ``store``, else null.
- attribute columns from ``details`` keys through `DETAIL_KEYS` (case-insensitive);
  unmatched keys are ignored. Values are stripped and cut to 200 characters.
- ``price``: the first (lowest) number of the string, rounded to cents; a range
  (``"$10.99 - $24.99"``) takes its low end and counts the ``price_range`` warning.
- ``rating`` = ``average_rating`` clipped to [0, 5]; a missing rating is stored as 0.0
  with ``rating_count`` 0 (warning ``missing_rating``). ``rating_count`` =
  ``rating_number`` (null -> 0).
- ``description``: list entries joined by one space; ``features``: non-empty strings.
- ``stock`` and ``ship_days`` are derived from the id with a stable digest
  (``hashlib.blake2b``; never the salted built-in hash): about 7% out of stock, else 1..500;
  ship days follow `synthetic.SHIP_DAYS_PROBS`.

Rows are skipped, and counted per reason in `LoadReport.skipped`, in this order of
checks: ``missing_id``, ``missing_title``, ``missing_price``, ``bad_price``,
``non_positive_price``, ``duplicate_id`` (the first valid row with an id wins; invalid
rows do not claim their id). Unparseable ``details`` JSON is not fatal: the row keeps no
attributes (brand falls back to ``store``) and counts the ``bad_details_json`` warning.

The file is read in record batches (`pyarrow.parquet.ParquetFile.iter_batches`), so
millions of rows never sit in Python lists at once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ecomrlve.catalog_service.schema import PRODUCT_SCHEMA, normalize_table
from ecomrlve.catalog_service.synthetic import OUT_OF_STOCK_RATE, SHIP_DAYS_PROBS
from ecomrlve.envs.catalog import ATTRIBUTE_COLUMNS, CATEGORICAL_COLUMNS, PRODUCT_COLUMNS

__all__ = [
    "LoadReport",
    "load_amazebay",
    "parse_price",
    "parse_details",
    "category_levels_of",
    "stock_and_ship_days",
    "DETAIL_KEYS",
    "SKIP_REASONS",
    "REQUIRED_COLUMNS",
]

REQUIRED_COLUMNS = ("parent_asin", "title", "price")
SKIP_REASONS = (
    "missing_id",
    "missing_title",
    "missing_price",
    "bad_price",
    "non_positive_price",
    "duplicate_id",
)
WARNINGS = ("bad_details_json", "price_range", "missing_rating", "missing_category")
MAX_ATTRIBUTE_CHARS = 200
UNCATEGORIZED = "Uncategorized"

# details key (case-folded, spaces collapsed) -> attribute column.
DETAIL_KEYS: dict[str, str] = {
    "color": "color",
    "colour": "color",
    "color name": "color",
    "size": "size",
    "size name": "size",
    "item size": "size",
    "material": "material",
    "material type": "material",
    "fabric type": "material",
    "connector type": "connector_type",
    "connector": "connector_type",
    "wattage": "wattage",
    "output wattage": "wattage",
    "capacity": "capacity",
    "storage capacity": "capacity",
    "memory storage capacity": "capacity",
    "digital storage capacity": "capacity",
    "hard disk size": "capacity",
    "screen size": "screen_size",
    "standing screen display size": "screen_size",
    "display size": "screen_size",
    "scent": "scent",
    "scent name": "scent",
    "flavor": "flavor",
    "flavour": "flavor",
    "flavor name": "flavor",
    "age range (description)": "age_range",
    "age range": "age_range",
    "recommended age": "age_range",
    "manufacturer recommended age": "age_range",
}
BRAND_KEYS = ("brand", "brand name")
_MISSING_PRICE = {"", "none", "null", "nan", "n/a", "na", "-"}
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_PRICE = re.compile(rf"^\$?\s*({_NUM})(?:\s*(?:-|–|to)\s*\$?\s*({_NUM}))?$", re.IGNORECASE)
_SHIP_CDF = np.cumsum(SHIP_DAYS_PROBS)


@dataclass
class LoadReport:
    """What `load_amazebay` read, kept and skipped (counts per reason)."""

    path: str = ""
    rows_read: int = 0
    rows_kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)

    @property
    def rows_skipped(self) -> int:
        return sum(self.skipped.values())

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def warn(self, reason: str) -> None:
        self.warnings[reason] = self.warnings.get(reason, 0) + 1

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_skipped": self.rows_skipped,
            "skipped": dict(sorted(self.skipped.items())),
            "warnings": dict(sorted(self.warnings.items())),
        }

    def summary(self) -> str:
        parts = [f"read {self.rows_read} rows, kept {self.rows_kept}, skipped {self.rows_skipped}"]
        if self.skipped:
            parts.append("skipped: " + ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items())))
        if self.warnings:
            parts.append("warnings: " + ", ".join(f"{k}={v}" for k, v in sorted(self.warnings.items())))
        return "; ".join(parts)


# --------------------------------------------------------------------------- field parsers


def _clean(value: Any, limit: int | None = None) -> str | None:
    """A stripped non-empty string with runs of whitespace collapsed, or None."""
    if type(value) is str:
        text = value.strip()
    elif value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    elif isinstance(value, (list, tuple)):
        text = ", ".join(str(v).strip() for v in value if v is not None and str(v).strip())
    else:
        text = str(value).strip()
    if not text:
        return None
    if "  " in text or "\n" in text or "\t" in text or "\r" in text:
        text = " ".join(text.split())
    return text[:limit] if limit else text


def parse_price(value: Any) -> tuple[float | None, str | None, bool]:
    """(price rounded to cents, skip reason, is_range). Exactly one of price / reason is
    None. ``"$1,299.00"`` -> 1299.0; ``"$5 - $9.50"`` -> 5.0 with is_range."""
    if value is None:
        return None, "missing_price", False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        price = float(value)
        if math.isnan(price):
            return None, "missing_price", False
        if not math.isfinite(price):
            return None, "bad_price", False
        return (round(price, 2), None, False) if price > 0 else (None, "non_positive_price", False)
    text = str(value).strip()
    if text.lower() in _MISSING_PRICE:
        return None, "missing_price", False
    m = _PRICE.match(text)
    if not m:
        return None, "bad_price", False
    price = round(float(m.group(1).replace(",", "")), 2)
    if price <= 0:
        return None, "non_positive_price", False
    return price, None, m.group(2) is not None


def parse_details(value: Any) -> tuple[dict[str, Any], bool]:
    """(details dict, ok). A JSON object string or a dict; None / "" give ({}, True);
    anything else (bad JSON, a JSON list) gives ({}, False)."""
    if value is None:
        return {}, True
    if isinstance(value, dict):
        return value, True
    text = str(value).strip()
    if not text:
        return {}, True
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return {}, False
    return (parsed, True) if isinstance(parsed, dict) else ({}, False)


@lru_cache(maxsize=4096)
def _key(name: Any) -> str:
    return " ".join(str(name).split()).casefold()


def attributes_of(details: dict[str, Any]) -> dict[str, str]:
    """Attribute columns found in `details` via `DETAIL_KEYS` (first matching key wins)."""
    out: dict[str, str] = {}
    for key, raw in details.items():
        attr = DETAIL_KEYS.get(_key(key))
        if attr is not None and attr not in out:
            value = _clean(raw, MAX_ATTRIBUTE_CHARS)
            if value is not None:
                out[attr] = value
    return out


def brand_of(details: dict[str, Any], store: str | None) -> str | None:
    for key, raw in details.items():
        if _key(key) in BRAND_KEYS:
            value = _clean(raw, MAX_ATTRIBUTE_CHARS)
            if value is not None:
                return value
    return store


def category_levels_of(categories: Any, main_category: Any) -> tuple[tuple[str, str, str], bool]:
    """((l1, l2, l3), found): see the module doc for the rules."""
    names = []
    if isinstance(categories, (list, tuple)):
        names = [c for c in (_clean(x, MAX_ATTRIBUTE_CHARS) for x in categories) if c]
    if not names:
        main = _clean(main_category, MAX_ATTRIBUTE_CHARS)
        names = [main] if main else []
    found = bool(names)
    if not found:
        names = [UNCATEGORIZED]
    names = [n.replace(">", "/") for n in names[:3]]
    while len(names) < 3:
        names.append(names[-1])
    return (names[0], names[1], names[2]), found


def _description(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(t for t in (_clean(v) for v in value) if t)
    return _clean(value) or ""


def _features(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [t for t in (_clean(v) for v in value) if t]
    text = _clean(value)
    return [text] if text else []


def stock_and_ship_days(product_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (stock int32, ship_days int16) per id from a blake2b digest: stock 0
    with probability `OUT_OF_STOCK_RATE`, else uniform 1..500; ship days drawn from
    `SHIP_DAYS_PROBS`."""
    if not product_ids:
        return np.empty(0, np.int32), np.empty(0, np.int16)
    raw = b"".join(
        hashlib.blake2b(pid.encode("utf-8"), digest_size=16, person=b"ecomrlve-stock").digest()
        for pid in product_ids
    )
    words = np.frombuffer(raw, dtype="<u4").reshape(-1, 4).astype(np.float64) / 2.0**32
    stock = np.where(words[:, 0] < OUT_OF_STOCK_RATE, 0, 1 + np.floor(words[:, 1] * 500)).astype(np.int32)
    ship = np.minimum(np.searchsorted(_SHIP_CDF, words[:, 2], side="right") + 1, 14).astype(np.int16)
    return stock, ship


# --------------------------------------------------------------------------- the loader


def _column(batch: pa.RecordBatch, name: str) -> list:
    i = batch.schema.get_field_index(name)
    return batch.column(i).to_pylist() if i >= 0 else [None] * batch.num_rows


def _convert_batch(batch: pa.RecordBatch, seen: set[str], report: LoadReport) -> pa.Table | None:
    ids, titles, prices = _column(batch, "parent_asin"), _column(batch, "title"), _column(batch, "price")
    mains, cats = _column(batch, "main_category"), _column(batch, "categories")
    ratings, counts = _column(batch, "average_rating"), _column(batch, "rating_number")
    feats, descs = _column(batch, "features"), _column(batch, "description")
    stores, details = _column(batch, "store"), _column(batch, "details")

    out: dict[str, list] = {name: [] for name in PRODUCT_COLUMNS if name not in ("stock", "ship_days")}
    for i in range(batch.num_rows):
        report.rows_read += 1
        pid = _clean(ids[i])
        if pid is None:
            report.skip("missing_id")
            continue
        title = _clean(titles[i])
        if title is None:
            report.skip("missing_title")
            continue
        price, reason, is_range = parse_price(prices[i])
        if reason is not None:
            report.skip(reason)
            continue
        if pid in seen:
            report.skip("duplicate_id")
            continue
        seen.add(pid)
        if is_range:
            report.warn("price_range")
        info, ok = parse_details(details[i])
        if not ok:
            report.warn("bad_details_json")
        attrs = attributes_of(info)
        store = _clean(stores[i], MAX_ATTRIBUTE_CHARS)
        (l1, l2, l3), found = category_levels_of(cats[i], mains[i])
        if not found:
            report.warn("missing_category")
        rating = ratings[i]
        if rating is None or (isinstance(rating, float) and not math.isfinite(rating)):
            report.warn("missing_rating")
            rating, count = 0.0, 0
        else:
            rating = min(max(float(rating), 0.0), 5.0)
            count = counts[i]
            count = 0 if count is None else min(max(int(count), 0), 2**31 - 1)

        out["product_id"].append(pid)
        out["title"].append(title)
        out["description"].append(_description(descs[i]))
        out["category_l1"].append(l1)
        out["category_l2"].append(l2)
        out["category_l3"].append(l3)
        out["brand"].append(brand_of(info, store))
        out["store"].append(store)
        for attr in ATTRIBUTE_COLUMNS:
            out[attr].append(attrs.get(attr))
        out["price"].append(price)
        out["rating"].append(rating)
        out["rating_count"].append(count)
        out["features"].append(_features(feats[i]))

    if not out["product_id"]:
        return None
    stock, ship = stock_and_ship_days(out["product_id"])
    arrays = {
        name: pa.array(values, type=pa.string())
        for name, values in out.items()
        if name in ("product_id", "title", "description") or name in CATEGORICAL_COLUMNS
    }
    arrays["price"] = pa.array(out["price"], pa.float64())
    arrays["rating"] = pa.array(out["rating"], pa.float32())
    arrays["rating_count"] = pa.array(out["rating_count"], pa.int32())
    arrays["ship_days"] = pa.array(ship, pa.int16())
    arrays["stock"] = pa.array(stock, pa.int32())
    arrays["features"] = pa.array(out["features"], pa.list_(pa.string()))
    return pa.table({name: arrays[name] for name in PRODUCT_COLUMNS})


def load_amazebay(path: str | os.PathLike, *, batch_size: int = 65_536) -> tuple[pa.Table, LoadReport]:
    """Read an Amazebay-catalog parquet file into a `PRODUCT_SCHEMA` table.

    Returns ``(table, report)``. Raises ValueError naming a missing required column
    (`REQUIRED_COLUMNS`)."""
    report = LoadReport(path=str(path))
    parquet = pq.ParquetFile(str(path))
    names = set(parquet.schema_arrow.names)
    for name in REQUIRED_COLUMNS:
        if name not in names:
            raise ValueError(f"{str(path)!r} is not an Amazebay catalog: missing column {name!r}")
    seen: set[str] = set()
    parts = []
    for batch in parquet.iter_batches(batch_size=batch_size):
        part = _convert_batch(batch, seen, report)
        if part is not None:
            parts.append(part)
    if parts:
        table = pa.concat_tables(parts)
    else:
        table = PRODUCT_SCHEMA.empty_table()
    report.rows_kept = len(table)
    return normalize_table(table, check_unique=False), report
