"""Benchmark: how plausible the simulated world is (variant values, variant requests, stock-outs).

    python benchmarks/shopper_fidelity_world.py [--n 5000] [--n-plausibility 20000] [--seed 0]
        [--episodes 300] [--label after]

Measured on one synthetic catalog, every figure from episodes run in this process:

- ``distractor_in_leaf``: of the synthesized variant values of E_CART products (targets,
  same-leaf distractors, stock-out alternatives) that differ from the product's own value,
  the share that some product of the same leaf category carries for that attribute.
- ``target_value_in_leaf``: the same share for the variant values E_CART targets require.
- ``implausible``: over every product of a second catalog (``--n-plausibility`` products) and
  its synthesized variants, how many values hit `taxonomy.IMPLAUSIBLE_VALUES` (a sleeping bag
  in size "College Ruled"), and how many of the listed triples occur at all.
- ``variant_required``: per d in 0, 3, 6, 9, the share of E_CART goal items that require a
  variant, next to the axis p_variant = sigmoid((d-2)/1.5).
- ``stockout``: per d in 3..12, the share of E_PD episodes played by the oracle in which a
  product sells out mid-episode, next to the axis p_oos = min(0.5, 0.05 d); plus the oracle's
  success rate there and the share of stock-outs that took a product meeting every constraint.

The leaf check reads only the catalog's columns (values seen in the leaf), so the same
script measures any version of the code. Results are merged under ``--label`` into
``benchmarks/results/shopper_fidelity_world.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ecomrlve.catalog_service import Catalog  # noqa: E402
from ecomrlve.catalog_service.taxonomy import IMPLAUSIBLE_VALUES  # noqa: E402
from ecomrlve.envs import make_env  # noqa: E402
from ecomrlve.envs.difficulty import axes_for  # noqa: E402
from ecomrlve.envs.world import EPOCH, SimClock, World  # noqa: E402
from ecomrlve.policies import OraclePolicy  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "shopper_fidelity_world.json"
VARIANT_DS = (0, 3, 6, 9)
STOCKOUT_DS = tuple(range(3, 13))


class LeafValues:
    """Values seen per (leaf, attribute) in the catalog's own columns."""

    def __init__(self, catalog):
        self.catalog = catalog
        self.cache: dict[tuple[str, str], set[str]] = {}

    def __call__(self, leaf: str, attr: str) -> set[str]:
        key = (leaf, attr)
        if key not in self.cache:
            codes, values = self.catalog.codes(attr)
            rows = self.catalog.category_rows(leaf)
            self.cache[key] = {values[c] for c in set(codes[rows].tolist()) if c >= 0}
        return self.cache[key]


def measure_variants(catalog, episodes: int) -> dict:
    env = make_env("E_CART", catalog)
    leaf_values = LeafValues(catalog)
    distractor = [0, 0]  # in leaf, total
    target = [0, 0]
    required: dict[str, dict] = {}
    for d in VARIANT_DS:
        items = with_variant = 0
        for seed in range(episodes):
            env.reset(seed=seed, options={"difficulty": d})
            goal = env.goal
            items += len(goal.items)
            with_variant += sum(it.variant_id is not None for it in goal.items)
            pids = [it.product_id for it in goal.items] + list(goal.distractors)
            if goal.stockout:
                pids.append(goal.stockout.alternative.product_id)
            for pid in pids:
                row = catalog.row_of(pid)
                leaf = catalog.value("category_l3", row)
                for v in env.world.variants_of(pid):
                    if v.value != catalog.value(v.attribute, row):
                        distractor[1] += 1
                        distractor[0] += v.value in leaf_values(leaf, v.attribute)
            for it in goal.items:
                if it.variant_id is not None:
                    leaf = catalog.value("category_l3", it.row)
                    target[1] += 1
                    target[0] += it.variant_value in leaf_values(leaf, it.variant_attr)
        required[str(d)] = {
            "rate": round(with_variant / items, 4),
            "axis": round(axes_for(d).p_variant, 4),
            "items": items,
        }
    return {
        "distractor_in_leaf": round(distractor[0] / max(1, distractor[1]), 4),
        "distractor_values": distractor[1],
        "target_value_in_leaf": round(target[0] / max(1, target[1]), 4),
        "target_values": target[1],
        "variant_required": required,
    }


def measure_implausible(catalog) -> dict:
    listed = set(IMPLAUSIBLE_VALUES)
    world = World(catalog, SimClock(EPOCH))
    hits, seen = 0, set()
    for row in range(len(catalog)):
        leaf = catalog.value("category_l3", row)
        values = [(a, catalog.value(a, row)) for a in {t[1] for t in listed}]
        values += [(v.attribute, v.value) for v in world.variants_of(catalog.product_id(row))]
        for attr, value in values:
            if (leaf, attr, value) in listed:
                hits += 1
                seen.add((leaf, attr, value))
    return {"listed": len(listed), "hits": hits, "distinct_seen": len(seen), "products": len(catalog)}


def measure_stockouts(catalog, episodes: int) -> dict:
    env = make_env("E_PD", catalog)
    oracle = OraclePolicy(env)
    out: dict[str, dict] = {}
    for d in STOCKOUT_DS:
        fired = correct = valid = 0
        for seed in range(episodes):
            obs, _ = env.reset(seed=seed, options={"difficulty": d})
            oracle.reset()
            done = False
            while not done:
                obs, _, term, trunc, info = env.step(oracle.act(obs))
                done = term or trunc
            fired += env.goal.oos_row is not None
            valid += env.goal.oos_row is not None and env.broken_constraint(env.goal.oos_row) is None
            correct += bool(info["reward"]["is_correct"])
        out[str(d)] = {
            "rate": round(fired / episodes, 4),
            "axis": round(axes_for(d).p_oos, 4),
            "valid_victim_share": round(valid / max(1, fired), 4),
            "oracle_success": round(correct / episodes, 4),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="synthetic catalog size")
    ap.add_argument("--n-plausibility", type=int, default=20_000, help="catalog size for the implausible-value count")
    ap.add_argument("--seed", type=int, default=0, help="catalog seed")
    ap.add_argument("--episodes", type=int, default=300, help="episodes per difficulty")
    ap.add_argument("--label", default="after", help="key the figures are stored under")
    args = ap.parse_args()
    catalog = Catalog.synthetic(n_products=args.n, seed=args.seed)
    t0 = time.perf_counter()
    variants = measure_variants(catalog, args.episodes)
    stockouts = measure_stockouts(catalog, args.episodes)
    implausible = measure_implausible(Catalog.synthetic(n_products=args.n_plausibility, seed=args.seed))
    result = {
        "n_products": args.n,
        "catalog_seed": args.seed,
        "episodes_per_d": args.episodes,
        **variants,
        "implausible": implausible,
        "stockout": stockouts,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    merged = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    merged[args.label] = result
    RESULTS.write_text(json.dumps(merged, indent=2) + "\n")
    print(f"[{args.label}] catalog {args.n} products, {args.episodes} episodes per d")
    print(f"  distractor values in the leaf: {variants['distractor_in_leaf']:.1%} of {variants['distractor_values']}")
    print(f"  required target values in the leaf: {variants['target_value_in_leaf']:.1%} of {variants['target_values']}")
    print(f"  implausible values in {implausible['products']} products and their variants: {implausible['hits']} "
          f"({implausible['distinct_seen']} of the {implausible['listed']} listed triples)")
    for d, r in variants["variant_required"].items():
        print(f"  variant required d={d}: {r['rate']:.1%} (axis {r['axis']:.1%})")
    for d, r in stockouts.items():
        print(f"  E_PD stock-out d={d}: {r['rate']:.1%} (axis {r['axis']:.1%}), "
              f"valid product sold out in {r['valid_victim_share']:.0%}, oracle success {r['oracle_success']:.1%}")
    print(f"  wrote {RESULTS}")


if __name__ == "__main__":
    main()
