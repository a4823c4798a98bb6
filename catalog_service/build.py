"""Build and inspect catalog directories (synthetic catalog + search index).

Command line (the models `CatalogBuildConfig` / `CatalogInfoConfig` give the flags)::

    ecomrlve catalog build --n 100000 --seed 0 --out catalogs/c100k [--dense]
    ecomrlve catalog info catalogs/c100k

A catalog directory holds what ``Catalog.save(dir, with_index=True)`` writes: the product
table and the row lookups episodes use instead of scanning it (`ecomrlve.catalog_service.lookups`;
both memory-mappable) and, under ``search/``, the BM25 index (bm25s format) and, with
``--dense``, the embeddings and dense index. ``Catalog.load(dir)`` attaches the saved
searcher, so no index is rebuilt at load time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from rich.console import Console
from rich.table import Table

from .catalog import check_catalog_dir
from .search import read_meta
from .searchers import build_searcher

__all__ = ["build_catalog", "catalog_info", "CatalogBuildConfig", "CatalogInfoConfig", "build_command", "info_command"]


def _attach_searcher(catalog, searcher) -> None:
    """Make `searcher` the one `catalog.search` uses (and `catalog.save` writes)."""
    catalog.set_searcher(searcher)


def build_catalog(n_products: int, seed: int, out_dir, dense: bool = False, console: Console | None = None):
    """Generate ``Catalog.synthetic(n_products, seed)``, index it (BM25, plus dense
    embeddings when `dense`), save both to `out_dir` and return the catalog.

    Deterministic: same (n_products, seed) gives the same table and the same index files.
    Prints one line per stage with its wall time."""
    from .catalog import Catalog

    if n_products < 1:
        raise ValueError(f"n_products must be >= 1, got {n_products}")
    console = console or Console(stderr=True)
    out = Path(out_dir)
    t0 = time.perf_counter()
    with console.status(f"generating {n_products:,} synthetic products (seed {seed})"):
        catalog = Catalog.synthetic(n_products=n_products, seed=seed)
    t1 = time.perf_counter()
    console.log(f"generated {len(catalog):,} products in {t1 - t0:.1f} s")
    label = "BM25 + dense" if dense else "BM25"
    with console.status(f"building {label} index"):
        searcher = build_searcher(catalog, dense=dense)
    t2 = time.perf_counter()
    console.log(f"built {label} index in {t2 - t1:.1f} s")
    _attach_searcher(catalog, searcher)
    with console.status(f"saving to {out}"):
        catalog.save(out, with_index=True)
    t3 = time.perf_counter()
    console.log(f"saved to {out} in {t3 - t2:.1f} s (total {t3 - t0:.1f} s)")
    return catalog


def catalog_info(directory) -> dict:
    """What a catalog directory holds: number of products and the saved index kinds."""
    from .catalog import Catalog

    catalog = Catalog.load(directory)
    meta = read_meta(directory) or {}
    return {
        "directory": str(directory),
        "n_products": len(catalog),
        "index_kinds": meta.get("kinds", []),
        "index": {k: meta[k] for k in ("n_docs", "n_terms", "n_postings", "config", "dense") if k in meta},
    }


# --------------------------------------------------------------------------- commands


class CatalogBuildConfig(BaseModel):
    """``ecomrlve catalog build``: what to generate and where to save it."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(10_000, ge=1, description="number of products")
    seed: int = Field(0, description="generator seed")
    out: str = Field(description="output directory")
    dense: bool = Field(False, description="also build the dense (embedding) index")

    @field_validator("out")
    @classmethod
    def _directory(cls, out: str) -> str:
        if Path(out).exists() and not Path(out).is_dir():
            raise ValueError(f"{out} exists and is not a directory")
        return out


class CatalogInfoConfig(BaseModel):
    """``ecomrlve catalog info``: the directory to describe."""

    model_config = ConfigDict(extra="forbid")

    dir: Annotated[str, AfterValidator(check_catalog_dir)] = Field(
        description="catalog directory", json_schema_extra={"cli": {"positional": True}})


def build_command(cfg: CatalogBuildConfig) -> int:
    build_catalog(cfg.n, cfg.seed, cfg.out, dense=cfg.dense)
    return 0


def info_command(cfg: CatalogInfoConfig) -> int:
    info = catalog_info(cfg.dir)
    table = Table(title=f"catalog {info['directory']}", show_header=False)
    table.add_row("products", f"{info['n_products']:,}")
    table.add_row("index kinds", ", ".join(info["index_kinds"]) or "(none saved)")
    for key, value in info["index"].items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    Console().print(table)
    return 0
