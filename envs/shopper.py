"""The template shopper: turns a hidden goal into messages, deterministically.

An environment describes its goal as `Slot`s (each a thing the shopper wants, with the
phrase it uses to say it, the hint it gives while the slot is still unsaid, and the words
that ask for it). The shopper discloses a chosen subset in its opening message and tracks
the rest as omitted: the tracked set equals exactly what the clean text leaves out, and an
omitted slot never reads as a stated default: the opening carries its hint ("in a
particular color", "a few of", "within a budget I have in mind"), so the agent can see that
a choice is still open and ask for it.

Questions cost what they ask. `answer()` reveals exactly the omitted slots a question names
(by one of the slot's words, matched at word starts), never all of them at once; only such an
answer makes the agent's turn shopper-caused (for r_eff). A question that names no omitted
slot gets a non-committal reply, annoys the shopper, and stays the agent's turn. Environment-specific reactions
(corrections, stock-out alternatives, confirmations) are written by each environment with
`say`. Typos come last, from their own random stream, and never touch tokens with digits
(ids, prices, sizes stay exact).

Every message is an `Utterance` that keeps its clean text and the slots it disclosed, so
an LLM backend can rephrase it and a check can verify the rephrasing.

How a message is worded is injected: a `Phraser` (``env.phraser``, set before ``reset``)
turns each `Utterance` into the text the shopper says, when the environment writes it; the
transcript, every later check and the agent see that text. `TEMPLATE_PHRASER` (the default)
says the template text unchanged, so a run without a phraser is byte-identical to one with it.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Mapping, Protocol

import inflect
import numpy as np

from .rng import EpisodeRandom

_WORD = re.compile(r"\S+")
_KEYBOARD_NEIGHBOURS = {
    "a": "qsz", "b": "vgn", "c": "xvd", "d": "sfe", "e": "wrd", "f": "dgr", "g": "fht", "h": "gjy",
    "i": "uok", "j": "hku", "k": "jli", "l": "kop", "m": "nj", "n": "bmh", "o": "ipl", "p": "ol",
    "q": "wa", "r": "etf", "s": "adw", "t": "ryg", "u": "yij", "v": "cbf", "w": "qes", "x": "zcs",
    "y": "tuh", "z": "xa",
}
SLANG = {"you": "u", "please": "pls", "thanks": "thx", "because": "cuz", "are": "r", "okay": "ok"}


@dataclass(frozen=True)
class Slot:
    """One thing the shopper wants. `phrase` appears verbatim in a request that discloses
    the slot; `reply` is the answer to a question about it; `keywords` are the words of an
    agent question that ask for it; `hint` is what a request says in its place while the
    slot is omitted (it contains one of `keywords`; empty for slots that are always said)."""

    name: str
    phrase: str
    reply: str
    keywords: tuple[str, ...]
    hint: str = ""


def merge_utterances(parts: list[Utterance]) -> Utterance:
    """Several shopper replies of one turn as one message (texts joined, slots and ids kept)."""
    if len(parts) == 1:
        return parts[0]
    return Utterance(
        text=" ".join(p.text for p in parts),
        clean_text=" ".join(p.clean_text for p in parts),
        kind="+".join(p.kind for p in parts),
        slots=tuple(s for p in parts for s in p.slots),
        mentioned_ids=tuple(i for p in parts for i in p.mentioned_ids),
    )


def names_slot(question: str, slot: Slot) -> bool:
    """Whether `question` (lower case) names `slot`: one of its keywords at a word start."""
    return any(re.search(r"(?<![a-z0-9])" + re.escape(k), question) for k in slot.keywords if k)


@dataclass(frozen=True)
class Utterance:
    text: str
    clean_text: str
    kind: str
    slots: tuple[str, ...] = ()
    mentioned_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class PhraseContext:
    """What a phraser may use besides the utterance: the episode's identity, the agent turns
    completed before the message (0 for the opening), the shopper's typo rate and the slots it
    knows (name -> `Slot`, for checking that a rephrasing keeps every disclosed value)."""

    env_id: str
    seed: int
    difficulty: int
    turn: int
    noise: float
    slots: Mapping[str, Slot]


class Phraser(Protocol):
    """Words a shopper message: ``phrase(utterance, context) -> text``. Called synchronously
    by the environment, once per message, before the message joins the transcript."""

    def phrase(self, utterance: Utterance, context: PhraseContext) -> str:
        ...


class TemplatePhraser:
    """The template wording: the utterance's own text (typos included)."""

    def phrase(self, utterance: Utterance, context: PhraseContext) -> str:
        return utterance.text


TEMPLATE_PHRASER = TemplatePhraser()


def add_typos(text: str, p: float, rng: np.random.Generator, protect: Iterable[str] = ()) -> str:
    """Per-letter typos (swap, drop, double, neighbour key) at rate `p` and occasional slang
    (rate ``min(1, 4p)`` on a word that has a slang form); words containing digits or
    id-like tokens (``_ - $``) are left untouched, and so are words overlapping an
    occurrence (case-insensitive) of a `protect` phrase (whole words, so a protected span
    never leaves a half-noised token).

    The coins are drawn in one call, three per character of `text` (typo or not, which typo,
    slang or not at a word's first character), so the noise of a word depends only on its
    position and `rng`: protecting a word leaves every other word's noise as it was."""
    if p <= 0 or not text:
        return text
    coins = rng.random((3, len(text)))
    typo_at = np.flatnonzero(coins[0] < p).tolist()
    kind, slang = coins[1], coins[2]
    p_slang = min(1.0, 4 * p)
    spans = [m.span() for ph in protect if ph and ph.strip()
             for m in re.finditer(re.escape(ph), text, re.IGNORECASE)]
    pieces: list[str] = []
    last = h = 0
    for m in _WORD.finditer(text):
        start, end = m.span()
        while h < len(typo_at) and typo_at[h] < start:
            h += 1
        word = m.group(0)
        bare = word.lower().strip(".,!?")
        slangy = bare in SLANG
        if not slangy and (h == len(typo_at) or typo_at[h] >= end):
            continue  # no coin landed on this word
        if _KEEP_WORD.search(word) or any(start < e and s < end for s, e in spans):
            continue
        if slangy and slang[start] < p_slang:
            new = word.lower().replace(bare, SLANG[bare])
        else:
            new = _typo_word(word, start, typo_at, h, kind)
        pieces += [text[last:start], new]
        last = end
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


_KEEP_WORD = re.compile(r"[0-9_$-]")  # digits or id-like tokens: never noised


def _typo_word(word: str, start: int, typo_at: list[int], h: int, kind: np.ndarray) -> str:
    """`word` (at offset `start` of the text) with the typos of the positions in `typo_at`
    from index `h` on that fall inside it; `kind[pos]` picks the typo (a quarter each: swap
    with the next letter, drop, double, a neighbouring key) and, for a neighbouring key,
    which one."""
    chars = word
    out: list[str] = []
    i, n = 0, len(chars)
    hits = set()
    while h < len(typo_at) and typo_at[h] < start + n:
        hits.add(typo_at[h] - start)
        h += 1
    while i < n:
        ch = chars[i]
        if i in hits and ch.isalpha():
            k = float(kind[start + i]) * 4
            op = int(k)
            if op == 0 and i + 1 < n and chars[i + 1].isalpha():
                out += [chars[i + 1], ch]
                i += 2
                continue
            if op == 1:
                i += 1
                continue
            if op == 2:
                out += [ch, ch]
                i += 1
                continue
            near = _KEYBOARD_NEIGHBOURS.get(ch.lower())
            if near:
                out.append(near[int((k - op) * len(near))])
                i += 1
                continue
        out.append(ch)
        i += 1
    return "".join(out) or word


def fill(template: str, **values: str) -> str:
    """Format `template`, every placeholder must be given. Values are inserted verbatim
    (a catalog title may itself contain braces)."""
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    missing = sorted(fields - set(values))
    if missing:
        raise ValueError(f"template {template!r} needs {', '.join(missing)}")
    return template.format(**values)


def join_phrases(phrases: list[str]) -> str:
    if not phrases:
        return ""
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


@dataclass
class TemplateShopper:
    """Message writer and slot tracker for one episode."""

    rand: EpisodeRandom
    p_noise: float
    slots: dict[str, Slot] = field(default_factory=dict)
    omitted: list[str] = field(default_factory=list)  # in disclosure order
    patience: int = 3
    annoyance: int = 0
    caused_turns: set[int] = field(default_factory=set)
    quit: bool = False
    question_excused: bool = False  # a question's answer has already excused one turn

    # ---- composing
    def choose(self, options: list[str] | tuple[str, ...]) -> str:
        return options[int(self.rand("shopper").integers(len(options)))]

    def say(self, clean: str, kind: str, slots: tuple[str, ...] = (), ids: tuple[str, ...] = ()) -> Utterance:
        text = add_typos(clean, self.p_noise, self.rand("noise"))
        return Utterance(text=text, clean_text=clean, kind=kind, slots=slots, mentioned_ids=ids)

    def plan_disclosure(self, slots: list[Slot], p_missing: float, keep: int = 1) -> list[Slot]:
        """Register `slots` and choose which to disclose: each is omitted with probability
        `p_missing`, but the first `keep` are always disclosed. Returns the disclosed ones."""
        rng = self.rand("omission")
        disclosed = []
        for i, slot in enumerate(slots):
            self.slots[slot.name] = slot
            if i >= keep and rng.random() < p_missing:
                self.omitted.append(slot.name)
            else:
                disclosed.append(slot)
        return disclosed

    def reveal(self, name: str) -> bool:
        """Mark slot `name` as said out loud; True when it had been omitted until now."""
        if name in self.omitted:
            self.omitted.remove(name)
            return True
        return False

    def restate(self, slot: Slot) -> None:
        """Register a changed slot the shopper has just said out loud (no longer omitted)."""
        self.slots[slot.name] = slot
        self.reveal(slot.name)

    def revealed(self, name: str) -> bool:
        return name in self.slots and name not in self.omitted

    def spoken(self, name: str) -> str:
        """How a request says slot `name` now: its phrase once revealed, its hint while omitted."""
        slot = self.slots[name]
        return slot.phrase if self.revealed(name) else slot.hint

    # ---- answering questions
    def answer(self, question: str, turn: int) -> Utterance:
        """Answer an `ask_user` question. The omitted slots the question names
        (`names_slot`) are revealed with their true values, and the first such answer makes
        the turn shopper-caused: one question could have named every open slot, so asking
        them one turn at a time excuses no further turn. A question that names none gets a
        non-committal reply and stays the agent's turn."""
        q = question.lower()
        asked = [n for n in self.omitted if names_slot(q, self.slots[n])]
        if asked:
            for n in asked:
                self.omitted.remove(n)
            if not self.question_excused:
                self.question_excused = True
                self.caused_turns.add(turn)
            clean = " ".join(self.slots[n].reply for n in asked)
            return self.say(clean, "answer", tuple(asked))
        known = [n for n, s in self.slots.items() if n not in self.omitted and names_slot(q, s)]
        self.annoyance += 1
        if known:
            clean = "As I said, " + " ".join(self.slots[n].reply for n in known)
            return self.say(clean, "repeat", tuple(known))
        if self.omitted:  # a question about nothing in particular: no free answers
            return self.say(self.choose(NOT_SPECIFIC), "not_specific")
        return self.say(self.choose(NO_PREFERENCE), "no_preference")

    def nudge(self) -> Utterance:
        """The reply to a message the shopper has nothing to react to."""
        self.annoyance += 1
        return self.say(self.choose(NUDGES), "nudge")

    def out_of_patience(self) -> bool:
        return self.annoyance > self.patience


NO_PREFERENCE = (
    "I don't have a preference about that.",
    "No preference there, whatever works.",
    "That doesn't matter to me.",
)
NOT_SPECIFIC = (
    "Hmm, what exactly would you like to know?",
    "Sorry, what do you mean? Ask me about something specific.",
)
NUDGES = (
    "Okay. Can you go ahead, please?",
    "Sure, please go ahead.",
    "Alright, what do you suggest?",
)
QUIT = (
    "I don't think this is going anywhere. I'll shop somewhere else, thanks.",
    "Never mind, I'll figure it out myself.",
)


# Category nouns whose one item is still said in the plural (pairs, packs, mass plurals):
# "the Levi's men's jeans", "the Lavazza coffee beans", "the Sony over-ear headphones".
PLURAL_ONLY_NOUNS = frozenset({
    "jeans", "pants", "trousers", "shorts", "leggings", "glasses", "sunglasses", "goggles", "scissors", "pliers",
    "tongs", "binoculars", "headphones", "earbuds", "shoes", "boots", "sneakers", "sandals", "gloves", "mittens",
    "beans", "chips", "nuts", "sprinkles", "wipes", "notes", "tiles", "oats", "noodles", "supplies",
})


@lru_cache(maxsize=1)
def _inflect() -> inflect.engine:
    return inflect.engine()


@lru_cache(maxsize=8192)
def _inflected(method: str, word: str | int):
    """`inflect.engine().<method>(word)`, memoised: a pure function of the word (the engine's
    settings are never changed), and each type-checked inflect call costs tens of us."""
    return getattr(_inflect(), method)(word)


def _word_case(word: str) -> str:
    """Lower case, except acronyms ("USB", "SSDs", "USB-C" keep their capitals; "Over-Ear"
    and "T-Shirts" do not)."""
    acronym = any(sum(ch.isupper() for ch in part) >= 2 for part in word.split("-"))
    return word if acronym else word.lower()


@lru_cache(maxsize=4096)
def singular(noun: str) -> str:
    """How the shopper names ONE item of a category: 'USB-C Chargers' -> 'USB-C charger',
    'Computer Mice' -> 'computer mouse', 'Portable SSDs' -> 'portable SSD'. Nouns only said
    in the plural or as a mass stay as they are ("men's jeans", "coffee beans", "flour").
    Lower case except acronyms; the singular comes from `inflect`."""
    words = [_word_case(w) for w in noun.split()]
    if words and words[-1].lower() not in PLURAL_ONLY_NOUNS:
        one = _inflected("singular_noun", words[-1])
        if one:
            words[-1] = one
    return " ".join(words)


def brand_item(brand: str, leaf: str) -> str:
    """'the Anker USB-C charger' ("The North Face" keeps its own article)."""
    lead = "" if brand.lower().startswith("the ") else "the "
    return f"{lead}{brand} {singular(leaf)}"


def plural(noun: str) -> str:
    """How the shopper names a category in general: 'Men's Jeans' -> "men's jeans",
    'USB Hubs' -> 'USB hubs' (the category name, lower case except acronyms)."""
    return " ".join(_word_case(w) for w in noun.split())


def is_plural(phrase: str) -> bool:
    """Whether an item named by `singular` ("the Levi's men's jeans") takes a plural verb."""
    words = phrase.split()
    return bool(words) and words[-1].lower().strip(".,!?") in PLURAL_ONLY_NOUNS


def article(phrase: str) -> str:
    """'a' or 'an' for `phrase`, from `inflect`; numbers by how they are said ('an 8 inch ...')."""
    head = phrase.strip().split()[0] if phrase.strip() else ""
    digits = re.match(r"\d+", head)
    if digits:
        head = _inflected("number_to_words", int(digits.group(0)))
    return _inflected("a", head).split()[0] if head else "a"


def with_article(phrase: str) -> str:
    """'Unscented scent' -> 'an Unscented scent'."""
    return f"{article(phrase)} {phrase}"


def count_noun(n: int, noun: str) -> str:
    """'1 day', '3 days' (`noun` given in the singular; plural from `inflect`)."""
    return f"{n} {noun if n == 1 else _inflected('plural_noun', noun)}"


def top_k(k: int, noun: str = "pick") -> str:
    """'top pick' for one, else 'top 3 picks'."""
    return f"top {noun}" if k == 1 else f"top {k} {_inflected('plural_noun', noun)}"


def plural_phrase(phrase: str) -> str:
    """'the Coleman tent' -> 'the Coleman tents' (the last word, by `inflect`; nouns only
    said in the plural stay)."""
    words = phrase.split()
    if words and words[-1].lower() not in PLURAL_ONLY_NOUNS:
        words[-1] = _inflected("plural_noun", words[-1])
    return " ".join(words)


def count_of(n: int, phrase: str) -> str:
    """'the Coleman tent' x 3 -> 'three of the Coleman tents'; x 1 -> 'one of the Coleman tent'
    is never said: one is the phrase itself."""
    return phrase if n == 1 else f"{number_word(n)} of {plural_phrase(phrase)}"


def number_word(n: int) -> str:
    """'one', 'two', ... (inflect)."""
    return _inflected("number_to_words", n)
