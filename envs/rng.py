"""Deterministic random streams for one episode.

Every random choice in an episode flows from `(seed, env_id, difficulty)` through
`numpy.random.Generator`. Each concern (goal, world, shopper text, noise, search
distractors, ...) draws from its own named stream, so adding a draw in one concern never
shifts another. A stream is a PCG64 generator whose 256-bit seed (state and increment) is
the BLAKE2b digest of ``"seed|env_id|difficulty|stream"``: stable across processes (unlike
the salted built-in string hash, which depends on PYTHONHASHSEED), independent streams for
different keys, and about a quarter of the cost of seeding through `numpy.random.SeedSequence`
(2 us instead of 8; an episode opens 5 to 10 streams).
"""

from __future__ import annotations

import bisect
import hashlib
import zlib

import numpy as np
from numpy.random.bit_generator import ISeedSequence


def stable_int(text: str) -> int:
    """A 32-bit integer from `text`, identical in every process."""
    return zlib.crc32(text.encode("utf-8"))


def stable_digest(text: str, n_bytes: int = 8) -> int:
    """A 64-bit (by default) integer digest of `text` (blake2b), identical in every process."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=n_bytes).digest(), "big")


class DigestSeed(ISeedSequence):
    """A seed of 256 given bits (a digest) for a numpy bit generator: `generate_state` hands
    out the digest's words, so ``PCG64(DigestSeed(d))`` takes its 128-bit state and increment
    from `d` directly."""

    __slots__ = ("digest",)

    def __init__(self, digest: bytes):
        if len(digest) != 32:
            raise ValueError(f"a DigestSeed holds 32 bytes, got {len(digest)}")
        self.digest = digest

    def generate_state(self, n_words: int, dtype=np.uint32) -> np.ndarray:
        little = _LITTLE_ENDIAN.get(dtype) or np.dtype(dtype).newbyteorder("<")  # the same words on every machine
        if n_words * little.itemsize > len(self.digest):
            raise ValueError(f"a DigestSeed has {len(self.digest) // little.itemsize} words of {little}, {n_words} asked")
        words = np.frombuffer(self.digest, dtype=little, count=n_words)
        return words if little.isnative else words.astype(little.newbyteorder("="))


_LITTLE_ENDIAN = {np.uint64: np.dtype("<u8"), np.uint32: np.dtype("<u4")}


def episode_rng(seed: int, env_id: str, difficulty: int, stream: str) -> np.random.Generator:
    """The generator of stream `stream` for episode (env_id, difficulty, seed)."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    key = f"{int(seed)}|{env_id}|{int(difficulty)}|{stream}".encode("utf-8")
    return np.random.Generator(np.random.PCG64(DigestSeed(hashlib.blake2b(key, digest_size=32).digest())))


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
