"""The episode streams' fast paths draw exactly what numpy's general calls draw."""

import numpy as np
import pytest

from ecomrlve.envs.rng import WeightedIndex, episode_rng, stable_int


@pytest.mark.parametrize("seed,difficulty", [(0, 0), (7, 12), (2**32 - 1, 3), (2**32, 3), (12345678901234, 0)])
def test_episode_rng_is_default_rng_of_the_seed_sequence(seed, difficulty):
    entropy = [seed, stable_int("E_RETURN"), difficulty, stable_int("orders")]
    expected = np.random.default_rng(np.random.SeedSequence(entropy)).random(8)
    assert episode_rng(seed, "E_RETURN", difficulty, "orders").random(8).tolist() == expected.tolist()


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
