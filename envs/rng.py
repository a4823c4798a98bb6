"""Deterministic random streams for one episode.

Every random choice in an episode flows from `(seed, env_id, difficulty)` through
`numpy.random.Generator`. Each concern (goal, world, shopper text, noise, search
distractors, ...) draws from its own named stream, so adding a draw in one concern never
shifts another. Stream names are turned into integers with CRC-32, which is stable across
processes (unlike the salted built-in string hash, which depends on PYTHONHASHSEED).
"""

from __future__ import annotations

import bisect
import hashlib
import zlib

import numpy as np


def stable_int(text: str) -> int:
    """A 32-bit integer from `text`, identical in every process."""
    return zlib.crc32(text.encode("utf-8"))


def stable_digest(text: str, n_bytes: int = 8) -> int:
    """A 64-bit (by default) integer digest of `text` (blake2b), identical in every process."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=n_bytes).digest(), "big")


_WORD = 1 << 32  # SeedSequence takes an int below this as one uint32 entropy word


def episode_rng(seed: int, env_id: str, difficulty: int, stream: str) -> np.random.Generator:
    """The generator of stream `stream` for episode (env_id, difficulty, seed)."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    entropy = [int(seed), stable_int(env_id), int(difficulty), stable_int(stream)]
    if seed < _WORD and 0 <= difficulty < _WORD:
        # SeedSequence reads a list int below 2**32 as one uint32 word: the same entropy,
        # without its per-int coercion (this and skipping default_rng's dispatch halve the cost)
        entropy = np.array(entropy, dtype=np.uint32)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


class WeightedIndex:
    """`WeightedIndex(weights)(rng)` draws what ``rng.choice(len(weights), p=weights)`` draws
    (one uniform, located in the same normalised cumulative sums), without numpy's per-call
    argument checks (~15 us a draw)."""

    def __init__(self, weights) -> None:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or len(w) == 0 or (w < 0).any() or abs(w.sum() - 1.0) > 1e-8:
            raise ValueError(f"weights must be non-negative and sum to 1, got {weights!r}")
        cdf = w.cumsum()
        cdf /= cdf[-1]
        self._cdf = cdf.tolist()

    def __call__(self, rng: np.random.Generator) -> int:
        return bisect.bisect_right(self._cdf, rng.random())


class EpisodeRandom:
    """Named, lazily created random streams of one episode."""

    def __init__(self, seed: int, env_id: str, difficulty: int):
        self.seed, self.env_id, self.difficulty = int(seed), env_id, int(difficulty)
        self._streams: dict[str, np.random.Generator] = {}

    def __call__(self, stream: str) -> np.random.Generator:
        gen = self._streams.get(stream)
        if gen is None:
            gen = episode_rng(self.seed, self.env_id, self.difficulty, stream)
            self._streams[stream] = gen
        return gen
