"""Benchmark: synthetic catalog generation, save, and memory-mapped load.

    python benchmarks/catalog_generate.py [--n 2000000] [--seed 0] [--dir DIR]

Prints generation time, rows/s, peak RSS, save time, load time and RSS growth of the
memory-mapped load (plus first-access times), and the load-vs-generate ratio; writes
the figures as JSON to ``benchmarks/results/catalog_generate.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ecomrlve.catalog_service import Catalog  # noqa: E402
from ecomrlve.catalog_service.synthetic import generate_products  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "catalog_generate.json"


def current_rss_mb() -> float:
    """Resident set size of this process now (Linux /proc; falls back to peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _load_phase(directory: Path, n: int) -> dict:
    """Load `directory` memory-mapped and touch it; run in a fresh process so that RSS
    figures are not blurred by the generator's freed memory."""
    # Catalog.load looks for a saved index through ecomrlve.catalog_service.search; that module's
    # one-time import cost is reported separately, not as load time.
    t0 = time.perf_counter()
    try:
        import ecomrlve.catalog_service.search  # noqa: F401
    except ImportError:
        pass
    search_import_s = time.perf_counter() - t0
    rss_before_load = current_rss_mb()
    t0 = time.perf_counter()
    loaded = Catalog.load(directory)
    load_s = time.perf_counter() - t0
    rss_after_load = current_rss_mb()
    t0 = time.perf_counter()
    loaded.numeric("price")
    loaded.category_rows("Tents")  # builds codes("category_l3") and the argsort index
    if n:
        loaded.product(0)  # builds every categorical code array
    first_access_s = time.perf_counter() - t0
    rss_after_access = current_rss_mb()
    rows = range(0, n, max(1, n // 2000))
    t0 = time.perf_counter()
    for row in rows:
        loaded.product(loaded.row_of(loaded.product_id(row)))
    product_us = (time.perf_counter() - t0) / max(len(rows), 1) * 1e6
    return {
        "load_mmap_s": round(load_s, 4),
        "load_rss_growth_mb": round(rss_after_load - rss_before_load, 1),
        "first_access_s": round(first_access_s, 3),
        "first_access_rss_growth_mb": round(rss_after_access - rss_after_load, 1),
        "product_lookup_us": round(product_us, 1),
        "search_module_import_s": round(search_import_s, 3),
    }


def measure_load(directory: Path, n: int) -> dict:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--load-phase", str(directory), "--n", str(n)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(n: int, seed: int, directory: Path) -> dict:
    rss_start = current_rss_mb()
    t0 = time.perf_counter()
    table = generate_products(n, seed)
    gen_s = time.perf_counter() - t0
    peak_gen = peak_rss_mb()
    table_mb = table.nbytes / 1e6

    catalog = Catalog(table, source="synthetic", seed=seed, validate=False, sequential_ids=True)
    t0 = time.perf_counter()
    catalog.save(directory)
    save_s = time.perf_counter() - t0
    file_mb = (directory / "products.arrow").stat().st_size / 1e6
    del catalog, table
    load = measure_load(directory, n)

    return {
        "n_products": n,
        "seed": seed,
        "generate_s": round(gen_s, 3),
        "rows_per_s": round(n / gen_s),
        "table_mb": round(table_mb, 1),
        "rss_start_mb": round(rss_start, 1),
        "peak_rss_mb": round(peak_gen, 1),
        "save_s": round(save_s, 3),
        "file_mb": round(file_mb, 1),
        **load,
        "load_vs_generate_speedup": round(gen_s / max(load["load_mmap_s"], 1e-9), 1),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=None, help="where to save the catalog (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--load-phase", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load_phase is not None:
        print(json.dumps(_load_phase(args.load_phase, args.n)))
        return {}

    tmp = None
    directory = args.dir
    if directory is None:
        tmp = tempfile.mkdtemp(prefix="catalog_bench_")
        directory = Path(tmp)
    try:
        result = run(args.n, args.seed, directory)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"generate   {result['n_products']:,} products in {result['generate_s']:.2f} s "
          f"({result['rows_per_s']:,} rows/s), table {result['table_mb']:.0f} MB, peak RSS {result['peak_rss_mb']:.0f} MB")
    print(f"save       {result['save_s']:.2f} s, products.arrow {result['file_mb']:.0f} MB")
    print(f"load(mmap) {result['load_mmap_s'] * 1000:.1f} ms, RSS growth {result['load_rss_growth_mb']:.1f} MB, "
          f"first access {result['first_access_s'] * 1000:.0f} ms (+{result['first_access_rss_growth_mb']:.0f} MB), "
          f"row_of+product() {result['product_lookup_us']:.0f} us")
    print(f"ratio      load is {result['load_vs_generate_speedup']:.0f}x faster than generating")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
