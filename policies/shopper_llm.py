"""LLM phrasing for the shopper, verified, with a template fallback.

The template shopper decides *what* is said (`envs.shopper.Utterance`: clean text, the
slots it discloses, the ids it mentions). An LLM may rephrase it, at temperature 0, as long
as a check proves nothing the verifiers depend on changed:

1. every planned slot's value (its ``Slot.phrase``) still appears verbatim
   (case-insensitive);
2. no other known slot's value appears unless the template text already had it (no leaking
   of omitted slots);
3. no id-like token (any token containing a digit: product / order / line ids, prices,
   quantities, dates) appears that the template text, the slot phrases or the mentioned ids
   did not contain: the LLM invents nothing checkable.

Otherwise the template text is used and the fallback is counted (`ShopperPhraser.stats`).

    phraser = ShopperPhraser(engine, tokenizer)      # HFEngine/VLLMEngine + tokenizer, or OpenAIEngine
    text, used_llm = phraser.phrase(utterance, shopper.slots)
    text, used_llm = phrase(utterance, slots)        # module default (configure() first)

For the Serve deployment (`actors.shopper_service`): `LLMShopperBackend` implements its
``phrase(request) -> str`` backend protocol. The request carries ``text`` and, for the
check, ``clean_text``, ``slots`` (disclosed names), ``slot_phrases`` ({name: phrase} of all
known slots) and ``mentioned_ids``; without them the template text is returned unchanged.
Typo noise is not re-applied to a rephrasing (the env applies typos to template text only).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

__all__ = ["check_rephrase", "id_like_tokens", "ShopperPhraser", "LLMShopperBackend", "phrase", "configure",
           "SYSTEM_PROMPT"]

SYSTEM_PROMPT = (
    "You rewrite a shopper's chat message to an online store assistant so it sounds natural and varied. "
    "Keep the same meaning and the same first-person voice. Copy every quoted phrase exactly as written. "
    "Do not add products, ids, numbers, prices or new wishes. Reply with the rewritten message only."
)
_TOKEN = re.compile(r"[A-Za-z0-9$][A-Za-z0-9_\-./,$:]*")


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


def check_rephrase(text: str, clean_text: str, planned: Sequence[str], slot_phrases: Mapping[str, Any],
                   mentioned_ids: Sequence[str] = ()) -> tuple[bool, str]:
    """(ok, reason) for a rephrasing `text` of `clean_text` (see module docstring)."""
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
    return True, "ok"


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
    stats: dict = field(default_factory=lambda: {"calls": 0, "llm": 0, "fallback": 0, "reasons": {}})

    def __post_init__(self):
        self._lock = threading.Lock()

    def _prompt_messages(self, clean: str, keep: Sequence[str]) -> list[dict]:
        quoted = "; ".join(f'"{k}"' for k in keep) or "(none)"
        return [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": f"Phrases to copy exactly: {quoted}\nMessage: {clean}"}]

    def _generate(self, messages: list[dict]) -> str:
        if not getattr(self.engine, "token_level", True):
            return self.engine.chat([(messages, None)], temperature=0.0, max_new_tokens=self.max_new_tokens)[0].text
        if self.tokenizer is None:
            raise ValueError("a token-level engine needs the tokenizer")
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        out = self.engine.generate([ids], temperature=0.0, max_new_tokens=self.max_new_tokens, seed=0)[0]
        return self.tokenizer.decode(out.ids, skip_special_tokens=True)

    def rephrase(self, clean_text: str, planned: Sequence[str], slot_phrases: Mapping[str, Any],
                 mentioned_ids: Sequence[str] = (), fallback: str | None = None) -> tuple[str, bool]:
        fallback = clean_text if fallback is None else fallback
        keep = [_phrase_of(slot_phrases[n]) for n in planned if n in slot_phrases] + list(mentioned_ids)
        try:
            reply = _clean_reply(self._generate(self._prompt_messages(clean_text, keep)))
            ok, reason = check_rephrase(reply, clean_text, planned, slot_phrases, mentioned_ids)
        except Exception as exc:  # noqa: BLE001 - an engine failure falls back, never breaks the episode
            reply, ok, reason = "", False, f"engine error: {type(exc).__name__}"
        with self._lock:
            self.stats["calls"] += 1
            if ok:
                self.stats["llm"] += 1
            else:
                self.stats["fallback"] += 1
                key = reason.split(":")[0].split(" '")[0]
                self.stats["reasons"][key] = self.stats["reasons"].get(key, 0) + 1
        return (reply, True) if ok else (fallback, False)

    def phrase(self, utterance, slots: Mapping[str, Any]) -> tuple[str, bool]:
        """(text, used_llm) for an `envs.shopper.Utterance`; `slots` maps slot names to
        `Slot`s or phrases (e.g. ``env.shopper.slots``). The fallback is the utterance's
        own text (typos included)."""
        return self.rephrase(utterance.clean_text, list(utterance.slots), slots, list(utterance.mentioned_ids),
                             fallback=utterance.text)


_DEFAULT: ShopperPhraser | None = None


def configure(engine, tokenizer=None, **kwargs) -> ShopperPhraser:
    """Set the module default phraser used by `phrase`."""
    global _DEFAULT
    _DEFAULT = ShopperPhraser(engine, tokenizer, **kwargs)
    return _DEFAULT


def phrase(utterance, slots: Mapping[str, Any]) -> tuple[str, bool]:
    """Module-level entry point: the default phraser, or the template text when none is configured."""
    if _DEFAULT is None:
        return utterance.text, False
    return _DEFAULT.phrase(utterance, slots)


class LLMShopperBackend:
    """`actors.shopper_service` backend: ``register_backend("llm", LLMShopperBackend)``;
    options: ``model`` (default smollm2), ``device``, ``engine`` (hf), or ``base_url`` +
    ``model`` for an OpenAI-compatible server."""

    name = "llm"

    def __init__(self, model: str = "smollm2", device: str = "cpu", base_url: str | None = None,
                 max_new_tokens: int = 96, **_: Any):
        if base_url:
            from .engines import OpenAIEngine

            engine, tok = OpenAIEngine(base_url, model), None
        else:
            from .engines import HFEngine
            from .models import load_model

            m, tok = load_model(model, device=device)
            engine = HFEngine(m, tok, device=device)
        self.phraser = ShopperPhraser(engine, tok, max_new_tokens=max_new_tokens)

    def phrase(self, request: dict) -> str:
        text = request["text"]
        if not request.get("slot_phrases") and "clean_text" not in request:
            return text
        out, _ = self.phraser.rephrase(request.get("clean_text", text), list(request.get("slots") or []),
                                       dict(request.get("slot_phrases") or {}), list(request.get("mentioned_ids") or []),
                                       fallback=text)
        return out

    def stats(self) -> dict:
        return dict(self.phraser.stats)
