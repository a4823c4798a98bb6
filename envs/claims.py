"""Checkable factual claims in the agent's text: prices, stock and order status.

`sentence_verdicts(text, world, known_ids)` splits the agent's message into sentences and
returns, for each, the verdicts of the claims it makes: True (a true claim), False (a false
one), or none at all (the sentence is not scored). The rule is "parse it right or leave it
alone": a sentence is scored only when its reading is unambiguous, so no true statement is
ever counted false and no false one true.

What is read:

- **Subject**: exactly one id (a token equal to an id the agent was shown, or to any product
  or order id of the world). Sentences naming two or more distinct ids are not scored.
- **Stock** (product subject): "in stock" / "out of stock" / "sold out", optionally negated
  right before the phrase ("is not in stock", "isn't currently in stock", "is no longer in
  stock", "is not sold out"), about now. Both polarities in one sentence, a count ("0 units
  in stock", "2 left") or the past ("was in stock yesterday"): not scored.
- **Price** (product subject): one well-formed dollar amount ($12, $1,299.99; at most
  $9,999,999.99) with its relation: equality ("costs $X", "is $X", "at $X", "for $X",
  "($X)"), "under / below / less than / cheaper than", "at most / no more than / up to",
  "over / above / more than", "at least / no less than", a trailing "or less / or more /
  and up / max / min", or a range "between $A and $B" (inclusive). The truth is the product's
  catalog price and its variants' prices: equality holds when any of them matches; a
  comparison is scored only when all of them agree. Any other number of prices, a malformed
  amount (110 comma groups, 4,301 digits), an unknown relation or a price word that is not
  the product's price (shipping, budget, total, discount, refund, ...) leaves it unscored.
- **Order status** (order subject): one status phrase ("shipped", "in transit" / "on its
  way", "delivered" / "arrived", "cancelled", "returned"), optionally negated ("has not
  been delivered yet", "hasn't shipped"). Each phrase is true for some statuses, false for
  others and unscored for the rest (an order that was returned was also delivered, so
  "delivered" about it is not scored). "placed" is never scored (every order was placed).
- **Never scored**: questions; conditional or indirect sentences (if, when, unless, want,
  need, asked, think, ...); a claim whose own clause is a forecast or a hedge (will, should,
  may, might, probably, expected, estimated, ...: in "order W has shipped and should arrive
  Friday" the status is scored, in "order W should be delivered Friday" it is not); and any
  negation other than the ones above ("X is not under $50" is left alone).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from .world import World

_SENTENCE = re.compile(r"[^.!?;\n]+(?:\.[0-9]+[^.!?;\n]*)*[.!?;]?")
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*[A-Za-z0-9]|[A-Za-z0-9]")
_WORD = re.compile(r"[a-z']+")
_MONEY = re.compile(r"\$\s?([0-9][0-9,]*(?:\.[0-9]+)?)")
_WELL_FORMED = re.compile(r"(?:[0-9]{1,3}(?:,[0-9]{3}){1,2}|[0-9]{1,7})(?:\.[0-9]{1,2})?")

_ADVERB = r"(?:(?:currently|presently|actually|really|yet|been|already|even|ever)\s+){0,3}"
_NEG = rf"(?P<neg>\b(?:not|never|no longer)\s+{_ADVERB}|n't\s+{_ADVERB})?"
_STOCK = re.compile(_NEG + r"(?P<phrase>out of stock|out-of-stock|sold out|in stock|in-stock)\b")
_STATUS = re.compile(_NEG + r"(?P<phrase>shipped|in transit|on its way|on the way|en route|delivered|arrived|"
                            r"cancelled|canceled|returned)\b")
_STOCK_IN = {"in stock": True, "in-stock": True, "out of stock": False, "out-of-stock": False, "sold out": False}
_STATUS_CLASS = {
    "shipped": "shipped", "in transit": "in_transit", "on its way": "in_transit", "on the way": "in_transit",
    "en route": "in_transit", "delivered": "delivered", "arrived": "delivered", "cancelled": "cancelled",
    "canceled": "cancelled", "returned": "returned",
}
# status class -> (statuses for which the plain claim is true, statuses for which it is false)
_STATUS_TRUTH: dict[str, tuple[frozenset, frozenset]] = {
    "shipped": (frozenset({"shipped", "in_transit", "delivered"}), frozenset({"placed", "cancelled"})),
    "in_transit": (frozenset({"shipped", "in_transit"}), frozenset({"placed", "delivered", "cancelled", "returned"})),
    "delivered": (frozenset({"delivered"}), frozenset({"placed", "shipped", "in_transit", "cancelled"})),
    "cancelled": (frozenset({"cancelled"}), frozenset({"placed", "shipped", "in_transit", "delivered", "returned"})),
    "returned": (frozenset({"returned"}), frozenset({"placed", "shipped", "in_transit", "delivered", "cancelled"})),
}
_CONDITIONS = frozenset(  # anywhere in the sentence: it is not a plain statement
    "if unless whether when once until want wants wanted need needs looking look ask asked please check checking "
    "let hope hopefully think believe guess".split()
)
_MODALS = frozenset(  # in the clause of a claim: that claim is a forecast or a hedge
    "will would should could might may can cannot won't wouldn't shouldn't couldn't can't i'll we'll it'll "
    "expected expect expects estimated estimate scheduled soon probably maybe likely perhaps possibly seems seem "
    "usually normally typically be".split()  # "be": "to be returned", "can be shipped" are not the status now
)
_PAST = frozenset("was were earlier yesterday before previously had used ago".split())  # stock clauses only
_CLAUSE = re.compile(r",|\b(?:and|but|while|so|although|though|whereas)\b")
_NEGATIONS = frozenset("not no never none nothing neither nor without cannot zero".split())
_COUNTED_STOCK = re.compile(  # "0 units in stock", "only a few in stock", "2 left": counts, not yes/no
    r"(?:(?<![$0-9.,])\b[0-9]+(?:,[0-9]{3})*|\b(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|few|"
    r"several|some|many|only|just))"
    r"\s+(?:[\w-]+\s+){0,2}in[ -]stock|\bleft\b|\bunits?\b")
_NOT_ITS_PRICE = frozenset(
    "shipping delivery fee fees tax taxes total subtotal budget save saving savings discount discounted off refund "
    "refunded credit coupon gift restocking monthly month per was were originally msrp list used sale deal "
    "difference compared cheaper expensive pricier plus".split()
)
_BEFORE = [  # relation phrases right before the "$", longest first
    ("between", "between"),
    ("no more than", "le"), ("not more than", "le"), ("at most", "le"), ("up to", "le"), ("max", "le"),
    ("no less than", "ge"), ("not less than", "ge"), ("at least", "ge"), ("min", "ge"),
    ("less than", "lt"), ("cheaper than", "lt"), ("under", "lt"), ("below", "lt"),
    ("more expensive than", "gt"), ("pricier than", "gt"), ("more than", "gt"), ("over", "gt"), ("above", "gt"),
    ("priced at", "eq"), ("sells for", "eq"), ("retails for", "eq"), ("goes for", "eq"), ("costs", "eq"),
    ("cost", "eq"), ("is", "eq"), ("are", "eq"), ("at", "eq"), ("for", "eq"), ("(", "eq"), (":", "eq"),
    ("only", "eq"), ("just", "eq"), ("now", "eq"),
]
_AFTER = [("or less", "le"), ("or under", "le"), ("or below", "le"), ("or cheaper", "le"), ("max", "le"),
          ("or more", "ge"), ("or above", "ge"), ("or over", "ge"), ("and up", "ge"), ("and above", "ge"),
          ("min", "ge")]
_COMPARE = {
    "eq": lambda p, x: p == x, "lt": lambda p, x: p < x, "le": lambda p, x: p <= x,
    "gt": lambda p, x: p > x, "ge": lambda p, x: p >= x,
}


def sentences(text: str) -> list[str]:
    """The sentences of `text` (split at . ! ? ; and newlines; decimals such as $12.50 kept)."""
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def _cents(amount: str) -> int | None:
    amount = amount.rstrip(",")
    if not _WELL_FORMED.fullmatch(amount):
        return None
    return int(Decimal(amount.replace(",", "")) * 100)


def _ids_in(sentence: str, world: "World", known_ids: Iterable[str] | set[str]) -> set[str]:
    known = known_ids if isinstance(known_ids, (set, frozenset, dict)) else set(known_ids)
    out = set()
    for tok in _TOKEN.findall(sentence):
        if tok in known or world.row(tok) is not None or world.order(tok) is not None:
            out.add(tok)
    return out


def _relation(low: str, start: int, end: int) -> tuple[str | None, tuple[int, int]]:
    """The relation of the amount at low[start:end] (start at the "$") from the words right
    before and right after it, and the span of the relation phrases and the amount."""
    before = low[:start].rstrip()
    after = low[end:]
    a, b = start, end
    rel = None
    for phrase, r in _BEFORE:
        cut = len(before) - len(phrase)
        if before.endswith(phrase) and (cut == 0 or not phrase[0].isalnum() or not before[cut - 1].isalnum()):
            rel, a = r, cut
            break
    stripped = after.lstrip()
    for phrase, r in _AFTER:
        if stripped.startswith(phrase) and (len(stripped) == len(phrase) or not stripped[len(phrase)].isalnum()):
            b = end + (len(after) - len(stripped)) + len(phrase)
            return (r if rel in (None, "eq") else None), (a, b)
    return rel, (a, b)


def _strip(low: str, spans: list[tuple[int, int]]) -> str:
    for a, b in sorted(spans, reverse=True):
        low = low[:a] + " " + low[b:]
    return low


def _price_verdicts(low: str, truths: set[int]) -> tuple[list[bool], list[tuple[int, int]]] | None:
    """Verdicts of the price claim in `low` (a lower-cased sentence) against the product's
    possible prices in cents, with the spans the claim covers; None when the sentence has a
    price it cannot read (malformed, an unknown relation, several prices, a mixed verdict)."""
    found = list(_MONEY.finditer(low))
    if not found:
        return [], []
    cents = [_cents(m.group(1)) for m in found]
    if any(c is None for c in cents):
        return None
    related = [_relation(low, m.start(), m.end()) for m in found]
    rels = [r for r, _ in related]
    spans = [span for _, span in related]
    if len(found) == 2 and rels[0] == "between" and low[found[0].end():found[1].start()].strip() == "and":
        lo, hi = sorted(cents)
        votes = {lo <= t <= hi for t in truths}
        return ([votes.pop()], [(spans[0][0], spans[1][1])]) if len(votes) == 1 else None
    if len(found) != 1 or rels[0] in (None, "between"):
        return None
    x, rel = cents[0], rels[0]
    if rel == "eq":
        return [x in truths], spans
    votes = {_COMPARE[rel](t, x) for t in truths}
    return ([votes.pop()], spans) if len(votes) == 1 else None


def _clause(low: str, at: int) -> str:
    """The clause of `low` (split at commas and conjunctions) that holds position `at`."""
    cuts = [0] + [m.start() for m in _CLAUSE.finditer(low)] + [len(low)]
    i = max(k for k in range(len(cuts) - 1) if cuts[k] <= at)
    return low[cuts[i]:cuts[i + 1]]


def _phrases(pattern: re.Pattern, low: str) -> list[tuple[str, bool, tuple[int, int]]]:
    return [(m.group("phrase"), m.group("neg") is not None, m.span()) for m in pattern.finditer(low)]


def sentence_verdict(sentence: str, world: "World", known_ids, unsettled: frozenset[int] = frozenset()) -> list[bool]:
    """The verdicts of the claims one sentence makes ([] when it is not scored). Stock claims
    about `unsettled` rows (sold out by a world event the agent has not been shown yet) are
    not scored."""
    if sentence.rstrip().endswith("?"):
        return []
    low = " ".join(sentence.lower().replace("\u2019", "'").split())
    words = set(_WORD.findall(low))
    if words & _CONDITIONS:
        return []
    ids = _ids_in(sentence, world, known_ids)
    if len(ids) != 1:
        return []
    subject = ids.pop()
    row = world.row(subject)
    order = world.order(subject) if row is None else None
    if row is None and order is None:
        return []
    verdicts: list[bool] = []
    spans: list[tuple[int, int]] = []
    if row is not None:
        stock = _phrases(_STOCK, low)
        claims = {_STOCK_IN[p] != neg for p, neg, _ in stock}  # True: claims it is in stock
        if len(claims) > 1 or (stock and _COUNTED_STOCK.search(low)):  # "0 in stock" is a count, not a yes
            return []
        if stock and any(set(_WORD.findall(_clause(low, a))) & _PAST for _, _, (a, _) in stock):
            return []  # "X was in stock yesterday": stock changes mid-episode, the past is not checked
        if stock and row in unsettled:
            return []
        if claims:
            verdicts.append(claims.pop() == world.in_stock(row))
            spans += [s for _, _, s in stock]
        if "$" in low:
            truths = {round(float(world.catalog.numeric("price")[row]) * 100)}
            # variants an env installed (synthesized ones share the catalog price; not built here)
            truths |= {round(v.price * 100) for v in world.variants.get(subject, []) if v.price is not None}
            priced = _price_verdicts(low, truths)
            if priced is None:
                return []
            rest = set(_WORD.findall(_strip(low, priced[1])))
            if priced[0] and rest & _NOT_ITS_PRICE:
                return []
            verdicts += priced[0]
            spans += priced[1]  # "no more than $X": the relation is the claim, not a negation of it
    else:
        status = _phrases(_STATUS, low)
        classes = {(_STATUS_CLASS[p], neg) for p, neg, _ in status}
        if len(classes) > 1:
            return []
        if classes:
            cls, neg = classes.pop()
            yes, no = _STATUS_TRUTH[cls]
            if cls == "returned" and any(r.order_id == order.order_id for r in world.returns):
                return []
            if order.status in (no if neg else yes):
                verdicts.append(True)
            elif order.status in (yes if neg else no):
                verdicts.append(False)
            else:
                return []
            spans += [s for _, _, s in status]
    if not verdicts:
        return []
    if any(set(_WORD.findall(_clause(low, a))) & _MODALS for a, _ in spans):
        return []
    residual = _strip(low, spans)
    if set(_WORD.findall(residual)) & _NEGATIONS or "n't" in residual:
        return []
    return verdicts


def sentence_verdicts(text: str, world: "World", known_ids,
                      unsettled: frozenset[int] = frozenset()) -> list[tuple[str, list[bool]]]:
    """(sentence, verdicts) for every sentence of `text`; verdicts [] = not scored."""
    return [(s, sentence_verdict(s, world, known_ids, unsettled)) for s in sentences(text)]
