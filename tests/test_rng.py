"""The episode streams' fast paths draw exactly what numpy's general calls draw."""

import hashlib

import numpy as np
import pytest

from ecomrlve.envs.rng import DigestSeed, WeightedIndex, episode_rng


PINNED = {  # the first three uniforms of stream "orders" of E_RETURN: never change them silently
    (0, 0): [0.6058185828425573, 0.5489370638781955, 0.1330606238955755],
    (7, 12): [0.004071041580217427, 0.06405925935143808, 0.725343366723811],
    (2**32 - 1, 3): [0.05642460229964297, 0.5457229163844249, 0.08932886494164116],
    (12345678901234, 0): [0.6162288243092962, 0.6050464349091439, 0.9312654849910135],
}


@pytest.mark.parametrize("seed,difficulty", sorted(PINNED))
def test_episode_rng_is_pcg64_seeded_by_the_digest_of_its_key(seed, difficulty):
    digest = hashlib.blake2b(f"{seed}|E_RETURN|{difficulty}|orders".encode(), digest_size=32).digest()
    words = [int.from_bytes(digest[i:i + 8], "little") for i in range(0, 32, 8)]
    assert DigestSeed(digest).generate_state(4, np.uint64).tolist() == words
    assert episode_rng(seed, "E_RETURN", difficulty, "orders").random(3).tolist() == PINNED[(seed, difficulty)]


def test_streams_differ_by_every_part_of_their_key():
    first = {key: episode_rng(*key).random() for key in
             [(1, "E_RETURN", 3, "orders"), (2, "E_RETURN", 3, "orders"), (1, "E_CART", 3, "orders"),
              (1, "E_RETURN", 4, "orders"), (1, "E_RETURN", 3, "goal"), (13, "E_RETURN", 3, "orders")]}
    assert len(set(first.values())) == len(first)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        episode_rng(-1, "E_RETURN", 3, "orders")
    with pytest.raises(ValueError, match="32 bytes"):
        DigestSeed(b"short")


def test_weighted_index_draws_what_choice_with_p_draws():
    weights = (0.10, 0.12, 0.12, 0.45, 0.10, 0.11)
    draw = WeightedIndex(weights)
    for seed in range(200):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        assert [draw(a) for _ in range(5)] == [int(b.choice(len(weights), p=weights)) for _ in range(5)]
        assert a.random() == b.random()  # the same amount of the stream consumed


def test_weighted_index_rejects_weights_that_are_not_a_distribution():
    with pytest.raises(ValueError, match="weights"):
        WeightedIndex((0.5, 0.6))
