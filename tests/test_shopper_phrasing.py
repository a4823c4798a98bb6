"""The LLM shopper keeps the typo-noise axis: an accepted rephrasing gets the template
shopper's typos (`ecomrlve.envs.shopper.add_typos`) at the shopper's rate, deterministically, never on
planned slot phrases or ids, and still passes the check. Fake engines only: no Ray, no LLM."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ecomrlve.envs import ENV_IDS, make_env
from ecomrlve.envs.shopper import Slot, Utterance, add_typos
from ecomrlve.policies import shopper_llm
from ecomrlve.policies.shopper_llm import (NOISE_ATTEMPTS, LLMShopperBackend, ShopperPhraser, add_typos_outside,
                                  check_rephrase, id_like_tokens, noise_rng, request_key)


class _Reply:
    def __init__(self, text):
        self.text = text


class _TextEngine:
    """A text-level engine that answers every conversation with ``reply(messages)``."""

    token_level = False

    def __init__(self, reply):
        self.reply = reply
        self.calls = 0

    def chat(self, convs, temperature=0.0, max_new_tokens=96, seed=None):
        assert temperature == 0.0
        self.calls += 1
        return [_Reply(self.reply(c[0])) for c in convs]


def _backend(engine) -> LLMShopperBackend:
    b = LLMShopperBackend.__new__(LLMShopperBackend)  # skip model loading
    b.phraser = ShopperPhraser(engine)
    return b


# ---- a hand-built utterance with slots, ids, a price and a quantity
SLOTS = {
    "item": Slot("item", "Acme trail running shoes", "They're Acme trail running shoes.", ("item", "product")),
    "color": Slot("color", "forest green", "In forest green.", ("color", "colour")),
    "size": Slot("size", "size 10", "I wear size 10.", ("size",)),
    "brand_alt": Slot("brand_alt", "Contoso", "Contoso would do too.", ("brand",)),  # omitted
}
CLEAN = ("Hi, please add 2 pairs of the Acme trail running shoes in forest green, size 10, at $89.99 each "
         "to order ORD-abc; the product id is p0001234.")
UTT = Utterance(text=add_typos(CLEAN, 0.1, np.random.default_rng(7)), clean_text=CLEAN, kind="request",
                slots=("item", "color", "size"), mentioned_ids=("p0001234", "ORD-abc"))
GOOD = ("Hello there! Could you kindly put 2 pairs of Acme trail running shoes into order ORD-abc for me, "
        "the forest green ones in size 10, priced $89.99 apiece? For reference the product id is p0001234. "
        "Thanks so much, I really appreciate your help with this today.")
PLANNED = [SLOTS[n].phrase for n in UTT.slots]
NOISE = 0.12


def _words_outside(text: str, protect) -> list[str]:
    spans = [m.span() for ph in protect for m in re.finditer(re.escape(ph), text, re.IGNORECASE)]
    return [m.group(0) for m in re.finditer(r"\S+", text)
            if not any(m.start() < e and s < m.end() for s, e in spans)]


def test_fixture_rephrasing_passes_the_check():
    ok, why = check_rephrase(GOOD, CLEAN, UTT.slots, SLOTS, UTT.mentioned_ids)
    assert ok, why
    assert UTT.text != CLEAN  # the template text carries its own typos


def test_noise_zero_returns_the_rephrasing_unchanged():
    p = ShopperPhraser(_TextEngine(lambda msgs: GOOD))
    assert p.phrase(UTT, SLOTS) == (GOOD, True)  # default: no noise
    assert p.phrase(UTT, SLOTS, noise=0.0, key="E|1|0|3|0") == (GOOD, True)
    for bad in (None, -0.5, float("nan"), "junk"):
        assert p.rephrase(CLEAN, UTT.slots, SLOTS, UTT.mentioned_ids, fallback=UTT.text, noise=bad) == (GOOD, True)
    assert p.stats["llm"] == 6 and p.stats["noisy"] == 0 and p.stats["fallback"] == 0


def test_noise_is_applied_deterministic_and_keeps_slots_and_ids():
    p = ShopperPhraser(_TextEngine(lambda msgs: GOOD))
    text, used = p.phrase(UTT, SLOTS, noise=NOISE, key="E_CART|17|3|8|0")
    assert used and text != GOOD
    # deterministic: same call, same phraser or a fresh one -> same text
    assert p.phrase(UTT, SLOTS, noise=NOISE, key="E_CART|17|3|8|0") == (text, True)
    assert ShopperPhraser(_TextEngine(lambda msgs: GOOD)).phrase(UTT, SLOTS, noise=NOISE,
                                                                 key="E_CART|17|3|8|0") == (text, True)
    # and it is exactly the seeded noise model outside the protected spans
    protect = PLANNED + list(UTT.mentioned_ids)
    assert text == add_typos_outside(GOOD, NOISE, noise_rng(CLEAN, "E_CART|17|3|8|0"), protect)
    # another episode key -> another draw
    assert p.phrase(UTT, SLOTS, noise=NOISE, key="E_CART|18|3|8|0")[0] != text
    # planned phrases and ids verbatim (case-sensitive), no id-like token changed
    for ph in PLANNED + list(UTT.mentioned_ids) + ["$89.99", "2"]:
        assert ph in text, ph
    assert id_like_tokens(text) == id_like_tokens(GOOD)
    ok, why = check_rephrase(text, CLEAN, UTT.slots, SLOTS, UTT.mentioned_ids)
    assert ok, why
    # the typos landed only outside the protected words, and the word count is unchanged
    assert len(text.split()) == len(GOOD.split())
    assert _words_outside(text, protect) != _words_outside(GOOD, protect)
    inside = [w for w in GOOD.split() if w not in _words_outside(GOOD, protect)]
    assert inside and all(w in text.split() for w in inside)
    assert p.stats["noisy"] == 3 and p.stats["llm"] == 3 and p.stats["fallback"] == 0


def test_rejected_rephrasing_returns_the_template_text_with_its_typos():
    lost = ShopperPhraser(_TextEngine(lambda msgs: "Hello, I need some shoes please, thanks a lot."))
    assert lost.phrase(UTT, SLOTS, noise=NOISE, key="k") == (UTT.text, False)
    assert lost.stats["fallback"] == 1 and lost.stats["noisy"] == 0 and lost.stats["llm"] == 0
    assert "planned slot" in next(iter(lost.stats["reasons"]))
    invented = ShopperPhraser(_TextEngine(lambda msgs: GOOD + " Also order p0099999."))
    assert invented.phrase(UTT, SLOTS, noise=NOISE) == (UTT.text, False)
    assert "invented id-like token(s)" in invented.stats["reasons"]
    leak = ShopperPhraser(_TextEngine(lambda msgs: GOOD + " Contoso is fine too."))
    assert leak.phrase(UTT, SLOTS, noise=NOISE) == (UTT.text, False)
    assert "unplanned slot" in leak.stats["reasons"]


def test_rejected_rephrasing_of_a_real_env_message(catalog):
    env = make_env("E_SUB", catalog)
    env.reset(seed=1, options={"difficulty": 8})
    utt, slots = env.utterances[0], env.shopper.slots
    assert utt.slots and utt.text != utt.clean_text and env.shopper.p_noise > 0
    p = ShopperPhraser(_TextEngine(lambda msgs: "Hi, can you help me find something?"))
    assert p.phrase(utt, slots, noise=env.shopper.p_noise, key="x") == (utt.text, False)
    assert p.stats["fallback"] == 1


def test_noise_that_breaks_the_check_redraws_then_falls_back(monkeypatch):
    calls = []

    def always_leaks(text, p, rng, protect=()):
        calls.append(rng)
        return text + " Contoso"

    monkeypatch.setattr(shopper_llm, "add_typos_outside", always_leaks)
    p = ShopperPhraser(_TextEngine(lambda msgs: GOOD))
    assert p.phrase(UTT, SLOTS, noise=NOISE, key="k") == (UTT.text, False)
    assert len(calls) == NOISE_ATTEMPTS and all(r is calls[0] for r in calls)  # one generator, redrawn
    assert p.stats["reasons"] == {"noise broke check": 1} and p.stats["fallback"] == 1

    seq = iter([GOOD + " Contoso", GOOD.replace("Hello", "Helo")])
    monkeypatch.setattr(shopper_llm, "add_typos_outside", lambda text, p, rng, protect=(): next(seq))
    q = ShopperPhraser(_TextEngine(lambda msgs: GOOD))
    assert q.phrase(UTT, SLOTS, noise=NOISE) == (GOOD.replace("Hello", "Helo"), True)
    assert q.stats["noisy"] == 1 and q.stats["fallback"] == 0


def test_backend_reads_the_noise_key():
    req = {"text": UTT.text, "clean_text": CLEAN, "kind": "request", "slots": list(UTT.slots),
           "mentioned_ids": list(UTT.mentioned_ids), "slot_phrases": {n: s.phrase for n, s in SLOTS.items()},
           "env_id": "E_CART", "turn": 2, "episode_id": 41, "difficulty": 12}
    b = _backend(_TextEngine(lambda msgs: GOOD))
    assert b.phrase(req) == GOOD  # no "noise" key: no typos
    assert b.phrase({**req, "noise": 0.0}) == GOOD
    assert b.phrase({**req, "noise": "junk"}) == GOOD
    noisy = b.phrase({**req, "noise": NOISE})
    assert noisy != GOOD and b.phrase({**req, "noise": NOISE}) == noisy
    assert _backend(_TextEngine(lambda msgs: GOOD)).phrase({**req, "noise": NOISE}) == noisy
    assert noisy == add_typos_outside(GOOD, NOISE, noise_rng(CLEAN, request_key(req)),
                                      PLANNED + list(UTT.mentioned_ids))
    assert request_key(req) == "E_CART|41||12|2"
    assert b.phrase({**req, "noise": NOISE, "turn": 3}) != noisy
    assert check_rephrase(noisy, CLEAN, UTT.slots, SLOTS, UTT.mentioned_ids)[0]
    # a rejected rephrasing: the request's (template) text
    bad = _backend(_TextEngine(lambda msgs: "Hi."))
    assert bad.phrase({**req, "noise": NOISE}) == UTT.text and bad.stats()["fallback"] == 1
    # without check material the template text passes through, the engine is not asked
    eng = _TextEngine(lambda msgs: GOOD)
    assert _backend(eng).phrase({"text": "hello", "noise": NOISE}) == "hello" and eng.calls == 0


def test_add_typos_outside_is_add_typos_when_nothing_is_protected():
    for seed in range(20):
        for text in (CLEAN, GOOD, UTT.text, "  spaced   out\ttext, you know, please!  "):
            a = add_typos(text, 0.1, np.random.default_rng(seed))
            b = add_typos_outside(text, 0.1, np.random.default_rng(seed), ())
            assert a == b
    assert add_typos_outside(GOOD, 0.0, np.random.default_rng(0), PLANNED) == GOOD
    # a protected phrase inside a word protects the whole word
    out = add_typos_outside("xxforest greenxx " * 3, 1.0, np.random.default_rng(0), ["forest green"])
    assert out == "xxforest greenxx " * 3


def test_noise_rng_is_stable():
    a = noise_rng(CLEAN, "k").integers(1 << 30, size=4)
    b = noise_rng(CLEAN, "k").integers(1 << 30, size=4)
    assert (a == b).all()
    assert (noise_rng(CLEAN, "k2").integers(1 << 30, size=4) != a).any()
    assert (noise_rng(CLEAN + ".", "k").integers(1 << 30, size=4) != a).any()
    # pinned: independent of PYTHONHASHSEED and of the process
    assert noise_rng("hello", "E_CART|1|2|3|4").integers(1 << 30) == \
        np.random.default_rng(np.random.SeedSequence([
            int.from_bytes(__import__("hashlib").blake2b(b"hello", digest_size=8).digest(), "big"),
            int.from_bytes(__import__("hashlib").blake2b(b"E_CART|1|2|3|4", digest_size=8).digest(), "big"),
            __import__("zlib").crc32(b"rephrase_noise")])).integers(1 << 30)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_noisy_rephrasings_of_every_env_keep_the_check(catalog, env_id):
    """Every env's messages at the top noise rate: a rephrasing that wraps the clean text
    gets typos, keeps planned phrases / ids verbatim and still passes the check."""
    checked = changed = 0
    for seed in range(6):
        env = make_env(env_id, catalog)
        env.reset(seed=seed, options={"difficulty": 12})
        slots, rate = env.shopper.slots, env.shopper.p_noise
        assert rate > 0.1
        for i, utt in enumerate(env.utterances):
            reply = "Well, hello there. " + utt.clean_text + " Thank you so much for helping me with this today."
            if not check_rephrase(reply, utt.clean_text, utt.slots, slots, utt.mentioned_ids)[0]:
                continue
            p = ShopperPhraser(_TextEngine(lambda msgs, r=reply: r))
            key = f"{env_id}|{seed}|{seed}|12|{i}"
            text, used = p.phrase(utt, slots, noise=rate, key=key)
            assert used, p.stats
            assert p.phrase(utt, slots, noise=rate, key=key) == (text, True)
            assert check_rephrase(text, utt.clean_text, utt.slots, slots, utt.mentioned_ids, voice=False)[0]
            for n in utt.slots:
                ph = getattr(slots.get(n), "phrase", "")
                assert ph.lower() in text.lower()
                assert re.search(re.escape(ph), reply, re.IGNORECASE).group(0) in text  # verbatim, same case
            for i_ in utt.mentioned_ids:
                assert i_ in text
            assert id_like_tokens(text) == id_like_tokens(reply)
            checked += 1
            changed += text != reply
    assert checked >= 3 and changed >= checked - 1
