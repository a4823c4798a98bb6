"""Which searcher a catalog uses: `build_searcher` (a new index) and `load_searcher` (one
saved under a catalog directory), each choosing between the lexical BM25 searcher
(`ecomrlve.catalog_service.search`) and the hybrid lexical + dense one
(`ecomrlve.catalog_service.dense`, optional dependencies). Both of those modules sit below
this one, so neither needs the other's factory."""

from __future__ import annotations

import warnings

from .search import IndexConfig, LexicalSearcher, read_meta

__all__ = ["build_searcher", "load_searcher"]


def build_searcher(catalog, dense: bool = False, config: IndexConfig | None = None, **dense_kwargs):
    """The searcher a catalog uses: `LexicalSearcher`, or a `dense.HybridSearcher`
    (lexical + sentence embeddings, needs torch / sentence-transformers / faiss) when
    `dense` is True."""
    lexical = LexicalSearcher.build(catalog, config)
    if not dense:
        return lexical
    from .dense import HybridSearcher

    return HybridSearcher.build(catalog, lexical, **dense_kwargs)


def load_searcher(catalog, directory, mmap: bool = True):
    """The searcher saved under ``directory/search/`` for `catalog`, or None when the
    directory holds no index. A saved hybrid index loads as a `HybridSearcher`; when its
    dependencies are missing it falls back to the lexical searcher with a warning."""
    meta = read_meta(directory)
    if meta is None:
        return None
    lexical = LexicalSearcher.load(catalog, directory, mmap=mmap)
    if "dense" not in meta.get("kinds", []):
        return lexical
    try:
        from .dense import HybridSearcher

        return HybridSearcher.load(catalog, lexical, directory)
    except ImportError as exc:
        warnings.warn(f"dense index not loaded ({exc}); using lexical search only", stacklevel=2)
        return lexical
