"""How plausible the world is and how much the shopper and the oracle read like a real
support chat, every figure of the shopper-fidelity work in one run.

Measured in one run, written to benchmarks/results/shopper_fidelity.json (or --out):

- ``world`` (items 1, 2, 5, from `shopper_fidelity_world`): the share of variant values in
  the product's leaf vocabulary, implausible (category, attribute, value) hits, the
  variant-required rate and the E_PD stock-out rate per d against their axes.
- ``omitted_quantity`` (item 3): E_CART requests whose quantity (> 1) is omitted, and how
  many of them read like a request for one unit (the hint "a few of" missing).

- ``corrections`` (item 4): E_CART carts built with deliberate mistakes (a wrong variant or
  quantity, a wrong quantity, a missing item, an extra item), then one agent turn that
  either says "Done, added it." (no word "cart"), says "I've updated your cart." or calls
  `cart_view` without a message. Coverage = share of the wrong lines the shopper's reply
  names (the line's brand plus the wanted value / count), per trigger.
- ``lint`` (item 6): `tests/dialogue_lint.py` rule counts over oracle transcripts of every
  env x d in {0, 4, 8, 12} x --seeds seeds (the shopper's clean text and the agent's messages).
- ``oracle`` (item 6): the share of oracle turns that change the world or answer without a
  message to the shopper ("silent"), and the number of shopper messages that thank the agent
  after a turn with no message ("thanks without a message").
- ``llm_bare_name`` (item 7): a stub LLM that answers every opening with its planned slot
  phrases run together ("The Grand Trunk hammock."): the share of such rephrasings the
  phrasing check rejects (``accepted_examples``: the few it accepts, where a slot phrase
  itself carries the request, e.g. "I'd like to send it back by mail").

    PYTHONPATH=$PWD python benchmarks/shopper_fidelity.py --seeds 50 --label after

(`benchmarks/shopper_fidelity_world.py` alone measures only the world figures.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from ecomrlve.catalog_service import Catalog  # noqa: E402
from dialogue_lint import RULES, episode_texts, lint  # noqa: E402
from ecomrlve.envs import ENV_IDS, make_env  # noqa: E402
from ecomrlve.envs.shopper import plural_phrase  # noqa: E402
from ecomrlve.policies import OraclePolicy  # noqa: E402
from shopper_fidelity_world import measure_implausible, measure_stockouts, measure_variants  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "shopper_fidelity.json"
DIFFICULTIES = (0, 4, 8, 12)
WORLD_CHANGING = {"cart_add", "cart_remove", "cart_set_quantity", "return_initiate", "return_exchange"}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
TRIGGERS = {
    "message_without_cart_word": {"assistant_message": "Done, added it."},
    "message_with_cart_word": {"assistant_message": "I've updated your cart."},
    "cart_view_without_message": {"tool_calls": [{"name": "cart_view", "args": {}}]},
}


def run_oracle(env, seed: int, d: int) -> None:
    env.reset(seed=seed, options={"difficulty": d})
    oracle = OraclePolicy(env)
    obs = env._obs()
    for _ in range(200):
        obs, _, terminated, truncated, _ = env.step(oracle.act(obs))
        if terminated or truncated:
            return
    raise RuntimeError(f"{env.env_id} d={d} seed={seed} did not end")


def oracle_figures(catalog, seeds: int) -> dict:
    lint_counts = {r: 0 for r in RULES}
    lint_examples: dict[str, str] = {}
    turns = silent = thanks_unsent = correct = episodes = messages = 0
    per_env_silent: dict[str, list[int]] = {}
    for env_id in ENV_IDS:
        env = make_env(env_id, catalog)
        env_turns = env_silent = 0
        for d in DIFFICULTIES:
            for seed in range(seeds):
                run_oracle(env, seed, d)
                episodes += 1
                correct += bool(env.reward_info.is_correct)
                for role, text in episode_texts(env):
                    messages += 1
                    for rule in lint(text):
                        lint_counts[rule] += 1
                        lint_examples.setdefault(rule, f"{env_id} d={d} seed={seed}: {text}")
                spoke = False
                users = 0
                for m in env.messages[1:]:
                    if m["role"] == "assistant":
                        names = {c["function"]["name"] for c in m.get("tool_calls", [])}
                        if names & WORLD_CHANGING or m.get("answer") is not None:
                            env_turns += 1
                            env_silent += not m.get("content")
                        spoke = spoke or bool(m.get("content"))
                    elif m["role"] == "user":
                        clean = env.utterances[users].clean_text
                        if users > 0 and "thank" in clean.lower() and not spoke:
                            thanks_unsent += 1
                        users += 1
                        spoke = False
        per_env_silent[env_id] = [env_silent, env_turns]
        turns += env_turns
        silent += env_silent
    return {
        "episodes": episodes,
        "oracle_success": correct / episodes,
        "messages_linted": messages,
        "lint": lint_counts,
        "lint_total": sum(lint_counts.values()),
        "lint_examples": lint_examples,
        "silent_oracle_turns": silent,
        "world_changing_or_answer_turns": turns,
        "silent_oracle_share": silent / turns if turns else 0.0,
        "silent_oracle_share_per_env": {k: (s / t if t else 0.0) for k, (s, t) in per_env_silent.items()},
        "thanks_without_message": thanks_unsent,
    }


def _broken_cart(env) -> list[tuple[str, dict]]:
    """Fill the cart with mistakes; returns (kind, facts) for each wrong line."""
    from ecomrlve.envs.tools import TOOLS, ToolContext, validate_call

    goal, world = env.goal, env.world
    errors, adds = [], []
    items = goal.items
    for i, it in enumerate(items):
        variants = world.variants_of(it.product_id)
        brand = env.catalog.value("brand", it.row)
        if i == 0 and it.variant_id and len(variants) > 1:
            other = next(v for v in variants if v.variant_id != it.variant_id)
            adds.append((it.product_id, other.variant_id, it.quantity))
            errors.append(("wrong_variant", {"brand": brand, "want": it.variant_value}))
        elif i <= 1:
            q = it.quantity + 1 if it.quantity < 4 else it.quantity - 1
            vid = it.variant_id or (variants[0].variant_id if variants else None)
            adds.append((it.product_id, vid, q))
            errors.append(("wrong_quantity", {"brand": brand, "want": NUMBER_WORDS[it.quantity]}))
        else:
            errors.append(("missing", {"brand": brand}))
    if goal.distractors:
        pid = goal.distractors[0]
        row = world.row(pid)
        variants = world.variants_of(pid)
        adds.append((pid, variants[0].variant_id if variants else None, 1))
        errors.append(("extra", {"brand": env.catalog.value("brand", row)}))
    for pid, vid, q in adds:
        args = validate_call("cart_add", {"product_id": pid, "variant_id": vid, "quantity": q}, env.tools)
        TOOLS["cart_add"].fn(ToolContext(world, env.axes, env.rand, env.turn), args)
    return errors


def correction_figures(catalog, seeds: int) -> dict:
    env = make_env("E_CART", catalog)
    out = {}
    for trigger, action in TRIGGERS.items():
        named = total = replies = 0
        per_kind: dict[str, list[int]] = {}
        for d in (4, 8, 12):
            for seed in range(seeds):
                env.reset(seed=seed, options={"difficulty": d})
                if len(env.goal.items) < 2:
                    continue
                errors = _broken_cart(env)
                n_user = len(env.utterances)
                env.step(action)
                reply = " ".join(u.clean_text for u in env.utterances[n_user:]).lower()
                replies += bool(reply)
                for kind, facts in errors:
                    ok = facts["brand"].lower() in reply and ("want" not in facts or facts["want"].lower() in reply)
                    named += ok
                    total += 1
                    per_kind.setdefault(kind, [0, 0])
                    per_kind[kind][0] += ok
                    per_kind[kind][1] += 1
        out[trigger] = {"wrong_lines": total, "named": named, "coverage": named / total if total else 0.0,
                        "per_kind": {k: v[0] / v[1] for k, v in per_kind.items()}}
    return out


class _BareNameEngine:
    """A text engine whose every rephrasing is the utterance's bare slot phrases."""

    token_level = False

    def __init__(self):
        self.reply = ""

    def chat(self, convs, temperature=0.0, max_new_tokens=96, seed=None):
        return [type("R", (), {"text": self.reply})() for _ in convs]


def llm_figures(catalog, seeds: int) -> dict:
    from ecomrlve.policies.shopper_llm import ShopperPhraser

    engine = _BareNameEngine()
    phraser = ShopperPhraser(engine)
    openings = rejected = 0
    accepted: list[str] = []  # the stub's text keeps the request when a slot phrase carries it
    for env_id in ENV_IDS:
        env = make_env(env_id, catalog)
        for d in DIFFICULTIES:
            for seed in range(seeds):
                env.reset(seed=seed, options={"difficulty": d})
                utt = env.utterances[0]
                phrases = [env.shopper.slots[n].phrase for n in utt.slots if n in env.shopper.slots]
                bare = " ".join(phrases) if phrases else "my order"
                engine.reply = bare[:1].upper() + bare[1:] + "."
                _, used_llm = phraser.phrase(utt, env.shopper.slots)
                openings += 1
                rejected += not used_llm
                if used_llm and len(accepted) < 5:
                    accepted.append(f"{env_id} d={d} seed={seed}: {engine.reply}")
    return {"openings": openings, "rejected": rejected, "rejection_rate": rejected / openings,
            "accepted_examples": accepted,
            "phraser_stats": {k: v for k, v in phraser.stats.items() if k != "by_kind"}}


def omitted_quantity_figures(catalog, seeds: int) -> dict:
    """Multi-unit requests whose quantity is omitted, and those that read as one unit."""
    env = make_env("E_CART", catalog)
    omitted = reads_as_one = 0
    for d in range(13):
        for seed in range(seeds):
            env.reset(seed=seed, options={"difficulty": d})
            opening = env.utterances[0].clean_text.lower()
            for i, item in enumerate(env.goal.items):
                if item.quantity > 1 and f"quantity:{i}" in env.shopper.omitted:
                    omitted += 1
                    reads_as_one += f"a few of {plural_phrase(item.phrase)}".lower() not in opening
    return {"omitted_multi_unit": omitted, "reads_as_one": reads_as_one}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=50, help="seeds per env x difficulty for the oracle sweep")
    ap.add_argument("--correction-seeds", type=int, default=60, help="seeds per difficulty for the cart corrections")
    ap.add_argument("--world-episodes", type=int, default=300, help="episodes per d for the world figures")
    ap.add_argument("--label", default="current", help="a name for this measurement (e.g. before / after)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    catalog = Catalog.synthetic(n_products=20_000, seed=0)
    t0 = time.perf_counter()
    result = {
        "label": args.label,
        "seeds": args.seeds,
        "corrections": correction_figures(catalog, args.correction_seeds),
        "oracle": oracle_figures(catalog, args.seeds),
        "llm_bare_name": llm_figures(catalog, min(args.seeds, 25)),
        "omitted_quantity": omitted_quantity_figures(catalog, args.seeds),
        "world": {
            **measure_variants(catalog, args.world_episodes),
            "stockout": measure_stockouts(catalog, args.world_episodes),
            "implausible": measure_implausible(catalog),
        },
    }
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    previous[args.label] = result
    args.out.write_text(json.dumps(previous, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
