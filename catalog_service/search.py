"""Lexical product search: BM25 (bm25s index format) with exact structured filters.

What a search returns (the contract every searcher here keeps):

- ``search(query, filters, top_k)`` ranks *every product that matches `filters`* by BM25
  score of `query` against the product's indexed text, best first, ties broken by
  ascending row, and returns at most ``top_k`` of them (``top_k`` clipped to [1, 1000]).
  Products with score 0 (no query token in their text) are never returned. This is exact:
  no candidate pool, no approximation; a test compares it with a brute-force ranking.
- An empty / whitespace-only query returns the products matching `filters` ranked by
  ``rating_count`` descending, then row; their scores are 0.0.
- A non-empty query none of whose tokens is in the index (or only stopwords) returns no
  hits; it is not an error.
- Rows are row indices into the catalog the searcher was built on. A searcher on a
  catalog made from a slice of a bigger table (a shard) answers with rows relative to that
  slice (0 .. len(slice) - 1); a router adds the slice's start back. Built from the slice
  with `build_searcher`, its BM25 statistics (idf, average length) are the slice's own;
  `ecomrlve.catalog_service.shards` instead slices the global index (same scores as unsharded).

Indexed text, per product (`IndexConfig.fields`): title, brand, category levels and
attribute values by default; ``features``, ``description`` and ``store`` can be added.
Analysis: Unicode NFKD, lower case, accents dropped, split on anything that is not a
letter or digit (so ``"USB-C 65W"`` gives ``usb``, ``c``, ``65w`` and ``"Crème"`` gives
``creme``; one-character tokens are kept, they matter for sizes), English stopwords of
bm25s removed, Snowball English stemming (PyStemmer). The corpus goes through Arrow
kernels; queries too, except ASCII ones, which take an equivalent pure-Python path
(a test checks they agree).

Scoring is BM25 "lucene" (k1=1.5, b=0.75), bit-identical to ``bm25s.BM25(method="lucene")``
on the same token lists (tested). The index is a bm25s CSC matrix built with vectorised
numpy (bm25s' own builder loops in Python, too slow for millions of products) and saved /
loaded with bm25s (``mmap=True``). Retrieval reads only the posting lists of the query's
terms, in numba kernels (``nogil``: threads of a Ray actor search concurrently), with the
filter checked per row inside the kernel: MaxScore dynamic pruning (document at a time,
exact), falling back to term-at-a-time over all postings when a selective filter keeps
the k-th score from forming (`LexicalSearcher.rank_candidates`). Both add a row's
postings in query order in float32, exactly as bm25s does. See ``benchmarks/search.py``
for the comparison with bm25s' own numba ``retrieve``, which scores and scans every
document, has no filters, returns zero-score filler and does not order ties by row.
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from ecomrlve.envs.catalog import ATTRIBUTE_COLUMNS, SearchFilters, SearchHits

from .filters import CompiledFilters, compile_filters

__all__ = [
    "IndexConfig",
    "LexicalSearcher",
    "Analyzer",
    "coerce_filters",
    "clip_top_k",
    "empty_hits",
    "MAX_TOP_K",
    "SEARCH_DIR",
    "read_meta",
]

MAX_TOP_K = 1000
MAX_QUERY_TOKENS = 128  # longer queries are truncated (keeps a hostile query cheap)
SEARCH_DIR = "search"  # sub-directory of a catalog directory holding the indexes
_META_FILE = "search_meta.json"
_BM25_DIR = "bm25"
_FORMAT_VERSION = 1
_SPLIT_PATTERN = r"[^\p{L}\p{N}]+"  # RE2, Arrow
_MARKS = r"\p{M}+"
_ASCII_TOKEN = re.compile("[0-9a-z]+")  # the same split for ASCII text (no marks, no NFKD change)
_CATEGORY_FIELDS = ("category_l1", "category_l2", "category_l3")
_FIELD_GROUPS = {"category": _CATEGORY_FIELDS, "attributes": ATTRIBUTE_COLUMNS}
_TEXT_FIELDS = ("title", "description", "features")
_CATEGORICAL_FIELDS = ("brand", "store") + _CATEGORY_FIELDS + ATTRIBUTE_COLUMNS


# --------------------------------------------------------------------------- helpers


def clip_top_k(top_k) -> int:
    """``top_k`` as an int in [1, MAX_TOP_K]; raises ValueError when not a number."""
    try:
        k = int(top_k)
    except (TypeError, ValueError):
        raise ValueError(f"top_k must be an integer, got {top_k!r}") from None
    return min(max(k, 1), MAX_TOP_K)


def coerce_filters(filters) -> SearchFilters | None:
    """Accept None, a `SearchFilters` or a mapping (validated, errors name the field)."""
    if filters is None or isinstance(filters, SearchFilters):
        return filters
    if isinstance(filters, Mapping):
        return SearchFilters.model_validate(dict(filters))
    raise ValueError(f"filters must be an object, got {type(filters).__name__}")


def empty_hits() -> SearchHits:
    return SearchHits(rows=np.zeros(0, dtype=np.int64), scores=np.zeros(0, dtype=np.float32))


def _hits(rows: np.ndarray, scores: np.ndarray) -> SearchHits:
    return SearchHits(
        rows=np.asarray(rows, dtype=np.int64), scores=np.asarray(scores, dtype=np.float32)
    )


# --------------------------------------------------------------------------- analysis


class Analyzer:
    """Text -> terms: NFKD + lower case + accents dropped, split on non letters/digits,
    stopwords dropped, Snowball stemming (module docstring).

    Stateless apart from a cache of raw token -> stem (None for stopwords)."""

    def __init__(self, stopwords: Iterable[str] | None = None, language: str = "english"):
        import Stemmer  # PyStemmer
        from bm25s.stopwords import STOPWORDS_EN

        self.language = language
        self.stopwords = frozenset(STOPWORDS_EN if stopwords is None else stopwords)
        self._stemmer = Stemmer.Stemmer(language)
        self._cache: dict[str, str | None] = {}
        self._lock = threading.Lock()

    @staticmethod
    def split(texts: pa.Array) -> pa.Array:
        """A list<string> array: the raw (unstemmed) tokens of each text: NFKD, lower case,
        accents dropped (``"Crème"`` -> ``creme``), split on anything but letters/digits."""
        folded = pc.utf8_lower(pc.utf8_normalize(texts, "NFKD"))
        return pc.split_pattern_regex(pc.replace_substring_regex(folded, _MARKS, ""), _SPLIT_PATTERN)

    def stems(self, raw_tokens: list[str]) -> list[str | None]:
        """Stem each raw token; None for stopwords and empty strings."""
        missing = [t for t in dict.fromkeys(raw_tokens) if t not in self._cache]
        if missing:
            keep = [t for t in missing if t and t not in self.stopwords]
            stemmed = dict(zip(keep, self._stemmer.stemWords(keep)))
            with self._lock:
                for t in missing:
                    self._cache[t] = stemmed.get(t)
        cache = self._cache
        return [cache[t] for t in raw_tokens]

    def query_terms(self, query: str) -> list[str]:
        """The terms of one query, in order (duplicates kept, as bm25s does). ASCII
        queries take a pure-Python path that splits exactly like the Arrow kernels."""
        if query.isascii():
            raw = _ASCII_TOKEN.findall(query.lower())[:MAX_QUERY_TOKENS]
        else:
            lists = self.split(pa.array([query], type=pa.string()))
            raw = [t for t in lists.flatten().to_pylist() if t][:MAX_QUERY_TOKENS]
        return [s for s in self.stems(raw) if s is not None]


# --------------------------------------------------------------------------- index build


@dataclass(frozen=True)
class IndexConfig:
    """What is indexed and how it is scored. ``fields`` may name columns of the product
    table (title, description, features, brand, store, category_l1..3, attribute columns)
    or the groups ``category`` and ``attributes``."""

    fields: tuple[str, ...] = ("title", "brand", "category", "attributes")
    k1: float = 1.5
    b: float = 0.75

    def columns(self) -> tuple[str, ...]:
        out: list[str] = []
        for f in self.fields:
            for col in _FIELD_GROUPS.get(f, (f,)):
                if col not in _TEXT_FIELDS and col not in _CATEGORICAL_FIELDS:
                    raise ValueError(f"IndexConfig.fields: unknown field {f!r}")
                if col not in out:
                    out.append(col)
        return tuple(out)


class _TermTable:
    """Assigns provisional term ids while tokens stream in; sorted ids at the end."""

    def __init__(self, analyzer: Analyzer):
        self.analyzer = analyzer
        self.term_ids: dict[str, int] = {}
        self._raw_to_term: dict[str, int] = {}

    def map_raw(self, raw_vocab: list[str]) -> np.ndarray:
        """Provisional term id per raw token (-1 for stopword / empty)."""
        unknown = [t for t in raw_vocab if t not in self._raw_to_term]
        if unknown:
            for raw, stem in zip(unknown, self.analyzer.stems(unknown)):
                if stem is None:
                    self._raw_to_term[raw] = -1
                else:
                    self._raw_to_term[raw] = self.term_ids.setdefault(stem, len(self.term_ids))
        return np.array([self._raw_to_term[t] for t in raw_vocab], dtype=np.int64)

    def finalize(self) -> tuple[dict[str, int], np.ndarray]:
        """(vocab sorted by term -> id, remap from provisional to final ids)."""
        terms = sorted(self.term_ids)
        vocab = {t: i for i, t in enumerate(terms)}
        remap = np.empty(len(terms) + 1, dtype=np.int64)
        for term, provisional in self.term_ids.items():
            remap[provisional] = vocab[term]
        remap[-1] = -1
        return vocab, remap


def _chunks(column) -> Iterator[tuple[int, pa.Array]]:
    """(row offset, array) for each chunk of a (Chunked)Array."""
    if isinstance(column, pa.ChunkedArray):
        offset = 0
        for chunk in column.chunks:
            yield offset, chunk
            offset += len(chunk)
    else:
        yield 0, column


def _tokens_of_strings(arr: pa.Array, terms: _TermTable) -> tuple[np.ndarray, np.ndarray]:
    """(position of the source string, term id) for every kept token of `arr`."""
    lists = Analyzer.split(arr)
    parents = pc.list_parent_indices(lists).to_numpy()
    flat = lists.flatten()
    if len(flat) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    encoded = pc.dictionary_encode(flat)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    raw_term = terms.map_raw(encoded.dictionary.to_pylist())
    term = raw_term[encoded.indices.to_numpy()]
    keep = term >= 0
    return parents[keep].astype(np.int64), term[keep]


def _text_column(catalog, name: str):
    """A string or list<string> column as Arrow, from ``catalog.table`` when present."""
    table = getattr(catalog, "table", None)
    if table is not None and name in table.column_names:
        return table.column(name)
    values = [catalog.value(name, r) for r in range(len(catalog))]
    if name == "features":
        return pa.array(values, type=pa.list_(pa.string()))
    return pa.array(values, type=pa.string())


def _text_field_tokens(catalog, name: str, terms: _TermTable) -> tuple[np.ndarray, np.ndarray]:
    """(row, term) pairs of a free-text field (string or list<string>)."""
    docs, toks = [], []
    for offset, arr in _chunks(_text_column(catalog, name)):
        if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
            owner = pc.list_parent_indices(arr).to_numpy().astype(np.int64)
            pos, term = _tokens_of_strings(arr.flatten(), terms)
            docs.append(owner[pos] + offset)
        else:
            if pa.types.is_dictionary(arr.type):
                arr = arr.cast(arr.type.value_type)
            pos, term = _tokens_of_strings(arr, terms)
            docs.append(pos + offset)
        toks.append(term)
    return np.concatenate(docs), np.concatenate(toks)


def _categorical_field_tokens(catalog, name: str, terms: _TermTable) -> tuple[np.ndarray, np.ndarray]:
    """(row, term) pairs of a categorical field: its distinct values are tokenised once
    and each row takes the token list of its code."""
    codes, values = catalog.codes(name)
    values = values.to_pylist() if hasattr(values, "to_pylist") else list(values)
    pos, term = _tokens_of_strings(pa.array(values, type=pa.string()), terms)
    per_value = np.bincount(pos, minlength=len(values) + 1)  # last slot: null code -1
    per_value[-1] = 0
    value_start = np.concatenate([[0], np.cumsum(per_value[:-1])])  # pos is sorted
    codes = np.asarray(codes)
    lengths = per_value[codes]
    total = int(lengths.sum())
    rows = np.repeat(np.arange(codes.size, dtype=np.int64), lengths)
    starts = np.repeat(value_start[np.where(codes < 0, 0, codes)] - np.cumsum(lengths) + lengths, lengths)
    return rows, term[starts + np.arange(total, dtype=np.int64)]


def bm25_lucene_scores(
    term: np.ndarray, doc: np.ndarray, n_docs: int, n_terms: int, k1: float, b: float
) -> dict:
    """The bm25s CSC score matrix for (term, doc) token pairs (one pair per occurrence).

    Reproduces ``bm25s.BM25(method="lucene")`` exactly: idf = ln(1 + (N - df + .5)/(df + .5))
    rounded to float32; tfc = tf / (k1 (1 - b + b dl / avgdl) + tf) in float64; score =
    float32(idf * tfc). Returns ``{"data", "indices", "indptr", "num_docs"}``."""
    doc_len = np.bincount(doc, minlength=n_docs)
    avg_doc_len = doc_len.mean() if n_docs else 0.0
    key = term.astype(np.int64) * np.int64(n_docs) + doc.astype(np.int64)
    key.sort(kind="stable")
    if key.size:
        starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
        tf = np.diff(np.concatenate([starts, [key.size]])).astype(np.float64)
        key = key[starts]
    else:
        tf = np.zeros(0, np.float64)
    term_u = key // n_docs if n_docs else key
    doc_u = (key - term_u * n_docs).astype(np.int32)
    del key
    df = np.bincount(term_u, minlength=n_terms)
    idf = np.array(
        [math.log(1 + (n_docs - d + 0.5) / (d + 0.5)) if d else 0.0 for d in df.tolist()],
        dtype=np.float32,
    )
    dl = doc_len[doc_u].astype(np.float64)
    tfc = tf / (k1 * ((1 - b) + b * dl / avg_doc_len) + tf)
    data = (idf[term_u].astype(np.float64) * tfc).astype(np.float32)
    indptr = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    return {"data": data, "indices": doc_u, "indptr": indptr, "num_docs": int(n_docs)}


def corpus_tokens(catalog, config: IndexConfig, analyzer: Analyzer) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """All (row, term id) token pairs of `catalog` under `config`, and the vocabulary."""
    terms = _TermTable(analyzer)
    docs, toks = [], []
    for col in config.columns():
        fn = _text_field_tokens if col in _TEXT_FIELDS else _categorical_field_tokens
        d, t = fn(catalog, col, terms)
        docs.append(d)
        toks.append(t)
    vocab, remap = terms.finalize()
    doc = np.concatenate(docs) if docs else np.zeros(0, np.int64)
    term = remap[np.concatenate(toks)] if toks else np.zeros(0, np.int64)
    return doc, term, vocab


def build_bm25(catalog, config: IndexConfig, analyzer: Analyzer):
    """A ``bm25s.BM25`` (numba backend) holding the index of `catalog`."""
    import bm25s

    doc, term, vocab = corpus_tokens(catalog, config, analyzer)
    scores = bm25_lucene_scores(term, doc, len(catalog), len(vocab), config.k1, config.b)
    retriever = bm25s.BM25(k1=config.k1, b=config.b, method="lucene", backend="numba")
    retriever.scores = scores
    retriever.vocab_dict = vocab
    retriever.unique_token_ids_set = set(vocab.values())
    retriever.nonoccurrence_array = None
    return retriever


# --------------------------------------------------------------------------- retrieval kernels
#
# Filters reach the kernels as plain arrays (numba passes each array argument of a call by
# reference count, so a per-row helper call with many arrays costs ~100x the check itself;
# the row check is therefore written out inline, in `_filter_rows` and in the MaxScore loop):
#   active[4], lo[4], hi[4], lo_strict[4]  numeric predicates on the `_NUMERIC_SLOTS` columns
#                                           c0..c3 (lo < v or lo <= v, and v <= hi)
#   n_cat, codes (tuple of _MAX_CAT int32 code columns, unused ones a dummy),
#   luts (bool, concatenated), lut_off[_MAX_CAT]: row passes predicate j when
#                                           luts[lut_off[j] + codes[j][row] + 1] (null -> slot 0)

_NUMERIC_SLOTS = ("price", "rating", "ship_days", "stock")
_MAX_CAT = 1 + len(_CATEGORY_FIELDS) + len(ATTRIBUTE_COLUMNS)  # brand, category levels, attributes
_SLACK = 1e-5  # relative slack on float32 score bounds (rounding of up to 128 additions)
_DAAT_MIN_POSTINGS = 20_000  # below this, term-at-a-time is cheaper than pruning
_POPULAR_SCAN = 32_768  # empty query: rows checked in popularity order before a full mask
_DAAT_BUDGET_DIVISOR = 3  # MaxScore gives up after postings / 3 rows without k hits


@njit(nogil=True, cache=True)
def _accumulate(token_ids, data, indices, indptr, scores):  # pragma: no cover - numba
    """BM25 of every row touching a query term. `scores` is an all-zero float32 scratch
    array of length n_docs; it is all-zero again on return. Returns (rows, scores) of
    the touched rows in first-touch order. Adds per row in query-term order (as bm25s)."""
    total = 0
    for t in token_ids:
        total += indptr[t + 1] - indptr[t]
    touched = np.empty(total, dtype=np.int64)
    n = 0
    for t in token_ids:
        for p in range(indptr[t], indptr[t + 1]):
            d = indices[p]
            if scores[d] == 0.0:
                touched[n] = d
                n += 1
            scores[d] += data[p]
    rows = touched[:n].copy()
    out = np.empty(n, dtype=np.float32)
    for i in range(n):
        out[i] = scores[rows[i]]
        scores[rows[i]] = 0.0
    return rows, out


@njit(nogil=True, cache=True)
def _filter_rows(rows, active, lo, hi, lo_strict, c0, c1, c2, c3, n_cat, codes, luts, lut_off):  # pragma: no cover
    """Which of `rows` pass the filter (see the layout above)."""
    out = np.empty(rows.size, dtype=np.bool_)
    for i in range(rows.size):
        d = rows[i]
        ok = True
        if active[0]:
            v = c0[d]
            ok = (v > lo[0] if lo_strict[0] else v >= lo[0]) and v <= hi[0]
        if ok and active[1]:
            v = c1[d]
            ok = (v > lo[1] if lo_strict[1] else v >= lo[1]) and v <= hi[1]
        if ok and active[2]:
            v = c2[d]
            ok = (v > lo[2] if lo_strict[2] else v >= lo[2]) and v <= hi[2]
        if ok and active[3]:
            v = c3[d]
            ok = (v > lo[3] if lo_strict[3] else v >= lo[3]) and v <= hi[3]
        if ok:
            for j in range(n_cat):
                if not luts[lut_off[j] + codes[j][d] + 1]:
                    ok = False
                    break
        out[i] = ok
    return out


@njit(nogil=True)
def _advance(indices, p, e, d):  # pragma: no cover - numba
    """First position in [p, e) whose doc is >= d (galloping, then binary search)."""
    if p >= e or indices[p] >= d:
        return p
    step = 1
    while p + step < e and indices[p + step] < d:
        p += step
        step *= 2
    lo = p + 1
    hi = min(p + step, e)
    while lo < hi:
        mid = (lo + hi) >> 1
        if indices[mid] < d:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(nogil=True)
def _heap_worse(hs, hr, i, j):  # pragma: no cover - numba
    """Entry i ranks below entry j (lower score, or equal score and higher row)."""
    return hs[i] < hs[j] or (hs[i] == hs[j] and hr[i] > hr[j])


@njit(nogil=True)
def _heap_sift_down(hs, hr, i, size):  # pragma: no cover - numba
    while True:
        left = 2 * i + 1
        if left >= size:
            return
        worst = left
        right = left + 1
        if right < size and _heap_worse(hs, hr, right, left):
            worst = right
        if _heap_worse(hs, hr, worst, i):
            hs[i], hs[worst] = hs[worst], hs[i]
            hr[i], hr[worst] = hr[worst], hr[i]
            i = worst
        else:
            return


@njit(nogil=True)
def _heap_sift_up(hs, hr, i):  # pragma: no cover - numba
    while i > 0:
        parent = (i - 1) >> 1
        if _heap_worse(hs, hr, i, parent):
            hs[i], hs[parent] = hs[parent], hs[i]
            hr[i], hr[parent] = hr[parent], hr[i]
            i = parent
        else:
            return


@njit(nogil=True, cache=True)
def _maxscore_top_k(
    uterms, umult, ubound, qpos, data, indices, indptr, k, budget,
    has_filter, active, lo, hi, lo_strict, c0, c1, c2, c3, n_cat, codes, luts, lut_off,
):  # pragma: no cover - numba
    """Exact top-k BM25 among rows passing the filter, by MaxScore dynamic pruning.

    `uterms`: the query's distinct term ids sorted by `ubound` ascending; `umult[i]` is
    how often term i occurs in the query and ``ubound[i]`` bounds its total contribution
    (largest posting score x multiplicity). `qpos[j]`: index in `uterms` of the j-th query
    token; a row's score is the float32 sum of its postings in query-token order, exactly
    as bm25s computes it. Rows are visited in ascending order, so a row enters a full heap
    only with a strictly higher score than the worst kept one, which makes ties fall to
    the lower row. Terms whose cumulative bound cannot beat the k-th score
    ("non-essential") no longer drive the iteration; they are only probed for rows that
    could still make it.

    Gives up when `budget` rows (negative: no limit) have been visited and fewer than k
    passed the filter: without a k-th score there is nothing to prune with (typically a
    selective filter unrelated to the query); the caller then runs `_exhaustive_top_k`.
    Returns (rows, scores, finished), rows unsorted.
    """
    m = uterms.size
    ptr = np.empty(m, dtype=np.int64)
    end = np.empty(m, dtype=np.int64)
    for i in range(m):
        ptr[i] = indptr[uterms[i]]
        end[i] = indptr[uterms[i] + 1]
    prefix = np.empty(m, dtype=np.float64)  # bound of a row holding only terms 0..i
    acc = 0.0
    for i in range(m):
        acc += ubound[i]
        prefix[i] = acc * (1.0 + _SLACK)
    hs = np.empty(k, dtype=np.float32)
    hr = np.empty(k, dtype=np.int64)
    size = 0
    theta = -np.inf
    ne = 0  # terms 0..ne-1 are non-essential
    vals = np.zeros(m, dtype=np.float32)
    big = np.iinfo(np.int64).max
    visited = 0
    while ne < m:
        visited += 1
        if budget >= 0 and visited > budget and size < k:
            return hr[:size].copy(), hs[:size].copy(), False
        d = big
        for i in range(ne, m):
            if ptr[i] < end[i]:
                doc = indices[ptr[i]]
                if doc < d:
                    d = doc
        if d == big:
            break
        partial = 0.0
        for i in range(ne, m):
            if ptr[i] < end[i] and indices[ptr[i]] == d:
                vals[i] = data[ptr[i]]
                ptr[i] += 1
                partial += vals[i] * umult[i]
            else:
                vals[i] = 0.0
        if ne > 0 and (partial * (1.0 + _SLACK)) + prefix[ne - 1] <= theta:
            continue  # even with every non-essential term this row cannot enter
        if has_filter:  # the row check of `_filter_rows`, written out (see the layout note)
            ok = True
            if active[0]:
                v = c0[d]
                ok = (v > lo[0] if lo_strict[0] else v >= lo[0]) and v <= hi[0]
            if ok and active[1]:
                v = c1[d]
                ok = (v > lo[1] if lo_strict[1] else v >= lo[1]) and v <= hi[1]
            if ok and active[2]:
                v = c2[d]
                ok = (v > lo[2] if lo_strict[2] else v >= lo[2]) and v <= hi[2]
            if ok and active[3]:
                v = c3[d]
                ok = (v > lo[3] if lo_strict[3] else v >= lo[3]) and v <= hi[3]
            if ok:
                for j in range(n_cat):
                    if not luts[lut_off[j] + codes[j][d] + 1]:
                        ok = False
                        break
            if not ok:
                continue
        pruned = False
        for i in range(ne - 1, -1, -1):
            if (partial * (1.0 + _SLACK)) + prefix[i] <= theta:
                pruned = True
                break
            p = _advance(indices, ptr[i], end[i], d)
            ptr[i] = p
            if p < end[i] and indices[p] == d:
                vals[i] = data[p]
                partial += vals[i] * umult[i]
            else:
                vals[i] = 0.0
        if pruned:
            continue
        score = np.float32(0.0)
        for j in range(qpos.size):
            score = np.float32(score + vals[qpos[j]])
        if size == k and not score > theta:
            continue
        if size < k:
            hs[size] = score
            hr[size] = d
            _heap_sift_up(hs, hr, size)
            size += 1
        else:
            hs[0] = score
            hr[0] = d
            _heap_sift_down(hs, hr, 0, size)
        if size == k:
            theta = hs[0]
            while ne < m and prefix[ne] <= theta:
                ne += 1
    return hr[:size].copy(), hs[:size].copy(), True


@njit(nogil=True, cache=True)
def _exhaustive_top_k(
    token_ids, data, indices, indptr, scores, k,
    has_filter, active, lo, hi, lo_strict, c0, c1, c2, c3, n_cat, codes, luts, lut_off,
):  # pragma: no cover - numba
    """Exact top-k by scoring, term at a time, every row that holds a query term and
    passes the filter. The filter is checked once per row, when its first posting is met
    (posting lists ascend, so columns are read in order); a failing row is marked -1 in
    the all-zero float32 scratch `scores` and skipped afterwards; `scores` is all-zero
    again on return. Cost is linear in the postings whatever the filter. Sums per row in
    query-token order (as bm25s). Returns (rows, scores), unsorted."""
    total = 0
    for t in token_ids:
        total += indptr[t + 1] - indptr[t]
    touched = np.empty(total, dtype=np.int64)
    n = 0
    for t in token_ids:
        for p in range(indptr[t], indptr[t + 1]):
            d = indices[p]
            s = scores[d]
            if s < 0.0:
                continue
            if s == 0.0:
                touched[n] = d
                n += 1
                if has_filter:  # the row check of `_filter_rows`, written out
                    ok = True
                    if active[0]:
                        v = c0[d]
                        ok = (v > lo[0] if lo_strict[0] else v >= lo[0]) and v <= hi[0]
                    if ok and active[1]:
                        v = c1[d]
                        ok = (v > lo[1] if lo_strict[1] else v >= lo[1]) and v <= hi[1]
                    if ok and active[2]:
                        v = c2[d]
                        ok = (v > lo[2] if lo_strict[2] else v >= lo[2]) and v <= hi[2]
                    if ok and active[3]:
                        v = c3[d]
                        ok = (v > lo[3] if lo_strict[3] else v >= lo[3]) and v <= hi[3]
                    if ok:
                        for j in range(n_cat):
                            if not luts[lut_off[j] + codes[j][d] + 1]:
                                ok = False
                                break
                    if not ok:
                        scores[d] = -1.0
                        continue
            scores[d] = s + data[p]
    hs = np.empty(k, dtype=np.float32)
    hr = np.empty(k, dtype=np.int64)
    size = 0
    for i in range(n):
        d = touched[i]
        score = scores[d]
        scores[d] = 0.0
        if score < 0.0:
            continue
        if size < k:
            hs[size] = score
            hr[size] = d
            _heap_sift_up(hs, hr, size)
            size += 1
        elif score > hs[0] or (score == hs[0] and d < hr[0]):
            hs[0] = score
            hr[0] = d
            _heap_sift_down(hs, hr, 0, size)
    return hr[:size].copy(), hs[:size].copy()


def _popular_top_k(order: np.ndarray, k: int, has_filter, *filter_args) -> np.ndarray | None:
    """The first `k` rows of the first `_POPULAR_SCAN` entries of `order` that pass the
    filter, or None when fewer than `k` pass there (the caller then masks every row)."""
    if not has_filter:
        return order[:k]
    head = order[:_POPULAR_SCAN]
    got = head[_filter_rows(head, *filter_args)][:k]
    if got.size == k or head.size == order.size:
        return got
    return None


def _term_max(data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Largest posting score of each term (0 for a term without postings)."""
    n_terms = indptr.size - 1
    out = np.zeros(n_terms, dtype=np.float32)
    nonempty = np.flatnonzero(indptr[1:] > indptr[:-1])
    if nonempty.size:
        out[nonempty] = np.maximum.reduceat(data, indptr[:-1][nonempty])
    return out


def _readonly_int32(codes: np.ndarray) -> np.ndarray:
    view = np.ascontiguousarray(codes, dtype=np.int32).view()
    view.flags.writeable = False
    return view


_DUMMY_CODES = _readonly_int32(np.zeros(1, dtype=np.int32))


@dataclass(frozen=True)
class _KernelFilters:
    """`CompiledFilters` in the array layout the numba kernels take (see above)."""

    has_filter: bool
    active: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    lo_strict: np.ndarray
    columns: tuple  # the four numeric columns, `_NUMERIC_SLOTS` order
    n_cat: int
    codes: tuple  # _MAX_CAT read-only int32 arrays
    luts: np.ndarray
    lut_off: np.ndarray

    @classmethod
    def build(cls, compiled: CompiledFilters | None, columns, codes_view) -> "_KernelFilters":
        active = np.zeros(4, np.bool_)
        lo = np.full(4, -np.inf)
        hi = np.full(4, np.inf)
        strict = np.zeros(4, np.bool_)
        codes = [_DUMMY_CODES] * _MAX_CAT
        luts = [np.zeros(1, np.bool_)]
        lut_off = np.zeros(_MAX_CAT, np.int64)
        n_cat = 0
        has_filter = compiled is not None and not compiled.is_trivial
        if has_filter:
            for pred in compiled.numeric:
                slot = _NUMERIC_SLOTS.index(pred.column)
                active[slot] = True
                lo[slot] = -np.inf if pred.lo is None else float(pred.lo)
                hi[slot] = np.inf if pred.hi is None else float(pred.hi)
                strict[slot] = pred.strict_lo
            if len(compiled.categorical) > _MAX_CAT:
                raise ValueError(f"at most {_MAX_CAT} categorical filters are supported")
            offset = 1
            for j, pred in enumerate(compiled.categorical):
                codes[j] = codes_view(pred.column, pred.codes)
                # `allowed` ends with the null slot; the kernel wants it first (code + 1).
                luts.append(np.concatenate([pred.allowed[-1:], pred.allowed[:-1]]).astype(np.bool_))
                lut_off[j] = offset
                offset += pred.allowed.size
            n_cat = len(compiled.categorical)
        return cls(
            has_filter, active, lo, hi, strict, tuple(columns), n_cat, tuple(codes),
            np.concatenate(luts), lut_off,
        )

    def args(self) -> tuple:
        """(has_filter, *filter_args) in kernel argument order."""
        return (
            self.has_filter, self.active, self.lo, self.hi, self.lo_strict, *self.columns,
            self.n_cat, self.codes, self.luts, self.lut_off,
        )


# --------------------------------------------------------------------------- searcher


class LexicalSearcher:
    """Exact filtered BM25 over one catalog (see the module docstring for the contract).

    Thread-safe: per-thread scratch buffers; the index is read-only (and may be mmapped).
    """

    kind = "bm25"

    def __init__(self, catalog, retriever, config: IndexConfig | None = None, analyzer: Analyzer | None = None):
        n = retriever.scores["num_docs"]
        if n != len(catalog):
            raise ValueError(
                f"search index covers {n} products but the catalog has {len(catalog)}; rebuild the index"
            )
        self.catalog = catalog
        self.retriever = retriever
        self.config = config or IndexConfig()
        self.analyzer = analyzer or Analyzer()
        s = retriever.scores
        self._data = np.asarray(s["data"], dtype=np.float32)
        self._indices = np.asarray(s["indices"])
        self._indptr = np.asarray(s["indptr"])
        self._vocab: dict[str, int] = retriever.vocab_dict
        self._term_max = _term_max(self._data, self._indptr)
        self._local = threading.local()
        self._popularity: np.ndarray | None = None
        self._popularity_rank: np.ndarray | None = None
        self._lock = threading.Lock()
        self._numeric_slots = tuple(np.asarray(catalog.numeric(name)) for name in _NUMERIC_SLOTS)
        self._readonly_codes: dict[str, np.ndarray] = {}
        self._no_filter = _KernelFilters.build(None, self._numeric_slots, self._codes_view)
        self.warmup()

    # -- construction -------------------------------------------------------------------

    @classmethod
    def build(cls, catalog, config: IndexConfig | None = None) -> "LexicalSearcher":
        """Index `catalog` (all rows, in row order)."""
        config = config or IndexConfig()
        analyzer = Analyzer()
        return cls(catalog, build_bm25(catalog, config, analyzer), config, analyzer)

    def save(self, directory) -> Path:
        """Write the index under ``directory/search/`` (bm25s files + metadata)."""
        root = Path(directory) / SEARCH_DIR
        root.mkdir(parents=True, exist_ok=True)
        self.retriever.save(root / _BM25_DIR, show_progress=False)
        meta = {
            "format_version": _FORMAT_VERSION,
            "kinds": [self.kind],
            "n_docs": len(self.catalog),
            "n_terms": len(self._vocab),
            "n_postings": int(self._data.size),
            "config": asdict(self.config),
            "analyzer": {"language": self.analyzer.language, "split": _SPLIT_PATTERN, "marks": _MARKS},
        }
        (root / _META_FILE).write_text(json.dumps(meta, indent=2))
        return root

    @classmethod
    def load(cls, catalog, directory, mmap: bool = True) -> "LexicalSearcher":
        """Load an index written by `save` (arrays memory-mapped when `mmap`)."""
        import bm25s

        root = Path(directory) / SEARCH_DIR
        meta = read_meta(directory)
        if meta is None:
            raise FileNotFoundError(f"no search index under {root}")
        analyzer = meta.get("analyzer", {})
        if meta.get("format_version") != _FORMAT_VERSION or analyzer.get("split") != _SPLIT_PATTERN:
            raise ValueError(
                f"search index under {root} was written by another version of catalog_service "
                f"(format {meta.get('format_version')!r}); rebuild it"
            )
        config = IndexConfig(**{**meta["config"], "fields": tuple(meta["config"]["fields"])})
        retriever = bm25s.BM25.load(root / _BM25_DIR, mmap=mmap, show_progress=False)
        return cls(catalog, retriever, config)

    def describe(self) -> dict:
        """Facts about the index, for ``catalog info``."""
        return {
            "kind": self.kind,
            "n_docs": len(self.catalog),
            "n_terms": len(self._vocab),
            "n_postings": int(self._data.size),
            "fields": list(self.config.fields),
        }

    # -- queries --------------------------------------------------------------------------

    def term_ids(self, query: str) -> np.ndarray:
        """Index term ids of `query`'s terms (unknown terms dropped, order kept)."""
        vocab = self._vocab
        ids = [vocab[t] for t in self.analyzer.query_terms(query) if t in vocab]
        return np.asarray(ids, dtype=np.int64)

    def _scratch(self) -> np.ndarray:
        buf = getattr(self._local, "scores", None)
        if buf is None:
            buf = self._local.scores = np.zeros(len(self.catalog), dtype=np.float32)
        return buf

    def score_all(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows, BM25 scores) of every product containing a query term, in no particular
        order: the exhaustive reference that `search` must agree with."""
        ids = self.term_ids(query)
        if ids.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return _accumulate(ids, self._data, self._indices, self._indptr, self._scratch())

    def search(self, query: str, filters: SearchFilters | None = None, top_k: int = 10) -> SearchHits:
        """Best `top_k` products matching `filters` for `query` (contract: module docstring)."""
        k = clip_top_k(top_k)
        compiled = compile_filters(self.catalog, coerce_filters(filters))
        if compiled.empty:
            return empty_hits()
        query = "" if query is None else str(query)
        if not query.strip():
            return self._popular(compiled, k)
        return _hits(*self.rank_candidates(query, compiled, k))

    def rank_candidates(
        self, query: str, compiled: CompiledFilters, k: int, strategy: str = "auto"
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the best `k` rows for a query under compiled filters, sorted
        by score descending then row (used by `search` and by the hybrid searcher).

        ``strategy="auto"``: MaxScore document-at-a-time; when it has visited as many rows
        as 1/3 of the query terms' postings without finding `k` rows that pass the filter,
        term-at-a-time over all postings instead. ``"maxscore"`` (no budget) and ``"exhaustive"`` force one of them
        (tests and benchmarks); all three give identical answers."""
        if strategy not in ("auto", "maxscore", "exhaustive"):
            raise ValueError(f"unknown strategy {strategy!r}")
        if compiled.empty:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        ids = self.term_ids(query)
        if ids.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        k = min(k, len(self.catalog))
        if k < 1:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        fargs = self._kernel_filters(compiled).args()
        postings = int((self._indptr[ids + 1] - self._indptr[ids]).sum())
        finished = False
        if strategy == "maxscore" or (strategy == "auto" and postings > _DAAT_MIN_POSTINGS):
            budget = -1 if strategy == "maxscore" else postings // _DAAT_BUDGET_DIVISOR
            rows, scores, finished = _maxscore_top_k(
                *self._plan(ids), self._data, self._indices, self._indptr, k, budget, *fargs
            )
        if not finished:
            rows, scores = _exhaustive_top_k(ids, self._data, self._indices, self._indptr, self._scratch(), k, *fargs)
        order = np.lexsort((rows, -scores))
        return rows[order], scores[order]

    def _plan(self, ids: np.ndarray):
        """Kernel inputs for the query term ids, or None when there are none."""
        if ids.size == 0:
            return None
        uniq, qinv, counts = np.unique(ids, return_inverse=True, return_counts=True)
        bound = self._term_max[uniq].astype(np.float64) * counts
        order = np.lexsort((uniq, bound))  # ascending bound, deterministic
        rank = np.empty(order.size, dtype=np.int64)
        rank[order] = np.arange(order.size)
        return uniq[order], counts[order].astype(np.float64), bound[order], rank[qinv.ravel()]

    def _kernel_filters(self, compiled: CompiledFilters) -> "_KernelFilters":
        if compiled.is_trivial:
            return self._no_filter
        return _KernelFilters.build(compiled, self._numeric_slots, self._codes_view)

    def _codes_view(self, column: str, codes: np.ndarray) -> np.ndarray:
        """A read-only int32 C-contiguous view of a code column (one numba type for all)."""
        view = self._readonly_codes.get(column)  # the catalog is read-only: cache by name
        if view is None:
            view = self._readonly_codes[column] = _readonly_int32(codes)
        return view

    def warmup(self) -> None:
        """Compile the numba kernels for this catalog's column types (cached on disk)."""
        ids = np.zeros(0, np.int64)
        _accumulate(ids, self._data, self._indices, self._indptr, np.zeros(1, np.float32))
        fargs = self._no_filter.args()
        if self._term_max.size:
            plan = self._plan(np.zeros(1, np.int64))
            _maxscore_top_k(*plan, self._data, self._indices, self._indptr, 1, -1, *fargs)
        _exhaustive_top_k(ids, self._data, self._indices, self._indptr, np.zeros(1, np.float32), 1, *fargs)
        _filter_rows(ids, *fargs[1:])

    def popularity_order(self) -> np.ndarray:
        """All rows by rating_count descending, then row ascending (cached)."""
        if self._popularity is None:
            with self._lock:
                if self._popularity is None:
                    counts = np.asarray(self.catalog.numeric("rating_count")).astype(np.int64)
                    order = np.argsort(-counts, kind="stable")
                    rank = np.empty(order.size, dtype=np.int64)
                    rank[order] = np.arange(order.size)
                    self._popularity_rank = rank
                    self._popularity = order
        return self._popularity

    def _popular(self, compiled: CompiledFilters, k: int) -> SearchHits:
        """Empty query: the first `k` matching rows in `popularity_order`, score 0.
        Scans the most popular rows first; a selective filter falls back to one
        vectorised mask over all rows and a partial sort of the matches' ranks."""
        order = self.popularity_order()
        rows = _popular_top_k(order, k, *self._kernel_filters(compiled).args())
        if rows is None:
            matches = compiled.rows()
            ranks = self._popularity_rank[matches]
            if ranks.size > k:
                ranks = np.partition(ranks, k - 1)[:k]
            rows = order[np.sort(ranks)]
        return _hits(rows, np.zeros(rows.size, np.float32))


# --------------------------------------------------------------------------- factory


def read_meta(directory) -> dict | None:
    """The search metadata saved under ``directory/search/``, or None when absent."""
    path = Path(directory) / SEARCH_DIR / _META_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())
