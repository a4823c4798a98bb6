"""Lexical ranking over the store policy's rules (a few dozen short texts per episode).

A tiny BM25 over tokenised rule titles and texts; deterministic ties by rule order."""

from __future__ import annotations

import math
import re
from typing import Sequence

from .world import PolicyRule

_TOKEN = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an and are as at be by can do for from how i if in is it my of on or the to what when with you".split())


def tokenize(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]


def rank_rules(rules: Sequence[PolicyRule], query: str, top_k: int, k1: float = 1.2, b: float = 0.75) -> list[PolicyRule]:
    """The `top_k` rules best matching `query` by BM25 over title + text, best first."""
    if not rules:
        return []
    docs = [tokenize(f"{r.title} {r.text}") for r in rules]
    n = len(docs)
    avg = sum(len(d) for d in docs) / n
    df: dict[str, int] = {}
    for d in docs:
        for t in set(d):
            df[t] = df.get(t, 0) + 1
    q = tokenize(query)
    scored = []
    for i, d in enumerate(docs):
        tf: dict[str, int] = {}
        for t in d:
            tf[t] = tf.get(t, 0) + 1
        s = 0.0
        for t in q:
            if t in tf:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                s += idf * tf[t] * (k1 + 1) / (tf[t] + k1 * (1 - b + b * len(d) / avg))
        scored.append((-s, i))
    scored.sort()
    return [rules[i] for s, i in scored[:top_k] if s < 0] or []
