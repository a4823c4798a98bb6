"""The sharded catalog search service (the only Ray module of `catalog_service`).

- `CatalogShard` (Ray actor) holds rows ``[start, stop)`` of the catalog (a zero-copy slice
  of the Arrow table, taken from the object store or from a built catalog directory) and a
  searcher over them. Its BM25 index is the matching slice of the *global* index (same idf,
  same average document length, same float32 postings), so a shard's scores are exactly
  the scores the unsharded searcher gives those rows.
- `ShardRouter` (plain picklable object, lives in each env worker) fans every query out to
  all shards and merges their top-k exactly: global row ids, score descending, then row
  ascending (for an empty query: ``rating_count`` descending, then row, as the unsharded
  searcher ranks). Sharded results therefore equal unsharded results, filters included.
  Concurrent queries from the worker's threads are micro-batched: while one fan-out is in
  flight the next requests queue up and go out together in one ``search_batch`` call per
  shard.
- `RoutedCatalog` is a `ecomrlve.envs.catalog.CatalogLike`: row data from a local (zero-copy) catalog,
  search from the router, so an environment runs unchanged on top of the shard service.

Fault tolerance: shards are restartable actors (``max_restarts=-1``, ``max_task_retries=-1``):
if one dies, Ray restarts it from its constructor arguments (the object-store refs or the
directory) and re-runs the in-flight batch; the router just sees a slower answer.

Only the lexical (BM25) index is sharded; a hybrid catalog is served by its lexical part.
"""

from __future__ import annotations

import concurrent.futures as cf
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
import ray

from ecomrlve.envs.catalog import SearchFilters, SearchHits

from .search import IndexConfig, LexicalSearcher, clip_top_k, coerce_filters, empty_hits
from .searchers import load_searcher

__all__ = [
    "CatalogSource", "CatalogShard", "ShardRouter", "RoutedCatalog", "shard_bounds", "slice_index",
    "index_arrays", "catalog_from_table", "start_shards", "merge_hits",
]


# --------------------------------------------------------------------------- helpers


def shard_bounds(n_rows: int, n_shards: int) -> list[tuple[int, int]]:
    """`n_shards` contiguous, balanced row ranges covering ``[0, n_rows)``."""
    if n_shards < 1:
        raise ValueError(f"number of shards must be >= 1, got {n_shards}")
    if n_rows < n_shards:
        raise ValueError(f"cannot split {n_rows} products into {n_shards} shards")
    edges = [(n_rows * i) // n_shards for i in range(n_shards + 1)]
    return [(edges[i], edges[i + 1]) for i in range(n_shards)]


def catalog_from_table(table):
    """A `Catalog` over an Arrow table, without copying it."""
    from .catalog import Catalog

    # the table comes from a validated catalog (or a slice of one): no re-validation
    return Catalog(table, source="shard", validate=False)


def _lexical(searcher) -> LexicalSearcher:
    lex = getattr(searcher, "lexical", searcher)
    if not isinstance(lex, LexicalSearcher):
        raise TypeError(f"cannot shard a {type(searcher).__name__}; a LexicalSearcher is needed")
    return lex


def index_arrays(searcher) -> dict:
    """The global BM25 index of `searcher` as plain arrays (what shards slice)."""
    lex = _lexical(searcher)
    return {
        "data": np.asarray(lex._data),
        "indices": np.asarray(lex._indices),
        "indptr": np.asarray(lex._indptr),
        "vocab": dict(lex._vocab),
        "n_docs": len(lex.catalog),
        "config": {"fields": tuple(lex.config.fields), "k1": lex.config.k1, "b": lex.config.b},
    }


def slice_index(index: dict, start: int, stop: int) -> dict:
    """The postings of documents ``[start, stop)`` of a CSC BM25 index (term-major), with
    document ids made relative to `start`; scores are copied bit for bit."""
    data, indices, indptr = index["data"], index["indices"], index["indptr"]
    keep = (indices >= start) & (indices < stop)
    cum = np.zeros(keep.size + 1, dtype=np.int64)
    np.cumsum(keep, out=cum[1:])
    return {
        "data": np.ascontiguousarray(data[keep]),
        "indices": (indices[keep] - indices.dtype.type(start)).astype(indices.dtype, copy=False),
        "indptr": cum[np.asarray(indptr, dtype=np.int64)],
        "vocab": index["vocab"],
        "n_docs": stop - start,
        "config": index["config"],
    }


def searcher_from_index(catalog, index: dict) -> LexicalSearcher:
    retriever = SimpleNamespace(
        scores={"data": index["data"], "indices": index["indices"], "indptr": index["indptr"],
                "num_docs": index["n_docs"]},
        vocab_dict=index["vocab"],
    )
    cfg = index["config"]
    return LexicalSearcher(catalog, retriever, IndexConfig(fields=tuple(cfg["fields"]), k1=cfg["k1"], b=cfg["b"]))


def merge_hits(parts: Sequence[tuple], k: int, popular: bool) -> SearchHits:
    """Exact top-k over shard answers ``(global rows, scores, rating_count or None)``."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return empty_hits()
    rows = np.concatenate([p[0] for p in parts]).astype(np.int64, copy=False)
    scores = np.concatenate([p[1] for p in parts]).astype(np.float32, copy=False)
    if popular:
        key = np.concatenate([p[2] for p in parts]).astype(np.int64, copy=False)
        order = np.lexsort((rows, -key))[:k]
        return SearchHits(rows=rows[order], scores=np.zeros(order.size, np.float32))
    order = np.lexsort((rows, -scores))[:k]
    return SearchHits(rows=rows[order], scores=scores[order])


def _is_popular(query) -> bool:
    return not ("" if query is None else str(query)).strip()


# --------------------------------------------------------------------------- source


@dataclass
class CatalogSource:
    """Where actors get the catalog from: object-store refs (works on any cluster), or a
    built catalog directory (memory-mapped; needs the path on every node)."""

    n_rows: int
    directory: str | None = None
    table_ref: Any = None  # ObjectRef of the pyarrow Table
    index_ref: Any = None  # ObjectRef of `index_arrays(...)`
    lookups_ref: Any = None  # ObjectRef of the catalog's `RowLookups` (shared, not rebuilt per worker)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_catalog(cls, catalog, searcher=None) -> "CatalogSource":
        """Put the table, its row lookups and the global BM25 index into the object store
        (one copy each)."""
        if searcher is None:
            searcher = catalog.searcher
        if searcher is None:
            from .searchers import build_searcher

            searcher = build_searcher(catalog)
            catalog.set_searcher(searcher)
        return cls(n_rows=len(catalog), table_ref=ray.put(catalog.table), index_ref=ray.put(index_arrays(searcher)),
                   lookups_ref=ray.put(catalog.lookups()))

    @classmethod
    def in_process(cls, catalog, searcher=None) -> "CatalogSource":
        """No Ray: shards built in this process read `catalog` and its index directly
        (benchmarks, tests)."""
        searcher = searcher or catalog.searcher or catalog._get_searcher()
        src = cls(n_rows=len(catalog))
        src._cache.update(catalog=catalog, table=catalog.table, index=index_arrays(searcher))
        return src

    @classmethod
    def from_dir(cls, directory, n_rows: int | None = None) -> "CatalogSource":
        directory = str(Path(directory).resolve())
        if n_rows is None:
            from .catalog import Catalog

            n_rows = len(Catalog.load(directory))
        return cls(n_rows=n_rows, directory=directory)

    def __getstate__(self):
        return {"n_rows": self.n_rows, "directory": self.directory, "table_ref": self.table_ref,
                "index_ref": self.index_ref, "lookups_ref": self.lookups_ref}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._cache = {}

    def catalog(self):
        """The full catalog (zero-copy from the object store, or memory-mapped)."""
        if "catalog" not in self._cache:
            if self.directory:
                from .catalog import Catalog

                self._cache["catalog"] = Catalog.load(self.directory)
            else:
                catalog = catalog_from_table(ray.get(self.table_ref))
                if self.lookups_ref is not None:
                    catalog.attach_lookups(ray.get(self.lookups_ref))
                self._cache["catalog"] = catalog
        return self._cache["catalog"]

    def table(self):
        if "table" in self._cache:
            return self._cache["table"]
        if self.directory:
            return self.catalog().table
        return ray.get(self.table_ref)

    def index(self) -> dict:
        if "index" in self._cache:
            return self._cache["index"]
        if self.directory:
            searcher = load_searcher(self.catalog(), self.directory)
            if searcher is None:
                raise FileNotFoundError(f"catalog directory {self.directory} has no search index; "
                                        "build one with `ecomrlve catalog build`")
            return index_arrays(searcher)
        return ray.get(self.index_ref)


# --------------------------------------------------------------------------- shard actor


class CatalogShardImpl:
    def __init__(self, shard_id: int, start: int, stop: int, source: CatalogSource):
        self.shard_id, self.start, self.stop = shard_id, start, stop
        table = source.table()
        self.catalog = catalog_from_table(table.slice(start, stop - start))
        self.searcher = searcher_from_index(self.catalog, slice_index(source.index(), start, stop))
        self._rating = np.asarray(self.catalog.numeric("rating_count")).astype(np.int64)
        self.served = 0
        self.batches = 0

    def _one(self, query, filters, k: int):
        hits = self.searcher.search(query, filters, k)
        rows = hits.rows
        pop = self._rating[rows] if _is_popular(query) else None
        return rows + self.start, hits.scores, pop

    def search_batch(self, requests: Sequence[tuple]) -> list:
        out = []
        for query, filters, k in requests:
            try:
                out.append(self._one(query, filters, k))
            except (ValueError, TypeError) as exc:
                out.append(("error", f"{type(exc).__name__}: {exc}"))
        self.served += len(requests)
        self.batches += 1
        return out

    def info(self) -> dict:
        return {"shard_id": self.shard_id, "start": self.start, "stop": self.stop, "rows": self.stop - self.start,
                "served": self.served, "batches": self.batches, "pid": __import__("os").getpid()}


CatalogShard = ray.remote(max_restarts=-1, max_task_retries=-1, max_concurrency=8)(CatalogShardImpl)
CatalogShard.__doc__ = "Ray actor holding rows [start, stop) of the catalog and its BM25 slice."


def start_shards(source: CatalogSource, n_shards: int, num_cpus: float = 0.25, resources: dict | None = None,
                 name_prefix: str | None = None, scheduling_strategy: Any = None) -> "ShardRouter":
    """Start `n_shards` shard actors over `source` and return a router over them (the
    router waits until every shard has loaded). `resources` and `scheduling_strategy`
    (e.g. ``"SPREAD"``) place them."""
    bounds = shard_bounds(source.n_rows, n_shards)
    shards = []
    for i, (a, b) in enumerate(bounds):
        opts: dict = {"num_cpus": num_cpus}
        if resources:
            opts["resources"] = dict(resources)
        if scheduling_strategy is not None:
            opts["scheduling_strategy"] = scheduling_strategy
        if name_prefix:
            opts["name"] = f"{name_prefix}{i}"
        shards.append(CatalogShard.options(**opts).remote(i, a, b, source))
    ray.get([s.info.remote() for s in shards])
    return ShardRouter(shards, bounds)


# --------------------------------------------------------------------------- router


class _Request:
    __slots__ = ("query", "filters", "k", "future", "t0")

    def __init__(self, query, filters, k):
        self.query, self.filters, self.k = query, filters, k
        self.future: cf.Future = cf.Future()
        self.t0 = time.perf_counter()


class ShardRouter:
    """Fan-out / exact merge over `CatalogShard`s; thread-safe; picklable (the batching
    threads are recreated in the process that unpickles it)."""

    def __init__(self, shards: Sequence, bounds: Sequence[tuple[int, int]], max_batch: int = 64,
                 dispatchers: int = 1):
        if len(shards) != len(bounds) or not shards:
            raise ValueError("a router needs one (start, stop) bound per shard and at least one shard")
        self.shards = list(shards)
        self.bounds = [tuple(map(int, b)) for b in bounds]
        self.max_batch = int(max_batch)
        self.dispatchers = int(dispatchers)
        self._init_runtime()

    def _init_runtime(self):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._idle = threading.Lock()  # held while a fan-out started by a caller/dispatcher is in flight
        self.n_batches = 0
        self.n_requests = 0
        # observer(latency_ms, n_shards, batch size or None): e.g. a metrics recorder; set
        # per process (not pickled), so this package needs no metrics dependency
        self.observer = None

    def __reduce__(self):
        return (ShardRouter, (self.shards, self.bounds, self.max_batch, self.dispatchers))

    def __len__(self) -> int:
        return self.bounds[-1][1]

    # -- public API -------------------------------------------------------------------
    def search(self, query: str, filters: SearchFilters | dict | None = None, top_k: int = 10) -> SearchHits:
        """Blocking search (the `CatalogLike.search` contract), batched with concurrent calls.

        When no fan-out is in flight the caller's thread sends it at once (no thread
        hand-off); otherwise the request queues and goes out with the next batch."""
        req = self._request(query, filters, top_k)
        if self._idle.acquire(blocking=False):
            try:
                self._dispatch(self._drain([req]))
            finally:
                self._idle.release()
            return req.future.result()
        self._ensure_threads()
        self._queue.put(req)
        return req.future.result()

    def search_many(self, requests: Sequence[tuple]) -> list[SearchHits]:
        """Many (query, filters, top_k) at once: one `search_batch` call per shard."""
        reqs = [self._request(*r) for r in requests]
        self._dispatch(reqs)
        return [r.future.result() for r in reqs]

    async def search_async(self, query: str, filters=None, top_k: int = 10) -> SearchHits:
        import asyncio

        req = self._request(query, filters, top_k)
        self._ensure_threads()
        self._queue.put(req)
        return await asyncio.wrap_future(req.future)

    def shard_info(self) -> list[dict]:
        return ray.get([s.info.remote() for s in self.shards])

    # -- internals --------------------------------------------------------------------
    @staticmethod
    def _request(query, filters, top_k) -> _Request:
        k = clip_top_k(top_k)  # bad input raises here, in the caller, like the unsharded searcher
        filters = coerce_filters(filters)
        return _Request("" if query is None else str(query), filters, k)

    def _ensure_threads(self):
        if len(self._threads) >= self.dispatchers:
            return
        with self._lock:
            while len(self._threads) < self.dispatchers:
                t = threading.Thread(target=self._loop, name=f"shard-router-{len(self._threads)}", daemon=True)
                t.start()
                self._threads.append(t)

    def _drain(self, batch: list) -> list:
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _loop(self):
        while True:
            batch = self._drain([self._queue.get()])
            with self._idle:  # callers queue behind this fan-out instead of sending their own
                self._dispatch(self._drain(batch))

    def _dispatch(self, batch: list[_Request]):
        try:
            payload = [(r.query, r.filters, r.k) for r in batch]
            answers = ray.get([s.search_batch.remote(payload) for s in self.shards])
            for i, req in enumerate(batch):
                parts = [a[i] for a in answers]
                err = next((p for p in parts if isinstance(p, tuple) and len(p) == 2 and p[0] == "error"), None)
                if err is not None:
                    req.future.set_exception(ValueError(err[1].split(": ", 1)[-1]))
                else:
                    req.future.set_result(merge_hits(parts, req.k, _is_popular(req.query)))
        except BaseException as exc:  # noqa: BLE001 - deliver every failure to its caller
            for req in batch:
                if not req.future.done():
                    req.future.set_exception(exc)
        self.n_batches += 1
        self.n_requests += len(batch)
        observer = self.observer
        if observer is not None:
            now = time.perf_counter()
            for j, req in enumerate(batch):
                observer((now - req.t0) * 1e3, len(self.shards), len(batch) if j == 0 else None)


# --------------------------------------------------------------------------- catalog view


class RoutedCatalog:
    """`CatalogLike` for environments: rows from `local`, search from `router`."""

    def __init__(self, local, router: ShardRouter):
        if len(local) != len(router):
            raise ValueError(f"local catalog has {len(local)} rows but the shards cover {len(router)}")
        self.local = local
        self.router = router

    def __len__(self) -> int:
        return len(self.local)

    def product_id(self, row: int) -> str:
        return self.local.product_id(row)

    def row_of(self, product_id: str):
        return self.local.row_of(product_id)

    def numeric(self, name: str):
        return self.local.numeric(name)

    def codes(self, name: str):
        return self.local.codes(name)

    def value(self, name: str, row: int):
        return self.local.value(name, row)

    def product(self, row: int) -> dict:
        return self.local.product(row)

    def category_rows(self, category_l3: str):
        return self.local.category_rows(category_l3)

    def leaf_vocabulary(self, category_l3: str):
        return self.local.leaf_vocabulary(category_l3)

    def search(self, query: str, filters: SearchFilters | None = None, top_k: int = 10) -> SearchHits:
        return self.router.search(query, filters, top_k)

    def __getattr__(self, name):  # anything else a catalog offers (table, ...)
        if name in ("local", "router"):
            raise AttributeError(name)
        return getattr(self.local, name)
