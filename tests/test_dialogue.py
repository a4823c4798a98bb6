"""The dialogue reads like a chat: the shopper's wording (inflect plurals and articles, no
raw attribute suffixes, no double greetings), an oracle that tells the shopper what it did,
thanks only for messages that were sent, and LLM rephrasings that keep the request.

The sweeps run over 8 envs x d in {0, 4, 8, 12}: a few seeds in the default run, 200 seeds
as slow tests."""

from __future__ import annotations

import pytest

from dialogue_lint import RULES, episode_texts, lint
from ecomrlve.envs import ENV_IDS, make_env
from ecomrlve.envs.journey import TRANSITIONS, TRANSITIONS_UNTHANKED
from ecomrlve.envs.shopper import article, brand_item, count_of, plural, singular, top_k, with_article
from ecomrlve.policies import OraclePolicy
from ecomrlve.policies.shopper_llm import LLMShopperBackend, ShopperPhraser, check_rephrase

from conftest import run_episode

DIFFICULTIES = (0, 4, 8, 12)
WORLD_CHANGING = {"cart_add", "cart_remove", "cart_set_quantity", "return_initiate", "return_exchange"}


# ---------------------------------------------------------------- the lint itself
@pytest.mark.parametrize("text, rules", [
    ("Great, thank you. Next, Hi, I'd like to return my kettle.", ["double_greeting"]),
    ("Here are my top 1 picks: p0000001.", ["top_1_picks"]),
    ("I want it with a Unscented scent.", ["article"]),
    ("I need an notebook.", ["article"]),
    ("Hey, the Levi's men's jean I wanted is sold out.", ["category_number"]),
    ("I'd like the Lavazza coffee bean.", ["category_number"]),
    ("I want it in the Chocolate Chip Cookie Dough flavor.", []),
    ('Can I return the "Acme Mug MG-1 (color: Black)"?', ["raw_attribute_suffix"]),
    ("I want the apron in material Microfiber.", ["stilted_attribute"]),
    ("Hi! Please add the Levi's men's jeans and an Acme kettle in the Unscented scent to my cart.", []),
    ('Hello. Can I return the "Acme Mug MG-1" in Black? I need a few, an hour ago, a USB hub.', []),
    ("Here is my top pick:\n1. Acme Kettle (p0000001)", []),
    # catalog wording (titles in listings and quotes) is not the dialogue's
    ("Here are my top 2 picks, best first:\n1. Acme Chocolate Chip Cookie Bars (p0000001)\n"
     "2. Acme Chocolate Chip Bars (p0000002)\nThey all meet your requirements.", []),
])
def test_lint_flags_exactly_the_bad_phrasings(text, rules):
    assert lint(text) == rules


# ---------------------------------------------------------------- wording helpers
@pytest.mark.parametrize("leaf, one, many", [
    ("Men's Jeans", "men's jeans", "men's jeans"),
    ("Coffee Beans", "coffee beans", "coffee beans"),
    ("Over-Ear Headphones", "over-ear headphones", "over-ear headphones"),
    ("Safety Glasses", "safety glasses", "safety glasses"),
    ("Computer Mice", "computer mouse", "computer mice"),
    ("Portable SSDs", "portable SSD", "portable SSDs"),
    ("USB-C Chargers", "USB-C charger", "USB-C chargers"),
    ("Putty Knives", "putty knife", "putty knives"),
    ("Canvases", "canvas", "canvases"),
    ("Bookshelves", "bookshelf", "bookshelves"),
    ("Men's T-Shirts", "men's t-shirt", "men's t-shirts"),
    ("Flour", "flour", "flour"),
    ("Painter's Tape", "painter's tape", "painter's tape"),
])
def test_category_nouns(leaf, one, many):
    assert singular(leaf) == one and plural(leaf) == many


def test_articles_counts_and_names():
    assert [article(w) for w in ("Unscented scent", "USB-C connector", "HDMI port", "8 inch screen", "11 inch",
                                 "hour", "one-piece", "apron")] == ["an", "a", "an", "an", "an", "an", "a", "an"]
    assert with_article("Unscented scent") == "an Unscented scent"
    assert (top_k(1), top_k(4), top_k(1, "alternative"), top_k(2, "option")) == (
        "top pick", "top 4 picks", "top alternative", "top 2 options")
    assert count_of(3, "the Coleman tent") == "three of the Coleman tents"
    assert count_of(2, "the Brooks running shoes") == "two of the Brooks running shoes"
    assert count_of(1, "the Coleman tent") == "the Coleman tent"
    assert brand_item("The North Face", "Rain Jackets") == "The North Face rain jacket"
    assert brand_item("Anker", "USB-C Chargers") == "the Anker USB-C charger"


# ---------------------------------------------------------------- oracle transcripts and openings
def _sweep(catalog, seeds: int, openings: int):
    """Lint counts, silent world-changing / answering oracle turns, false claims and thanks
    after no message, over oracle episodes; plus lint counts over shopper openings."""
    counts = {r: 0 for r in RULES}
    examples: list[str] = []
    silent, false_claims, thanks_unsent, failed = [], 0, [], []
    for env_id in ENV_IDS:
        env = make_env(env_id, catalog)
        oracle = OraclePolicy(env)
        for d in DIFFICULTIES:
            for seed in range(openings):
                env.reset(seed=seed, options={"difficulty": d})
                for rule in lint(env.utterances[0].clean_text):
                    counts[rule] += 1
                    examples.append(env.utterances[0].clean_text)
            for seed in range(seeds):
                obs, info = run_episode(env, oracle, seed, d, max_steps=200)
                if not info["reward"]["is_correct"]:
                    failed.append((env_id, d, seed))
                for _, text in episode_texts(env):
                    for rule in lint(text):
                        counts[rule] += 1
                        examples.append(text)
                false_claims += env.claims_false
                spoke, users = False, 0
                for m in env.messages[1:]:
                    if m["role"] == "assistant":
                        names = {c["function"]["name"] for c in m.get("tool_calls", [])}
                        if (names & WORLD_CHANGING or m.get("answer") is not None) and not m["content"]:
                            silent.append((env_id, d, seed))
                        spoke = spoke or bool(m["content"])
                    elif m["role"] == "user":
                        if users and "thank" in env.utterances[users].clean_text.lower() and not spoke:
                            thanks_unsent.append((env_id, d, seed, env.utterances[users].clean_text))
                        users += 1
                        spoke = False
    return counts, examples, silent, false_claims, thanks_unsent, failed


def _check_sweep(catalog, seeds, openings):
    counts, examples, silent, false_claims, thanks_unsent, failed = _sweep(catalog, seeds, openings)
    assert failed == []
    assert counts == {r: 0 for r in RULES}, examples[:5]
    assert silent == []  # every oracle turn that changes the world or answers tells the shopper
    assert false_claims == 0
    assert thanks_unsent == []


def test_oracle_dialogue_is_clean(catalog):
    _check_sweep(catalog, seeds=5, openings=25)


@pytest.mark.slow
def test_oracle_dialogue_is_clean_full_sweep(catalog):
    _check_sweep(catalog, seeds=200, openings=200)


def test_journey_transitions_thank_only_after_a_message_and_never_greet_twice(catalog):
    env = make_env("E_JOURNEY", catalog)
    leads = {True: set(), False: set()}
    for seed in range(8):
        for spoke in (True, False):
            env.reset(seed=seed, options={"difficulty": 0})
            oracle = OraclePolicy(env)
            obs = env._obs()
            for _ in range(60):
                act = oracle.act(obs)
                if act.get("answer") is not None and not spoke:
                    act.pop("assistant_message", None)
                n_user = len(env.utterances)
                obs, _, terminated, truncated, _ = env.step(act)
                if act.get("answer") is not None and len(env.utterances) > n_user:
                    text = env.utterances[n_user].clean_text
                    lead = next((t for t in TRANSITIONS + TRANSITIONS_UNTHANKED if text.startswith(t)), None)
                    if lead is not None:
                        leads[spoke].add(lead)
                        assert lint(text) == [], text
                if terminated or truncated:
                    break
    assert leads[True] and leads[True] <= set(TRANSITIONS)
    assert leads[False] and leads[False] <= set(TRANSITIONS_UNTHANKED)


# ---------------------------------------------------------------- LLM phrasing keeps the request
class _Engine:
    token_level = False

    def __init__(self):
        self.reply = ""

    def chat(self, convs, temperature=0.0, max_new_tokens=96, seed=None):
        return [type("R", (), {"text": self.reply})() for _ in convs]


def _bare_name(env, utt) -> str:
    phrases = [env.shopper.slots[n].phrase for n in utt.slots if n in env.shopper.slots]
    bare = " ".join(phrases) if phrases else "my order"
    return bare[:1].upper() + bare[1:] + "."


def test_bare_item_name_openings_are_all_rejected(catalog):
    engine = _Engine()
    backend = LLMShopperBackend.__new__(LLMShopperBackend)  # no model loading
    backend.phraser = ShopperPhraser(engine)
    openings = 0
    for env_id in ENV_IDS:
        env = make_env(env_id, catalog)
        for d in DIFFICULTIES:
            for seed in range(3):
                env.reset(seed=seed, options={"difficulty": d})
                utt = env.utterances[0]
                engine.reply = _bare_name(env, utt)
                request = {"text": utt.text, "clean_text": utt.clean_text, "kind": utt.kind, "env_id": env_id,
                           "slots": list(utt.slots), "mentioned_ids": list(utt.mentioned_ids),
                           "slot_phrases": {n: s.phrase for n, s in env.shopper.slots.items()}}
                assert backend.phrase(request) == utt.text  # the template text
                # a rephrasing that keeps the request is still accepted
                kept = f"Hi there, quick one. {utt.clean_text} Thanks a lot."
                assert check_rephrase(kept, utt.clean_text, utt.slots, env.shopper.slots, utt.mentioned_ids,
                                      utt.kind, env_id)[0]
                openings += 1
    stats = backend.stats()
    assert stats["calls"] == stats["fallback"] == openings and stats["fallback_rate"] == 1.0
    assert stats["by_kind"] == {"opening": {"calls": openings, "fallback": openings}}
    assert set(stats["reasons"]) <= {"not the shopper's voice", "request lost"}


@pytest.mark.parametrize("reply, why", [
    ("The Grand Trunk hammock.", "not the shopper's voice"),
    ("Here are the Grand Trunk hammock options I found for you.", "not the shopper's voice"),
    ("I like the Grand Trunk hammock.", "request lost"),
])
def test_the_act_and_the_voice_must_survive(reply, why):
    clean = "Hi! Please add the Grand Trunk hammock to my cart."
    slots = {"item:0": "the Grand Trunk hammock"}
    ok, reason = check_rephrase(reply, clean, ["item:0"], slots, (), "opening", "E_CART")
    assert not ok and reason.startswith(why)
    ok, _ = check_rephrase("Could you put the Grand Trunk hammock in my cart?", clean, ["item:0"], slots, (),
                           "opening", "E_CART")
    assert ok
