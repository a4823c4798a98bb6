"""Build and inspect catalog directories (synthetic catalog + search index).

Command line (also reachable as ``ecomrlve catalog ...`` once the top-level CLI calls
`add_catalog_commands`)::

    python -m ecomrlve.catalog_service.build build --n 100000 --seed 0 --out catalogs/c100k [--dense]
    python -m ecomrlve.catalog_service.build info catalogs/c100k

A catalog directory holds what ``Catalog.save(dir, with_index=True)`` writes: the product
table and the row lookups episodes use instead of scanning it (`ecomrlve.catalog_service.lookups`;
both memory-mappable) and, under ``search/``, the BM25 index (bm25s format) and, with
``--dense``, the embeddings and dense index. ``Catalog.load(dir)`` attaches the saved
searcher, so no index is rebuilt at load time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .search import read_meta
from .searchers import build_searcher

__all__ = ["build_catalog", "add_catalog_commands", "main_catalog", "catalog_info"]


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


# --------------------------------------------------------------------------- argparse


def _cmd_build(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.n < 1:
        problem = f"--n: the number of products must be >= 1, got {args.n}"
    elif out.exists() and not out.is_dir():
        problem = f"--out: {args.out} exists and is not a directory"
    else:
        problem = None
    if problem:
        Console(stderr=True).print(f"[red]error:[/red] {problem}")
        return 2
    build_catalog(args.n, args.seed, args.out, dense=args.dense)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    info = catalog_info(args.dir)
    table = Table(title=f"catalog {info['directory']}", show_header=False)
    table.add_row("products", f"{info['n_products']:,}")
    table.add_row("index kinds", ", ".join(info["index_kinds"]) or "(none saved)")
    for key, value in info["index"].items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    Console().print(table)
    return 0


def _add_leaf_commands(sub) -> None:
    build = sub.add_parser("build", help="generate a synthetic catalog, index it and save both")
    build.add_argument("--n", type=int, default=10_000, help="number of products (default 10000)")
    build.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    build.add_argument("--out", required=True, help="output directory")
    build.add_argument("--dense", action="store_true", help="also build the dense (embedding) index")
    build.set_defaults(func=_cmd_build)
    info = sub.add_parser("info", help="print the number of products and the saved index kinds")
    info.add_argument("dir", help="catalog directory")
    info.set_defaults(func=_cmd_info)


def add_catalog_commands(subparsers) -> argparse.ArgumentParser:
    """Register ``catalog build|info`` on a top-level ``add_subparsers()`` object.

    Each leaf sets ``func``; the caller runs ``sys.exit(args.func(args))``."""
    catalog = subparsers.add_parser("catalog", help="build or inspect a product catalog")
    _add_leaf_commands(catalog.add_subparsers(dest="catalog_command", required=True))
    return catalog


def main_catalog(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m ecomrlve.catalog_service.build {build,info} ...``."""
    parser = argparse.ArgumentParser(prog="python -m ecomrlve.catalog_service.build", description=__doc__.splitlines()[0])
    _add_leaf_commands(parser.add_subparsers(dest="catalog_command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main_catalog())
