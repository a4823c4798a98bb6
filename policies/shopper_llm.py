"""LLM phrasing for the shopper, verified, with a template fallback.

The template shopper decides *what* is said (`ecomrlve.envs.shopper.Utterance`: clean text, the
slots it discloses, the ids it mentions). An LLM may rephrase it, at temperature 0, as long
as a check proves nothing the verifiers depend on changed:

1. every planned slot's value (its ``Slot.phrase``) still appears verbatim
   (case-insensitive);
2. no other known slot's value appears unless the template text already had it (no leaking
   of omitted slots);
3. no id-like token (any token containing a digit: product / order / line ids, prices,
   quantities, dates) appears that the template text, the slot phrases or the mentioned ids
   did not contain: the LLM invents nothing checkable;
4. the reply is still the shopper's turn: it speaks in the first or second person when the
   template did ("I", "my", "you", ...), and uses no assistant phrasing the template did not
   ("How can I help", "Here are", "I've added", ...): a bare item name ("The Grand Trunk
   hammock.") or the assistant's voice is rejected;
5. the act survives (`act_check`): an opening (``kind`` "opening") still asks for something
   (a request marker: a question, "please", "could you", "I'd like", "I need", ...), and every
   act the template text asks for (add to cart, recommend, find an alternative, return, track
   an order, ask about a policy, put a bundle together; `ACTS`) is still asked for. The acts
   come from the environment (``env_id``) when it has one act, else from the template text.

Otherwise the template text is used and the fallback is counted (`ShopperPhraser.stats`:
calls, llm, fallback, reasons, per utterance kind in ``by_kind``; ``fallback_rate()`` is the
backend's reported metric).

    phraser = ShopperPhraser(engine, tokenizer)      # HFEngine/VLLMEngine + tokenizer, or OpenAIEngine
    text, used_llm = phraser.phrase(utterance, shopper.slots)
    text, used_llm = phrase(utterance, slots)        # module default (configure() first)

For the Serve deployment (`ecomrlve.actors.shopper_service`): `LLMShopperBackend` implements its
``phrase(request) -> str`` backend protocol and ``phrase_batch(requests) -> list[str]``, the
deployment's ``@serve.batch`` entry point: one engine call (`ShopperPhraser.rephrase_batch`)
for every request of the batch, each reply checked on its own. The request carries ``text`` and, for the
check, ``clean_text``, ``slots`` (disclosed names), ``slot_phrases`` ({name: phrase} of all
known slots) and ``mentioned_ids``; without them the template text is returned unchanged.

Typo noise (the ``p_noise`` difficulty axis) is re-applied to an accepted rephrasing, so the
LLM backend keeps that axis: `add_typos_outside` runs the template shopper's own noise model
(`ecomrlve.envs.shopper.add_typos`) at the shopper's rate (``noise=``; the request key ``noise``,
default 0.0 = no typos) on every word except those overlapping a planned slot phrase or a
mentioned id (``add_typos`` itself never touches words with digits, ``_``, ``-`` or ``$``), so
check clauses 1 and 3 hold by construction. The generator is seeded, in the style of
`ecomrlve.envs.rng`, from blake2b digests of the clean text and an episode key (``key=``; for a
request: env_id, episode_id, seed, difficulty, turn) plus the stream name
``"rephrase_noise"``: the same request gives the same text. The noisy text is checked again
on clauses 1-3 (clause 2, a typo spelling an omitted slot, is not excluded by construction); a failure
redraws from the same generator, up to `NOISE_ATTEMPTS` times, then falls back to the template
text (reason ``noise broke check``). ``stats["noisy"]`` counts rephrasings noise was applied to.
Unlike the template path, slot phrases themselves never get typos in a rephrasing.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ecomrlve.envs.rng import stable_digest, stable_int
from ecomrlve.envs.shopper import add_typos

__all__ = ["check_rephrase", "act_check", "required_acts", "ACTS", "id_like_tokens", "ShopperPhraser", "LLMShopperBackend", "phrase", "configure",
           "SYSTEM_PROMPT", "add_typos_outside", "noise_rate", "noise_rng", "request_key", "NOISE_STREAM",
           "NOISE_ATTEMPTS"]

SYSTEM_PROMPT = (
    "You rewrite a shopper's chat message to an online store assistant so it sounds natural and varied. "
    "Keep the same meaning and the same first-person voice. Copy every quoted phrase exactly as written. "
    "Do not add products, ids, numbers, prices or new wishes. Reply with the rewritten message only."
)
_TOKEN = re.compile(r"[A-Za-z0-9$][A-Za-z0-9_\-./,$:]*")
_WORD = re.compile(r"\S+")  # the unit `add_typos` works on
NOISE_STREAM = "rephrase_noise"
NOISE_ATTEMPTS = 4


def id_like_tokens(text: str) -> set[str]:
    """Tokens containing a digit, trailing punctuation stripped, lower-cased."""
    out = set()
    for m in _TOKEN.findall(text or ""):
        t = m.rstrip(".,:;/-").lower()
        if any(c.isdigit() for c in t):
            out.add(t)
    return out


def _phrase_of(slot: Any) -> str:
    return slot if isinstance(slot, str) else getattr(slot, "phrase", str(slot))


# act -> words that ask for it (lower case, matched as regular expressions on word starts)
ACTS: dict[str, tuple[str, ...]] = {
    "add_to_cart": ("cart", "add", "put", "buy", "order", "get me", "purchase"),
    "recommend": ("recommend", "suggest", "pick", "option", "top", "best", "find", "looking for", "shopping for",
                  "show me", "after"),
    "alternative": ("alternative", "substitut", "replace", "instead", "similar", "something else", "other"),
    "return": ("return", "send it back", "send them back", "refund", "take it back"),
    "track": ("status", "where", "track", "arriv", "when", "check on", "update", "deliver", "shipp"),
    "policy": ("?", "policy", "can i", "do i", "will i", "how much", "how long", "how many", "is it", "are there"),
    "bundle": ("each", "categor", "one item", "one product", "bundle", "one of"),
}
ENV_ACTS: dict[str, tuple[str, ...]] = {
    "E_CART": ("add_to_cart",), "E_PD": ("recommend",), "E_SUB": ("alternative",), "E_RETURN": ("return",),
    "E_STATUS": ("track",), "E_POLICY": ("policy",), "E_BUNDLE": ("bundle",),
}
REQUEST_MARKERS = ("?", "please", "pls", "can you", "could you", "would you", "can i", "i'd like", "i would like",
                   "i need", "i want", "i'm looking", "i am looking", "i'm after", "i'm shopping", "help me",
                   "i'd love", "let me know", "tell me", "looking for")
ASSISTANT_VOICE = ("how can i help", "how may i help", "i can help you", "here are", "here is", "i've added",
                   "i have added", "i found", "let me check", "let me look", "as an ai", "assistant:",
                   "is there anything else", "happy to help", "i'd be happy", "i recommend")
_PERSON = re.compile(r"\b(i|i'm|i'd|i've|i'll|me|my|mine|we|our|us|you|your)\b", re.IGNORECASE)


def _has(text: str, words: Iterable[str]) -> bool:
    return any((w in text) if not w[0].isalpha() else re.search(r"\b" + re.escape(w), text) for w in words)


def required_acts(clean_text: str, env_id: str = "") -> tuple[str, ...]:
    """The acts a template text asks for: its environment's act, else (a journey, no env)
    every act whose words the template text uses."""
    if env_id in ENV_ACTS:
        return ENV_ACTS[env_id]
    low = (clean_text or "").lower()
    return tuple(a for a, words in ACTS.items() if a != "policy" and _has(low, words))


def act_check(text: str, clean_text: str, kind: str = "", env_id: str = "") -> tuple[bool, str]:
    """(ok, reason): the reply is still the shopper's turn and, for an opening, still asks
    for every act the template asked for (module docstring, clauses 4 and 5)."""
    low, clean_low = text.lower(), (clean_text or "").lower()
    if _PERSON.search(clean_low) and not _PERSON.search(low):
        return False, "not the shopper's voice: no first or second person"
    voice = [w for w in ASSISTANT_VOICE if w in low and w not in clean_low]
    if voice:
        return False, f"not the shopper's voice: {voice[0]!r}"
    if "opening" in (kind or "").split("+"):
        if _has(clean_low, REQUEST_MARKERS) and not _has(low, REQUEST_MARKERS):
            return False, "request lost: no request marker"
        for act in required_acts(clean_text, env_id):
            if _has(clean_low, ACTS[act]) and not _has(low, ACTS[act]):
                return False, f"request lost: act {act!r}"
    return True, "ok"


def check_rephrase(text: str, clean_text: str, planned: Sequence[str], slot_phrases: Mapping[str, Any],
                   mentioned_ids: Sequence[str] = (), kind: str = "", env_id: str = "",
                   voice: bool = True) -> tuple[bool, str]:
    """(ok, reason) for a rephrasing `text` of `clean_text` (see module docstring); `kind`
    is the utterance's kind ("opening", "answer", ...), `env_id` its environment. With
    `voice` False only clauses 1-3 are checked (typo noise on an accepted rephrasing may
    misspell a request word, as it does on the template text)."""
    if not isinstance(text, str) or not text.strip():
        return False, "empty"
    low = text.lower()
    clean_low = (clean_text or "").lower()
    for name in planned:
        ph = _phrase_of(slot_phrases.get(name, "")).lower()
        if ph and ph not in low:
            return False, f"planned slot {name!r} lost"
    for name, slot in slot_phrases.items():
        if name in planned:
            continue
        ph = _phrase_of(slot).lower()
        if ph and ph in low and ph not in clean_low:
            return False, f"unplanned slot {name!r} disclosed"
    allowed = id_like_tokens(clean_text) | {i.lower() for i in mentioned_ids}
    for slot in slot_phrases.values():
        allowed |= id_like_tokens(_phrase_of(slot))
    invented = id_like_tokens(text) - allowed
    if invented:
        return False, f"invented id-like token(s): {', '.join(sorted(invented)[:3])}"
    return act_check(text, clean_text, kind, env_id) if voice else (True, "ok")


def noise_rate(value: Any) -> float:
    """A typo rate in [0, 1]; anything missing, invalid or non-positive is 0 (no typos)."""
    try:
        p = float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return min(1.0, p) if math.isfinite(p) and p > 0 else 0.0


def noise_rng(clean_text: str, key: str = "") -> np.random.Generator:
    """The typo generator of one utterance: blake2b digests of its clean text and of `key`
    (the episode / turn it belongs to) plus the stream name, as `ecomrlve.envs.rng.episode_rng` does.
    Identical in every process."""
    entropy = [stable_digest(clean_text or ""), stable_digest(key or ""), stable_int(NOISE_STREAM)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def request_key(request: Mapping[str, Any]) -> str:
    """The episode key of a shopper-service request (missing fields are empty)."""
    return "|".join(str(request.get(k, "")) for k in ("env_id", "episode_id", "seed", "difficulty", "turn"))


def add_typos_outside(text: str, p: float, rng: np.random.Generator, protect: Iterable[str] = ()) -> str:
    """`ecomrlve.envs.shopper.add_typos` at rate `p`, except on words overlapping an occurrence
    (case-insensitive) of a `protect` phrase: those stay verbatim, and every other word gets
    the noise ``add_typos(text, p, rng)`` would give it."""
    return add_typos(text, p, rng, protect)


def _clean_reply(text: str) -> str:
    t = text.strip().strip('"').strip()
    for prefix in ("Rewritten message:", "Message:", "Shopper:"):
        if t.lower().startswith(prefix.lower()):
            t = t[len(prefix):].strip()
    return t.split("\n\n")[0].strip()


@dataclass
class ShopperPhraser:
    """Rephrases utterances with an engine at temperature 0; verified; counted."""

    engine: Any
    tokenizer: Any = None
    max_new_tokens: int = 96
    stats: dict = field(default_factory=lambda: {"calls": 0, "llm": 0, "fallback": 0, "noisy": 0,
                                                 "reasons": {}, "by_kind": {}})

    def __post_init__(self):
        self._lock = threading.Lock()

    def _prompt_messages(self, clean: str, keep: Sequence[str]) -> list[dict]:
        quoted = "; ".join(f'"{k}"' for k in keep) or "(none)"
        return [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": f"Phrases to copy exactly: {quoted}\nMessage: {clean}"}]

    def _generate_batch(self, conversations: list[list[dict]]) -> list[str]:
        """One engine call for all `conversations` (temperature 0), replies in order."""
        if not getattr(self.engine, "token_level", True):
            replies = self.engine.chat([(m, None) for m in conversations], temperature=0.0,
                                       max_new_tokens=self.max_new_tokens)
            return [r.text for r in replies]
        if self.tokenizer is None:
            raise ValueError("a token-level engine needs the tokenizer")
        prompts = []
        for messages in conversations:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            prompts.append(list(self.tokenizer(text, add_special_tokens=False)["input_ids"]))
        outs = self.engine.generate(prompts, temperature=0.0, max_new_tokens=self.max_new_tokens, seed=0)
        return [self.tokenizer.decode(o.ids, skip_special_tokens=True) for o in outs]

    def rephrase(self, clean_text: str, planned: Sequence[str], slot_phrases: Mapping[str, Any],
                 mentioned_ids: Sequence[str] = (), fallback: str | None = None, noise: float = 0.0,
                 key: str = "", kind: str = "", env_id: str = "") -> tuple[str, bool]:
        """(text, used_llm). An accepted rephrasing gets typos at rate `noise` (seeded by
        `clean_text` and `key`, see module docstring); otherwise `fallback` (default the
        clean text) is returned and counted (per utterance `kind`)."""
        return self.rephrase_batch([dict(clean_text=clean_text, planned=planned, slot_phrases=slot_phrases,
                                         mentioned_ids=mentioned_ids, fallback=fallback, noise=noise, key=key,
                                         kind=kind, env_id=env_id)])[0]

    def rephrase_batch(self, items: Sequence[Mapping[str, Any]]) -> list[tuple[str, bool]]:
        """`rephrase` for many utterances with ONE engine call: each item holds `rephrase`'s
        keyword arguments (``clean_text``, ``planned``, ``slot_phrases``, optional
        ``mentioned_ids``, ``fallback``, ``noise``, ``key``, ``kind``, ``env_id``). Each reply
        is checked on its own; an engine failure falls back for the whole batch."""
        if not items:
            return []
        jobs = []
        for it in items:
            clean, slots = it["clean_text"], it["slot_phrases"]
            planned, ids = list(it["planned"]), list(it.get("mentioned_ids") or ())
            fallback = clean if it.get("fallback") is None else it["fallback"]
            keep = [_phrase_of(slots[n]) for n in planned if n in slots] + ids
            jobs.append((clean, planned, slots, ids, fallback, keep, noise_rate(it.get("noise")), it.get("key", ""),
                         str(it.get("kind") or ""), str(it.get("env_id") or "")))
        try:
            replies = self._generate_batch([self._prompt_messages(j[0], j[5]) for j in jobs])
            if len(replies) != len(jobs):
                raise ValueError(f"{len(replies)} replies for {len(jobs)} prompts")
            error = None
        except Exception as exc:  # noqa: BLE001 - an engine failure falls back, never breaks the episode
            replies, error = [""] * len(jobs), f"engine error: {type(exc).__name__}"
        return [self._accept(_clean_reply(r) if error is None else "", error, *j) for r, j in zip(replies, jobs)]

    def _accept(self, reply: str, error: str | None, clean_text: str, planned: list, slot_phrases: Mapping,
                mentioned_ids: list, fallback: str, keep: list, p: float, key: str, kind: str,
                env_id: str) -> tuple[str, bool]:
        """Check one reply (its slots, ids, act and voice, then its typo noise), count it, and
        return (text, used_llm)."""
        noisy = False
        if error is not None:
            ok, reason = False, error
        else:
            ok, reason = check_rephrase(reply, clean_text, planned, slot_phrases, mentioned_ids, kind, env_id)
            if ok and p > 0:
                rng = noise_rng(clean_text, key)
                for _ in range(NOISE_ATTEMPTS):
                    text = add_typos_outside(reply, p, rng, keep)
                    ok, reason = check_rephrase(text, clean_text, planned, slot_phrases, mentioned_ids, voice=False)
                    if ok:
                        reply, noisy = text, True
                        break
                else:
                    reason = f"noise broke check: {reason}"
        with self._lock:
            per_kind = self.stats["by_kind"].setdefault(kind or "other", {"calls": 0, "fallback": 0})
            per_kind["calls"] += 1
            per_kind["fallback"] += int(not ok)
            self.stats["calls"] += 1
            if ok:
                self.stats["llm"] += 1
                self.stats["noisy"] += int(noisy)
            else:
                self.stats["fallback"] += 1
                tag = reason.split(":")[0].split(" '")[0]
                self.stats["reasons"][tag] = self.stats["reasons"].get(tag, 0) + 1
        return (reply, True) if ok else (fallback, False)

    def fallback_rate(self) -> float:
        """Share of rephrasings that fell back to the template text (0.0 before any call)."""
        with self._lock:
            return self.stats["fallback"] / self.stats["calls"] if self.stats["calls"] else 0.0

    def phrase(self, utterance, slots: Mapping[str, Any], noise: float = 0.0, key: str = "",
               env_id: str = "") -> tuple[str, bool]:
        """(text, used_llm) for an `ecomrlve.envs.shopper.Utterance`; `slots` maps slot names to
        `Slot`s or phrases (e.g. ``env.shopper.slots``); `noise` is the shopper's typo rate
        (``env.shopper.p_noise``), `key` identifies the episode/turn for the typo seed. The
        fallback is the utterance's own text (typos included)."""
        return self.rephrase(utterance.clean_text, list(utterance.slots), slots, list(utterance.mentioned_ids),
                             fallback=utterance.text, noise=noise, key=key, kind=utterance.kind, env_id=env_id)


_DEFAULT: ShopperPhraser | None = None


def configure(engine, tokenizer=None, **kwargs) -> ShopperPhraser:
    """Set the module default phraser used by `phrase`."""
    global _DEFAULT
    _DEFAULT = ShopperPhraser(engine, tokenizer, **kwargs)
    return _DEFAULT


def phrase(utterance, slots: Mapping[str, Any], noise: float = 0.0, key: str = "") -> tuple[str, bool]:
    """Module-level entry point: the default phraser, or the template text when none is configured."""
    if _DEFAULT is None:
        return utterance.text, False
    return _DEFAULT.phrase(utterance, slots, noise=noise, key=key)


class LLMShopperBackend:
    """`ecomrlve.actors.shopper_service` backend: ``register_backend("llm", LLMShopperBackend)``;
    options: ``model`` (default smollm2), ``device`` (``auto``: the GPU its replica was given,
    else the CPU), ``engine`` (hf), or ``base_url`` + ``model`` for an OpenAI-compatible server.
    ``wants_gpu``: on a cluster with a GPU node type, its replicas are placed there."""

    name = "llm"
    wants_gpu = True

    def __init__(self, model: str = "smollm2", device: str = "auto", base_url: str | None = None,
                 max_new_tokens: int = 96, **_: Any):
        if base_url:
            from .engines import OpenAIEngine

            engine, tok = OpenAIEngine(base_url, model), None
        else:
            import torch

            from .engines import HFEngine
            from .models import load_model

            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            m, tok = load_model(model, device=device)
            engine = HFEngine(m, tok, device=device)
        self.phraser = ShopperPhraser(engine, tok, max_new_tokens=max_new_tokens)

    def phrase(self, request: dict) -> str:
        """The rephrased text; ``noise`` (the shopper's ``p_noise``, default 0.0) sets the typo
        rate of an accepted rephrasing, seeded by the clean text and `request_key(request)`."""
        return self.phrase_batch([request])[0]

    def phrase_batch(self, requests: Sequence[dict]) -> list[str]:
        """`phrase` for many requests with one engine call (the Serve deployment's
        ``@serve.batch`` entry point); requests without check context (no ``slot_phrases``
        and no ``clean_text``) keep their template text and take no part in the call."""
        out = [r["text"] for r in requests]
        todo = [i for i, r in enumerate(requests) if r.get("slot_phrases") or "clean_text" in r]
        items = [{"clean_text": requests[i].get("clean_text", requests[i]["text"]),
                  "planned": list(requests[i].get("slots") or []),
                  "slot_phrases": dict(requests[i].get("slot_phrases") or {}),
                  "mentioned_ids": list(requests[i].get("mentioned_ids") or []),
                  "fallback": requests[i]["text"], "noise": requests[i].get("noise"),
                  "key": request_key(requests[i]), "kind": requests[i].get("kind"),
                  "env_id": requests[i].get("env_id")} for i in todo]
        for i, (text, _) in zip(todo, self.phraser.rephrase_batch(items)):
            out[i] = text
        return out

    def stats(self) -> dict:
        """The phrasing counters plus ``fallback_rate``, this backend's reported metric."""
        return dict(self.phraser.stats, fallback_rate=self.phraser.fallback_rate())
