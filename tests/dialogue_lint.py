"""A lint for the dialogue the environments write (shared by tests/test_dialogue_lint.py and
benchmarks/shopper_fidelity.py).

`lint(text)` returns the rule names a message breaks (one entry per occurrence):

- ``double_greeting``: a greeting ("Hi", "Hello", "Hey") after the start of a message,
  e.g. a journey transition glued onto the next request's greeting;
- ``top_1_picks``: "top 1 picks" / "top 1 alternatives" (a count of one with a plural);
- ``article``: "a"/"an" disagreeing with the next word's sound, as `inflect` decides
  (words starting with a digit are skipped: inflect says "a 8", English says "an 8");
- ``category_number``: a category noun that only exists in the plural written as a
  singular ("men's jean", "coffee bean", "safety glass"), in lower case as the shopper
  writes category nouns (title-case catalog values such as a "Chocolate Chip Cookie Dough"
  flavor are not category nouns);
- ``raw_attribute_suffix``: a product title quoted with its raw attribute suffix
  ("... (color: Black)");
- ``stilted_attribute``: "in material Microfiber", "in color Black" (the attribute's column
  name used as a word).

Texts are linted clean (without typo noise): pass `Utterance.clean_text` for the shopper.
Catalog wording (quoted titles, product listing lines) is exempt from the wording rules
(`prose`); the raw-suffix rule reads the whole text.
"""

from __future__ import annotations

import re
from functools import lru_cache

import inflect

GREETINGS = ("hi", "hello", "hey")
_GREETING_LATE = re.compile(r"(?<=[.!?,:;])\s+(Hi|Hello|Hey)\b[!,.]?", re.IGNORECASE)
_TOP_ONE = re.compile(r"\btop 1 \w+s\b", re.IGNORECASE)
_ARTICLE = re.compile(r"(?<![\w'-])(a|an|A|An)\s+([A-Za-z][\w'-]*)")
_SUFFIX = re.compile(r"\((?:color|size|material|connector type|capacity|scent|flavor|wattage|screen size|"
                     r"age range)\s*:[^)]*\)", re.IGNORECASE)
_STILTED = re.compile(r"\bin (?:material|color|colour|connector type|capacity|scent|flavor|wattage|"
                      r"screen size|age range) [A-Z0-9]")
_QUOTED = re.compile(r'"[^"\n]*"')
_LISTING = re.compile(r"^\s*\d+\. .*\(p\d+\)\s*$")
# category nouns that only exist in the plural (or are sold as a mass): their inflect singular is wrong
PLURAL_ONLY_CATEGORIES = (
    "Men's Jeans", "Coffee Beans", "Over-Ear Headphones", "Safety Glasses", "Athletic Shorts",
    "Women's Leggings", "Chocolate Chips", "Potato Chips", "Mixed Nuts", "Sprinkles", "Baby Wipes",
    "Sticky Notes", "Work Gloves",
)


@lru_cache(maxsize=1)
def _engine() -> inflect.engine:
    return inflect.engine()


@lru_cache(maxsize=1)
def _wrong_singulars() -> re.Pattern:
    p = _engine()
    forms = []
    for name in PLURAL_ONLY_CATEGORIES:
        words = name.lower().split()
        single = p.singular_noun(words[-1])
        if single:
            forms.append(" ".join(words[:-1] + [single]))
    # lower case only: the shopper says category nouns in lower case, while catalog values
    # ("Chocolate Chip Cookie Dough" flavor) are title case
    return re.compile(r"\b(?:" + "|".join(re.escape(f) for f in forms) + r")\b(?!s)")


def article_errors(text: str) -> list[str]:
    """The "a X"/"an X" pairs of `text` whose article inflect would not use."""
    p = _engine()
    bad = []
    for m in _ARTICLE.finditer(text):
        art, word = m.group(1).lower(), m.group(2)
        if word.lower() in ("few", "lot", "little", "bit", "couple", "pair"):  # idioms: "a few", "a lot"
            continue
        want = p.a(word).split()[0].lower()
        if want != art:
            bad.append(m.group(0))
    return bad


def prose(text: str) -> str:
    """`text` without what it quotes from the catalog: quoted titles and listing lines
    ("1. Acme Chocolate Chip Cookies (p0000001)"), whose wording is the catalog's."""
    text = _QUOTED.sub('""', text)
    return "\n".join(line for line in text.split("\n") if not _LISTING.match(line))


def lint(text: str) -> list[str]:
    """Rule names `text` breaks, one per occurrence (see module docstring)."""
    words = prose(text)
    out = ["double_greeting"] * len(_GREETING_LATE.findall(words))
    out += ["top_1_picks"] * len(_TOP_ONE.findall(words))
    out += ["article"] * len(article_errors(words))
    out += ["category_number"] * len(_wrong_singulars().findall(words))
    out += ["raw_attribute_suffix"] * len(_SUFFIX.findall(text))
    out += ["stilted_attribute"] * len(_STILTED.findall(text))
    return out


RULES = ("double_greeting", "top_1_picks", "article", "category_number", "raw_attribute_suffix", "stilted_attribute")


def episode_texts(env) -> list[tuple[str, str]]:
    """(role, clean text) of every message of a finished episode: the shopper's clean
    utterances and the agent's messages."""
    out = [("user", u.clean_text) for u in env.utterances]
    out += [("assistant", m["content"]) for m in env.messages if m["role"] == "assistant" and m.get("content")]
    return out
