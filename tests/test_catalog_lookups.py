"""The catalog's precomputed row lookups (per-leaf rows, per-leaf price order, postings)
answer exactly what a brute-force scan answers, survive save/load memory-mapped, and the
environments' evaluation sets built from them equal the full-catalog masks."""

from __future__ import annotations

import numpy as np
import pytest

from ecomrlve.catalog_service import Catalog
from ecomrlve.catalog_service.lookups import LOOKUP_FILES, POSTING_COLUMNS
from ecomrlve.envs import make_env
from ecomrlve.envs.catalog import ATTRIBUTE_COLUMNS
from ecomrlve.envs.constraints import Constraint, compatible_rows, mask


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.synthetic(n_products=20_000, seed=3)


def _brute_rows(catalog: Catalog, leaf: str) -> np.ndarray:
    codes, values = catalog.codes("category_l3")
    return np.flatnonzero(codes == values.index(leaf))


def test_lookups_equal_brute_force(catalog):
    cents = np.round(catalog.numeric("price") * 100).astype(np.int64)
    leaves = sorted(catalog.category_counts())
    rng = np.random.default_rng(0)
    for leaf in leaves:
        rows = _brute_rows(catalog, leaf)
        assert np.array_equal(catalog.category_rows(leaf), rows)
        by_price, leaf_cents = catalog.category_rows_by_price(leaf)
        order = np.lexsort((rows, cents[rows]))
        assert np.array_equal(np.asarray(by_price, dtype=np.int64), rows[order])
        assert np.array_equal(leaf_cents, cents[rows][order])
        for cap in (0, int(leaf_cents[0]), int(np.median(leaf_cents)), int(leaf_cents[-1]) + 1):
            assert np.array_equal(catalog.category_rows_below(leaf, cap), rows[cents[rows] <= cap])
    for column in POSTING_COLUMNS:
        codes, values = catalog.codes(column)
        for row in rng.integers(len(catalog), size=40):
            leaf, code = catalog.value("category_l3", int(row)), int(codes[row])
            if code < 0:
                continue
            want = np.flatnonzero((catalog.codes("category_l3")[0] == catalog.codes("category_l3")[0][row])
                                  & (codes == code))
            assert np.array_equal(catalog.category_postings(leaf, column, values[code]), want)
    stock = np.asarray(catalog.numeric("stock"))
    for leaf in leaves[:40]:
        rows = _brute_rows(catalog, leaf)
        live = rows[stock[rows] > 0]
        assert np.array_equal(np.asarray(catalog.category_in_stock_rows(leaf), dtype=np.int64), live)
        by_price, live_cents = catalog.category_in_stock_by_price(leaf)
        order = np.lexsort((live, cents[live]))
        assert np.array_equal(np.asarray(by_price, dtype=np.int64), live[order])
        assert np.array_equal(live_cents, cents[live][order])
    for leaf in leaves[:20]:
        rows = _brute_rows(catalog, leaf)
        for name in ("price", "rating", "ship_days", "rating_count"):
            assert np.array_equal(catalog.category_column(leaf, name), catalog.numeric(name)[rows])
        for name in POSTING_COLUMNS:
            assert np.array_equal(catalog.category_column(leaf, name), catalog.codes(name)[0][rows])
    assert len(catalog.category_rows("no such leaf")) == 0
    assert len(catalog.category_postings("no such leaf", "brand", "x")) == 0
    assert len(catalog.category_postings(leaves[0], "color", "no such color")) == 0
    with pytest.raises(KeyError, match="title"):
        catalog.category_postings(leaves[0], "title", "x")


def test_lookups_saved_and_memory_mapped(tmp_path):
    small = Catalog.synthetic(n_products=3_000, seed=5)
    small.save(tmp_path)
    assert all((tmp_path / name).is_file() for name in LOOKUP_FILES)
    loaded = Catalog.load(tmp_path)
    assert loaded._lookups is not None  # attached at load, not rebuilt
    a, b = small.lookups(), loaded.lookups()
    for name in ("leaf_rows", "leaf_starts", "price_rows", "price_cents"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
        assert not getattr(b, name).flags.writeable
    for name, values in a.leaf_columns.items():
        assert np.array_equal(values, b.leaf_columns[name])
    for column in POSTING_COLUMNS:
        assert np.array_equal(a.postings[column].rows, b.postings[column].rows)
        assert np.array_equal(a.postings[column].keys, b.postings[column].keys)
    assert not b.leaf_rows.flags.owndata  # a view of the mapped file, not a copy
    leaf = small.value("category_l3", 0)
    assert np.array_equal(loaded.category_rows(leaf), small.category_rows(leaf))


def _random_constraints(catalog: Catalog, rng: np.random.Generator) -> list[Constraint]:
    row = int(rng.integers(len(catalog)))
    out = [Constraint("category", catalog.value("category_l3", row))]
    price = float(catalog.numeric("price")[row])
    extra = [Constraint("price_max", round(price * rng.uniform(0.5, 2.0), 2)),
             Constraint("brand", catalog.value("brand", row)),
             Constraint("rating_min", float(rng.choice([3.0, 3.5, 4.0, 4.5]))),
             Constraint("ship_days_max", int(rng.integers(1, 8))),
             Constraint("attribute", "no such value", "color")]
    extra += [Constraint("attribute", catalog.value(a, row), a) for a in ATTRIBUTE_COLUMNS if catalog.value(a, row)]
    picked = [extra[i] for i in rng.permutation(len(extra))[: int(rng.integers(0, 5))]]
    return out + picked if rng.random() < 0.9 else picked  # some sets without a category


def test_category_positions_align_rows_with_the_per_leaf_columns(catalog):
    rng = np.random.default_rng(4)
    leaves = sorted(catalog.category_counts())
    for leaf in leaves[:: max(1, len(leaves) // 12)]:
        rows = catalog.category_rows(leaf)
        some = np.sort(rng.choice(rows, size=min(len(rows), 7), replace=False))
        shuffled = rng.permutation(some)
        for picked in (rows, some, shuffled):
            positions = catalog.category_positions(leaf, picked)
            assert np.array_equal(rows[positions], picked)
            assert np.array_equal(catalog.category_column(leaf, "price")[positions], catalog.numeric("price")[picked])
        other = catalog.category_rows(leaves[0] if leaf != leaves[0] else leaves[1])
        assert catalog.category_positions(leaf, np.concatenate([some, other[:1]])) is None
    assert catalog.category_positions("no such leaf", rows[:2]) is None
    assert len(catalog.category_positions(leaves[0], np.zeros(0, dtype=np.int64))) == 0


def test_compatible_rows_equal_full_mask(catalog):
    rng = np.random.default_rng(1)
    for _ in range(300):
        constraints = _random_constraints(catalog, rng)
        assert np.array_equal(compatible_rows(catalog, constraints), np.flatnonzero(mask(catalog, constraints)))


def test_discovery_pool_equals_brute_force_scan(catalog):
    """E_PD's evaluation pool (from the lookups) equals a scan of the whole catalog with
    the full constraint masks and the world's stock, over many episodes and difficulties,
    also after the shopper raises the budget."""
    env = make_env("E_PD", catalog)
    stock = np.asarray(catalog.numeric("stock"))
    n_checked = 0
    for d in range(13):
        for seed in range(12):
            env.reset(seed=seed, options={"difficulty": d})
            for switched in (False, True):
                if switched and env._switch_goal(np.random.default_rng(seed)) is None:
                    continue
                full = mask(catalog, env.goal.constraints)
                in_stock = np.array([env.world.in_stock(int(r)) for r in np.flatnonzero(full)], dtype=bool)
                brute = np.flatnonzero(full)[in_stock]
                assert np.array_equal(env.pool_rows(), brute), (d, seed, switched)
                # the pool's utilities (read from the per-leaf columns) equal row-by-row ones
                u = env.utility(brute)
                for i in range(0, len(brute), max(1, len(brute) // 8)):
                    assert u[i] == env.utility(brute[i : i + 1])[0]
                assert env.goal.target_row in brute or not stock[env.goal.target_row] > 0
                n_checked += 1
    assert n_checked > 13 * 12


def test_substitution_sets_equal_leaf_scan(catalog):
    """E_SUB keeps only the compatible rows; its validity, first broken constraint,
    similarity and ideal ranking equal a scan of the whole leaf with full-catalog masks."""
    env = make_env("E_SUB", catalog)
    for d in range(0, 13, 2):
        for seed in range(4):
            env.reset(seed=seed, options={"difficulty": d})
            goal = env.goal
            for switched in (False, True):
                if switched and env._switch_goal(np.random.default_rng(seed)) is None:
                    continue
                leaf = catalog.category_rows(goal.leaf)
                masks = [c.mask(catalog)[leaf] for c in goal.constraints]
                sim = env._similarity(goal.original_row, leaf, goal.weights)
                for i, row in enumerate(leaf[:: max(1, len(leaf) // 60)]):
                    j = int(np.searchsorted(leaf, row))
                    first = next((c for c, m in zip(goal.constraints, masks) if not m[j]), None)
                    assert env.broken_constraint(int(row)) == first
                    assert env.similarity_of(int(row)) == float(sim[j])
                valid = np.logical_and.reduce(masks) & env.world.stock_mask(leaf) & (leaf != goal.original_row)
                idx = np.flatnonzero(valid)
                want = [int(leaf[i]) for i in idx[np.lexsort((leaf[idx], -sim[idx]))]]
                assert env.ideal_rows() == want, (d, seed, switched)
                for k in (1, 3, 10):
                    assert env._ideal(k) == (want[:k], len(want))
                for row in want[:5]:  # now from the listed rows
                    j = int(np.searchsorted(leaf, row))
                    assert env.similarity_of(row) == float(sim[j]) and env.broken_constraint(row) is None
    other = int(np.flatnonzero(catalog.codes("category_l3")[0] != catalog.codes("category_l3")[0][goal.original_row])[0])
    assert env.broken_constraint(other) == goal.constraints[0] and env.similarity_of(other) == 0.0


def test_bundle_lookups_equal_leaf_scan(catalog):
    """E_BUNDLE's size-independent answers (feasible prices, cheapest option, live leaves)
    equal the leaf scans, with and without stock overrides and pending stock-outs."""
    env = make_env("E_BUNDLE", catalog)
    rng = np.random.default_rng(2)
    for d in (0, 6, 12):
        for seed in range(3):
            env.reset(seed=seed, options={"difficulty": d})
            reqs = env.goal.requirements
            for touched in (False, True):
                if touched:  # sell out / restock some rows of the required leaves, schedule others
                    for req in reqs:
                        for r in rng.choice(req.rows, size=min(6, len(req.rows)), replace=False):
                            env.world.set_stock(int(r), int(rng.integers(0, 2)))
                        env.world.scheduled_stockouts.append((9, int(req.rows[0])))
                for req in reqs:
                    feasible = env.feasible_mask(req, True)
                    want = np.sort(env._cents(req.rows[feasible]))
                    assert np.array_equal(env._feasible_cents(req), want)
                    assert env.cheapest_cents(req) == (int(want[0]) if len(want) else None)
                    drop = int(req.rows[feasible][0]) if feasible.any() else None
                    rest = env._cents(req.rows[env.feasible_mask(req, True, drop=drop)])
                    assert env.cheapest_cents(req, drop) == (int(rest.min()) if len(rest) else None)
                    assert env._has_live(req.leaf) == bool(env.world.stock_mask(req.rows, True).any())
