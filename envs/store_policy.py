"""The store policy knowledge base, generated per episode from its own random stream.

`generate_policy(rng)` returns the `StorePolicy` whose rules `policy_search` shows and whose
return windows the return tools enforce. Every parameter (windows, fees, thresholds,
percentages, rates, which leaves are final sale, the ORDER of every rule's cases and the
OUTCOME of every case) is drawn from `rng`, so memorising one store does not answer another,
and a question's wording and depth do not predict its answer (see "families" below).

Rule model. Every rule answers ONE question (`question`, e.g. "restocking_fee") within a
scope (`scope`, e.g. department = electronics) as an ordered decision list: numbered cases
`(1) condition: outcome`, `(2) ...`, then `Otherwise: outcome`; the first case whose
condition holds decides. A condition is a conjunction of atoms `(slot, op, value)` over the
shopper's situation (tier, condition, item price, days since delivery, region, ...); an
outcome is a constant, a percentage of a money slot, a slot's value or a rate per dollar.
The text is rendered from exactly that structure (`_render`, on first read), so it states every
clause and every number, and `evaluate(rule, ctx)` runs the same structure in exact integer arithmetic
(money in cents). Within one policy the (question, scope) pairs are unique: for a given
question context at most one rule applies.

Rules are made lazily. `RULE_SPECS` fixes what each of the 64 rules is before any draw (id,
family, question, answer kind, options, the most cases it can have); each rule draws from its
own row of uniforms, so `StorePolicy.rule_at(i)` builds rule i alone, the same rule whichever
rules were built before it. `sample_question` builds only the rules of the question types it
tries (usually one type, 1 to 9 rules); `policy_search` ranks all 64, building the rest.

`StorePolicy.return_windows`, `membership_bonus_days` and `non_returnable_l3` are set from
the same draws as the "return eligibility" rules (window per department; extra days per
tier, standard < Plus < Premium; final-sale leaves), so `return_window(line, tier) = window
+ bonus` is exactly what the rules say, whatever the item's condition. Each eligibility rule
is one of the many decision lists equivalent to "returnable iff not final sale and
delivered at most window + bonus(tier) days ago", drawn at random (`_eligibility_clauses`),
so its case k says "returnable" or "not returnable" about equally often.

`PolicyRule.data` keys: family, question, kind (the answer kind), scope ((slot, value), ...),
clauses (((atom, ...), outcome), ...), default (outcome), options (choice answers), plus
family parameters (window, standard_bonus, plus_bonus, premium_bonus, final_sale for return
eligibility;
warranty_months, premium_extra_months; annual_fee). Money is in integer cents everywhere.

`sample_question(policy, depth, rng)` builds a question context whose answer follows from
exactly the first `depth` cases of one rule (cases 1..depth-1 false, case `depth` true; the
default counts as case n+1), used by E_POLICY. It draws the target first: a question type
uniformly, then (yes/no and options) the answer uniformly and a rule whose case `depth` gives
it; over 1,000 seeds per difficulty no answer of any type is more frequent than chance + 10
points (tests/test_policy_balance.py).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .world import RETURN_METHODS, PolicyRule, StorePolicy

# --------------------------------------------------------------------------- vocabulary

DEPARTMENTS: tuple[str, ...] = (
    "electronics", "clothing", "home & kitchen", "beauty", "sports & outdoors", "office", "toys", "tools",
    "grocery",
)
DEPARTMENT_NAMES: dict[str, str] = {
    "electronics": "Electronics", "clothing": "Clothing", "home & kitchen": "Home & Kitchen", "beauty": "Beauty",
    "sports & outdoors": "Sports & Outdoors", "office": "Office", "toys": "Toys", "tools": "Tools",
    "grocery": "Grocery",
}
# Leaf categories (category_l3) per department, as in the synthetic catalog's taxonomy.
DEPARTMENT_LEAVES: dict[str, tuple[str, ...]] = {
    "electronics": (
        "Wall Chargers", "Charging Cables", "Power Banks", "Wireless Chargers", "Car Chargers", "Surge Protectors",
        "Laptops", "Monitors", "Keyboards", "Computer Mice", "Webcams", "USB Hubs", "Laptop Stands",
        "Monitor Stands", "External Hard Drives", "Portable SSDs", "USB Flash Drives", "Memory Cards",
        "Over-Ear Headphones", "Earbuds", "Headsets", "Bluetooth Speakers", "Fitness Trackers", "Smartwatches",
        "Baby Monitors", "Security Cameras", "Smart Plugs", "Smart Light Bulbs",
    ),
    "home & kitchen": (
        "Baking Sheets", "Cake Pans", "Muffin Pans", "Cooling Racks", "Pie Dishes", "Parchment Paper",
        "Mixing Bowls", "Measuring Cups", "Spatulas", "Rolling Pins", "Kitchen Scales", "Oven Mitts", "Aprons",
        "Stand Mixers", "Hand Mixers", "Blenders", "Coffee Makers", "Air Fryers", "Toasters", "Skillets",
        "Dutch Ovens", "Saucepans", "Cookware Sets", "Desks", "Standing Desks", "Bookshelves", "Desk Lamps",
        "Night Lights", "Floor Lamps", "Cribs", "Crib Mattresses", "Crib Sheets", "Changing Pads",
        "Changing Tables", "Nursery Gliders", "Swaddle Blankets", "Diaper Pails", "High Chairs", "Bed Sheets",
        "Bath Towels", "Humidifiers", "Candles",
    ),
    "clothing": (
        "Men's T-Shirts", "Men's Jeans", "Men's Hoodies", "Women's Leggings", "Women's Dresses",
        "Women's Sweaters", "Athletic Shorts", "Sports Bras", "Running Shoes", "Hiking Boots", "Sneakers",
        "Rain Jackets", "Fleece Jackets", "Diaper Bags", "Gym Bags", "Baby Bodysuits",
    ),
    "beauty": (
        "Face Moisturizers", "Body Lotions", "Sunscreens", "Shampoos", "Conditioners", "Hair Dryers",
        "Body Washes", "Deodorants", "Baby Lotions", "Diaper Creams", "Baby Wipes", "Lipsticks", "Mascaras",
        "Electric Toothbrushes",
    ),
    "sports & outdoors": (
        "Tents", "Sleeping Bags", "Sleeping Pads", "Camping Stoves", "Headlamps", "Camping Lanterns", "Coolers",
        "Hiking Backpacks", "Camp Chairs", "Hammocks", "Trekking Poles", "Water Bottles", "First Aid Kits",
        "Yoga Mats", "Dumbbells", "Kettlebells", "Resistance Bands", "Jump Ropes", "Foam Rollers", "Pull-Up Bars",
        "Ab Rollers", "Exercise Bikes", "Shaker Bottles",
    ),
    "office": (
        "Office Chairs", "Filing Cabinets", "Footrests", "Notebooks", "Pens", "Sticky Notes", "Desk Organizers",
        "Whiteboards", "Printers", "Acrylic Paint Sets", "Sketchbooks", "Canvases",
    ),
    "toys": (
        "Building Sets", "Magnetic Tiles", "Play Mats", "Crib Mobiles", "Teething Toys", "Stuffed Animals",
        "Board Games", "Jigsaw Puzzles", "Scooters", "Foam Blasters", "Dolls", "Toy Cars",
    ),
    "tools": (
        "Paint Brushes", "Paint Rollers", "Paint Trays", "Painter's Tape", "Drop Cloths", "Interior Paint",
        "Primers", "Putty Knives", "Sandpaper", "Spackle", "Caulk Guns", "Cordless Drills", "Circular Saws",
        "Orbital Sanders", "Multi-Tools", "Hammers", "Screwdriver Sets", "Tape Measures", "Safety Glasses",
        "Work Gloves", "Step Ladders",
    ),
    "grocery": (
        "Flour", "Chocolate Chips", "Vanilla Extract", "Sugar", "Sprinkles", "Cake Mix", "Snack Bars",
        "Mixed Nuts", "Potato Chips", "Trail Mix", "Coffee Beans", "Tea", "Electrolyte Drink Mix",
        "Protein Powder", "Protein Bars", "Baby Food Pouches", "Infant Formula", "Freeze-Dried Meals",
    ),
}
# Leaves that may be declared final sale (hygiene, perishables, consumables), per department,
# with the (min, max) number drawn per episode.
FINAL_SALE_POOL: dict[str, tuple[tuple[str, ...], int, int]] = {
    "electronics": (("Memory Cards", "USB Flash Drives", "Earbuds", "Smart Light Bulbs"), 0, 2),
    "clothing": (("Sports Bras", "Baby Bodysuits", "Women's Leggings"), 0, 2),
    "home & kitchen": (("Crib Mattresses", "Candles", "Parchment Paper", "Crib Sheets"), 0, 2),
    "beauty": (("Lipsticks", "Mascaras", "Deodorants", "Diaper Creams", "Baby Wipes", "Sunscreens"), 1, 3),
    "sports & outdoors": (("First Aid Kits", "Shaker Bottles", "Water Bottles", "Yoga Mats"), 0, 2),
    "office": (("Pens", "Sticky Notes", "Acrylic Paint Sets", "Notebooks"), 0, 2),
    "toys": (("Teething Toys", "Jigsaw Puzzles", "Play Mats"), 0, 2),
    "tools": (("Interior Paint", "Primers", "Spackle", "Sandpaper"), 0, 2),
    "grocery": (("Infant Formula", "Baby Food Pouches", "Protein Powder", "Coffee Beans", "Freeze-Dried Meals",
                 "Tea"), 2, 4),
}

TIERS: tuple[str, ...] = ("standard", "plus", "premium")
TIER_NAMES = {"standard": "Standard", "plus": "Plus", "premium": "Premium"}
CONDITIONS: tuple[str, ...] = ("unopened", "opened", "damaged")
REGIONS: tuple[str, ...] = ("contiguous us", "alaska & hawaii", "us territories", "canada")
REGION_NAMES = {"contiguous us": "the contiguous US", "alaska & hawaii": "Alaska and Hawaii",
                "us territories": "US territories", "canada": "Canada"}
SPEEDS: tuple[str, ...] = ("standard", "expedited", "overnight")
PAYMENTS: tuple[str, ...] = ("credit card", "debit card", "paypal", "gift card")
PAYMENT_NAMES = {"credit card": "credit card", "debit card": "debit card", "paypal": "PayPal", "gift card": "gift card"}
METHOD_NAMES = {"mail": "mail", "drop_off": "drop-off", "pickup": "pickup"}
YES_NO: tuple[str, ...] = ("yes", "no")
ISSUES: tuple[str, ...] = ("defect", "accidental damage")
COMPETITORS: tuple[str, ...] = ("major retailer", "online marketplace", "local store")
PLANS: tuple[str, ...] = ("monthly", "annual")

WARRANTY_OPTIONS: tuple[str, ...] = ("repair", "replacement", "refund", "not covered")
REFUND_OPTIONS: tuple[str, ...] = ("original payment method", "store credit")
GIFT_CARD_REFUND_OPTIONS: tuple[str, ...] = ("gift card", "store credit")

# Answer kinds: money (int cents), days / business_days / points (int), yesno ("yes" | "no"),
# choice (one of the rule's `options`).
# Families whose questions are about one item the shopper bought (named with its department).
ITEM_FAMILIES = frozenset({
    "return_eligibility", "restocking_fee", "warranty", "return_shipping", "refund_method", "refund_time",
    "price_protection", "price_match",
})


@dataclass(frozen=True)
class SlotSpec:
    """A context slot: categorical (`values`) or integer (money in whole dollars, days...).
    For integers: hard bounds [lo, hi], the typical range used when nothing bounds a side,
    and the spread kept above a lower bound."""

    kind: str  # "cat" | "int" | "money" | "item"
    values: tuple[str, ...] = ()
    lo: int = 0
    hi: int = 0
    typical_lo: int = 0
    typical_hi: int = 0
    spread: int = 0


SLOTS: dict[str, SlotSpec] = {
    "department": SlotSpec("cat", DEPARTMENTS),
    "item": SlotSpec("item"),
    "tier": SlotSpec("cat", TIERS),
    "condition": SlotSpec("cat", CONDITIONS),
    "region": SlotSpec("cat", REGIONS),
    "speed": SlotSpec("cat", SPEEDS),
    "payment": SlotSpec("cat", PAYMENTS),
    "return_method": SlotSpec("cat", RETURN_METHODS),
    "gift": SlotSpec("cat", YES_NO),
    "issue": SlotSpec("cat", ISSUES),
    "oversized": SlotSpec("cat", YES_NO),
    "clearance": SlotSpec("cat", YES_NO),
    "competitor": SlotSpec("cat", COMPETITORS),
    "plan": SlotSpec("cat", PLANS),
    "benefits_used": SlotSpec("cat", YES_NO),
    "item_price": SlotSpec("money", lo=5, hi=2000, typical_lo=10, typical_hi=300, spread=150),
    "order_total": SlotSpec("money", lo=5, hi=1000, typical_lo=10, typical_hi=200, spread=100),
    "price_drop": SlotSpec("money", lo=1, hi=500, typical_lo=2, typical_hi=80, spread=60),
    "price_gap": SlotSpec("money", lo=1, hi=500, typical_lo=2, typical_hi=80, spread=60),
    "days_delivered": SlotSpec("int", lo=1, hi=365, typical_lo=1, typical_hi=60, spread=40),
    "days_purchased": SlotSpec("int", lo=1, hi=365, typical_lo=1, typical_hi=45, spread=30),
    "months_owned": SlotSpec("int", lo=1, hi=72, typical_lo=1, typical_hi=36, spread=24),
    "days_member": SlotSpec("int", lo=1, hi=365, typical_lo=1, typical_hi=120, spread=60),
}
MONEY_SLOTS = frozenset(n for n, s in SLOTS.items() if s.kind == "money")

# --------------------------------------------------------------------------- formatting


def money(cents: int) -> str:
    """'$5.99', '$100', '$1,250', '$29.50'."""
    if cents % 100 == 0:
        return f"${cents // 100:,}"
    return f"${cents // 100:,}.{cents % 100:02d}"


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def _months(n: int) -> str:
    return f"{n} month" if n == 1 else f"{n} months"


def _leaf_phrase(leaf: str) -> str:
    return leaf.lower()


def _atom_text(atom: tuple) -> str:
    slot, op, v = atom
    if slot == "tier":
        return {"standard": "standard accounts (no paid membership)", "plus": "Plus members",
                "premium": "Premium members"}[v]
    if slot == "condition":
        return {"unopened": "unopened items", "opened": "opened items", "damaged": "items that arrived damaged"}[v]
    if slot == "item":
        if op == "nin":
            return "items not on final sale"
        return "final-sale items (" + ", ".join(_leaf_phrase(x) for x in v) + ")"
    if slot == "days_delivered":
        if op == "le":
            return f"items delivered at most {_days(v)} ago"
        return f"returns more than {_days(v)} after delivery"
    if slot == "item_price":
        return f"items priced at {money(v)} or more"
    if slot == "order_total":
        return f"orders of {money(v)} or more"
    if slot == "speed":
        return f"{v} shipping"
    if slot == "oversized":
        return "oversized items"
    if slot == "gift":
        return "items received as a gift"
    if slot == "return_method":
        return {"mail": "returns by mail", "drop_off": "returns at a drop-off point",
                "pickup": "returns by home pickup"}[v]
    if slot == "issue":
        return "accidental damage (drops, spills, cracks)"
    if slot == "months_owned":
        return f"items owned for at most {_months(v)}"
    if slot == "clearance":
        return "items bought on clearance"
    if slot == "days_purchased":
        return f"requests more than {_days(v)} after purchase"
    if slot == "price_drop":
        return f"price drops of {money(v)} or more" if op == "ge" else f"price drops under {money(v)}"
    if slot == "competitor":
        return "prices from online marketplace sellers"
    if slot == "price_gap":
        return f"price differences of {money(v)} or more"
    if slot == "department":
        return f"{DEPARTMENT_NAMES[v]} orders"
    if slot == "plan":
        return "monthly plans"
    if slot == "days_member":
        return f"cancellations at most {_days(v)} after joining"
    if slot == "benefits_used":
        return "no member benefits used yet"
    raise ValueError(f"no phrasing for atom {atom!r}")


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


_CLAUSE_CACHE: dict[tuple, str] = {}  # (family, atoms, outcome) -> "Cond: outcome."
_CACHE_LIMIT = 20_000


def _clause_text(family: str, outcome_fmt: Callable[[tuple], str], atoms: tuple, out: tuple) -> str:
    """One case's text, memoised (cases repeat across episodes; the text is a pure
    function of the key, so the cache never changes a result)."""
    key = (family, atoms, out)
    text = _CLAUSE_CACHE.get(key)
    if text is None:
        cond = _cap(" and ".join(_atom_text(a) for a in atoms)) if atoms else "Otherwise"
        text = f"{cond}: {outcome_fmt(out)}."
        if len(_CLAUSE_CACHE) < _CACHE_LIMIT:
            _CLAUSE_CACHE[key] = text
    return text


def _render(family: str, header: str, clauses: tuple, default: tuple, outcome: Callable[[tuple], str],
            notes: str) -> str:
    """The rule's text: header, the numbered cases (the first match decides), the default
    ('Otherwise'), notes."""
    parts = [header, "The first matching case applies:"]
    i = 0
    for i, (atoms, out) in enumerate(clauses, 1):
        parts.append(f"({i}) " + _clause_text(family, outcome, atoms, out))
    parts.append(f"({i + 1}) " + _clause_text(family, outcome, (), default))
    if notes:
        parts.append(notes)
    return " ".join(parts)


def _rule(spec: RuleSpec, title: str, header: str, scope: tuple, clauses: tuple, default: tuple,
          outcome: Callable[[tuple], str], notes: str = "", params: tuple = ()) -> PolicyRule:
    if len(clauses) + 1 > spec.cases:  # the bound `sample_question` relies on
        raise RuntimeError(f"rule {spec.rule_id} has {len(clauses) + 1} cases, its spec allows {spec.cases}")
    data = (("family", spec.family), ("question", spec.question), ("kind", spec.kind), ("scope", scope),
            ("clauses", clauses), ("default", default), ("options", spec.options)) + params
    return PolicyRule(rule_id=spec.rule_id, topic=spec.topic, title=title, data=data,
                      render_text=functools.partial(_render, spec.family, header, clauses, default, outcome, notes))


# --------------------------------------------------------------------------- random draws


def _overflow(more: Callable[[], np.random.Generator]):
    """Uniforms from the generator `more()` makes on the first request, 64 at a time, forever."""
    rng = more()
    while True:
        yield from rng.random(64).tolist()


class _Draws:
    """One rule's (or the store's) uniforms: `uniform()` is the next one (a C-level iterator
    step): the `first` values given, then, should a builder need more, those of the generator
    `more()` makes. So a rule's draws never depend on which other rules were built, or when."""

    def __init__(self, first: list[float], more: Callable[[], np.random.Generator]):
        self.uniform = itertools.chain(first, _overflow(more)).__next__

    def pick(self, options):
        return options[int(self.uniform() * len(options))]

    def between(self, lo: int, hi: int) -> int:
        return lo + int(self.uniform() * (hi - lo + 1))

    def subset(self, pool: tuple, k: int) -> tuple:
        """`k` distinct items of `pool` (partial Fisher-Yates), kept in pool order."""
        n, u = len(pool), self.uniform
        idx = list(range(n))
        for j in range(k):
            r = j + int(u() * (n - j))
            idx[j], idx[r] = idx[r], idx[j]
        return tuple(pool[i] for i in sorted(idx[:k]))

    def coin(self, p: float = 0.5) -> bool:
        return self.uniform() < p


# --------------------------------------------------------------------------- outcomes


def _const(v) -> tuple:
    return ("const", v)


def _pct(slot: str, p: int) -> tuple:
    return ("pct", slot, p) if p else ("const", 0)


def _money_outcome(zero: str, fmt: str = "{m}") -> Callable[[tuple], str]:
    def out(o: tuple) -> str:
        if o[0] == "const":
            return zero if o[1] == 0 else fmt.format(m=money(o[1]))
        if o[0] == "pct":
            noun = {"item_price": "the item price", "price_drop": "the price drop"}[o[1]]
            return f"{o[2]}% of {noun}"
        if o[0] == "slot":
            return "the full price drop"
        raise ValueError(o)
    return out


def _yesno_outcome(yes: str, no: str) -> Callable[[tuple], str]:
    return lambda o: yes if o[1] == "yes" else no


def _choice_outcome(o: tuple) -> str:
    return o[1]


def _unit_outcome(unit: Callable[[int], str]) -> Callable[[tuple], str]:
    return lambda o: unit(o[1])


def _points_outcome(o: tuple) -> str:
    r = o[2]
    return f"{r} point per dollar" if r == 1 else f"{r} points per dollar"


def _business_days(n: int) -> str:
    return f"{n} business day" if n == 1 else f"{n} business days"


def _extra_days(n: int) -> str:
    return "no extra days (0 days)" if n == 0 else f"{n} extra days"


# --------------------------------------------------------------------------- families
#
# Every family draws, per store, the ORDER of its cases (`_interleave`: cases whose logic
# needs an order, e.g. "at most 3 months" before "at most 12 months", keep it) and the
# OUTCOME of every case and of the default from a menu. So the case a question is decided
# by, and what it says, differ from store to store: a question's wording and difficulty
# (the case depth) do not predict its answer, only the store's rule does. Menus avoid a
# dominant value (zero amounts are drawn rarely).

WINDOW_CHOICES = {
    "electronics": (14, 15, 21, 30), "clothing": (30, 45, 60, 90), "home & kitchen": (30, 45, 60, 90),
    "beauty": (14, 21, 30, 45), "sports & outdoors": (30, 45, 60), "office": (21, 30, 45, 60),
    "toys": (30, 45, 60, 90), "tools": (30, 45, 60, 90), "grocery": (7, 10, 14, 21),
}
WARRANTY_MONTHS = {
    "electronics": ((12, 24), (6, 12)), "clothing": ((3, 6), (3, 6)), "home & kitchen": ((12, 24), (6, 12)),
    "beauty": ((3, 6), (3, 6)), "sports & outdoors": ((6, 12), (6, 12)), "office": ((12, 24), (6, 12)),
    "toys": ((3, 6, 12), (3, 6)), "tools": ((12, 24, 36), (6, 12)), "grocery": ((2, 3), (1, 2)),
}
RETURN_SHIP_FEES = {  # method -> fee menu (cents)
    "mail": tuple(range(349, 1000, 50)),
    "drop_off": tuple(range(95, 346, 25)),
    "pickup": tuple(range(1095, 2100, 100)),
}
SHIPPING = {  # region -> fee menu (cents), free threshold ($), Plus reduction ($)
    "contiguous us": (tuple(range(399, 3000, 100)), (25, 35, 49, 59), (10, 15, 20)),
    "alaska & hawaii": (tuple(range(949, 5000, 100)), (75, 99, 125), (20, 25)),
    "us territories": (tuple(range(1195, 5500, 100)), (99, 125, 150), (25, 50)),
    "canada": (tuple(range(1475, 6500, 100)), (99, 150, 199), (25, 50)),
}
DELIVERY_DAYS = {  # region -> (lo, hi) business days
    "contiguous us": (1, 14), "alaska & hawaii": (2, 16), "us territories": (3, 18), "canada": (2, 17),
}
REFUND_DAYS = tuple(range(1, 16))  # business days menu
_THRESHOLD_DOLLARS = tuple(range(60, 310, 10))  # item price / order total thresholds
RESTOCKING_PCTS = (5, 8, 10, 12, 15, 18, 20, 25, 30)
PROTECTION = {  # tier -> window days, cap ($)
    "standard": ((7, 14), (20, 25, 30, 35, 40, 45, 50)), "plus": ((14, 21, 30), (55, 60, 65, 70, 75, 80, 90, 100)),
    "premium": ((30, 45, 60), (110, 120, 125, 130, 140, 150, 175, 200)),
}
PROTECTION_PCTS = (25, 50, 75)
POINT_RATES = {"standard": (1,), "plus": (1, 2), "premium": (2, 3)}
MEMBER_FEES = {"plus": (49, 59, 69), "premium": (99, 119, 139)}
REFUND_PCTS = (10, 20, 25, 30, 40, 50, 60, 75, 80, 100)
STANDARD_BONUS = tuple(range(1, 11))
P_ZERO = 0.05  # chance that a case which may be free (damaged item, free-shipping threshold) is free

CONDITION_NOTE = "An item's condition is exactly one of: unopened, opened, or arrived damaged."


def _interleave(dr: _Draws, clauses: list, chains: tuple = ()) -> tuple:
    """`clauses` in a random order; the clauses of each chain (a tuple of indices) keep their
    relative order (so a narrower threshold is never shadowed by a wider one)."""
    u = dr.uniform
    keys = [u() for _ in clauses]
    for chain in chains:
        for i, k in zip(chain, sorted(keys[i] for i in chain)):
            keys[i] = k
    return tuple([clauses[i] for i in sorted(range(len(clauses)), key=keys.__getitem__)])


def _picks(dr: _Draws, menu: tuple, k: int) -> list:
    """`k` distinct values of `menu` in a random order (the menu repeats if it is short)."""
    out: list = []
    while len(out) < k:
        rest = [v for v in menu if v not in out] or list(menu)
        chosen = dr.subset(tuple(rest), min(k - len(out), len(rest)))
        keys = [dr.uniform() for _ in chosen]
        out += [chosen[i] for i in sorted(range(len(chosen)), key=keys.__getitem__)]
    return out


def _varied(dr: _Draws, options: tuple, k: int) -> list:
    """`k` outcomes drawn uniformly from `options`, not all the same."""
    out = [dr.pick(options) for _ in range(k)]
    if len(set(out)) == 1:
        i = int(dr.uniform() * k)
        out[i] = dr.pick(tuple(o for o in options if o != out[i]))
    return out


@functools.lru_cache(maxsize=None)
def _eligibility_shape(final_sale: bool, n_thresholds: int, limit_index: tuple[int, ...]) -> tuple[int, int, tuple]:
    """(number of cells, the "returnable" cells, every pool condition with the cells it
    covers) for `_eligibility_clauses`. The cells depend only on the shape of the store
    (whether a department has final-sale items, how many day thresholds, which threshold is
    each tier's limit), so conditions name thresholds by index here and the few shapes are
    computed once per process."""
    finals = (True, False) if final_sale else (False,)
    cells = [(f, t, k) for f in finals for t in TIERS for k in range(n_thresholds + 1)]
    bit = {c: 1 << i for i, c in enumerate(cells)}
    limit_of = dict(zip(TIERS, limit_index))

    def mask(pred) -> int:
        return sum(bit[c] for c in cells if pred(*c))

    yes = mask(lambda f, t, k: not f and k <= limit_of[t])
    atom_mask = {("item", "in"): mask(lambda f, t, k: f), ("item", "nin"): mask(lambda f, t, k: not f)}
    for t in TIERS:
        atom_mask[("tier", t)] = mask(lambda f, u, k, t=t: u == t)
    for j in range(n_thresholds):
        atom_mask[("le", j)] = mask(lambda f, t, k, j=j: k <= j)
        atom_mask[("gt", j)] = mask(lambda f, t, k, j=j: k > j)

    def cover(atoms) -> int:
        out = (1 << len(cells)) - 1
        for slot, op, v in atoms:
            out &= atom_mask[(slot, op)] if slot == "item" else atom_mask[("tier", v)] if slot == "tier" \
                else atom_mask[(op, v)]
        return out

    days = [(("days_delivered", op, j),) for j in range(n_thresholds) for op in ("le", "gt")]
    pool = [(("tier", "eq", t),) for t in TIERS] + days
    pool += [(("tier", "eq", t),) + d for t in TIERS for d in days]
    if final_sale:  # "not final sale" lets a returnable case come before the final-sale one
        pool += [atoms + (("item", "nin", None),) for atoms in pool] + [(("item", "in", None),)]
    return len(cells), yes, tuple((atoms, cover(atoms)) for atoms in pool)


@functools.lru_cache(maxsize=1 << 16)
def _eligibility_step(shape: tuple, remaining: int) -> tuple[tuple[str, ...], dict[str, tuple]] | None:
    """The choices of `_eligibility_clauses` when the cells in mask `remaining` are still
    undecided, for a store of shape `shape` (`_eligibility_shape`'s arguments): the outcomes
    available (sorted) and, per outcome, its at most 3 broadest pure conditions as
    (atoms with thresholds by index, cells hit); None when no condition is available. A pure
    function of its arguments (never of a draw), so it is computed once per process for
    each state reached."""
    _, yes, shape_covers = _eligibility_shape(*shape)
    options: dict[str, list] = {}
    for atoms, cov in shape_covers:
        hit = cov & remaining
        if hit and hit != remaining:
            y = hit & yes
            if y == hit or not y:
                options.setdefault("yes" if y else "no", []).append((atoms, hit))
    if not options:
        return None
    widest = {o: tuple(sorted(c, key=lambda o: (-o[1].bit_count(), len(o[0])))[:3])  # few, broad cases
              for o, c in options.items()}
    return tuple(sorted(options)), widest


def _eligibility_clauses(dr: _Draws, final_sale: tuple, window: int, limits: dict) -> tuple[tuple, tuple]:
    """A decision list (clauses, default) for "returnable iff not final sale and delivered at
    most `limits[tier]` days ago", drawn at random among the lists that say exactly that.

    The situation space is cut into cells (final sale or not x tier x days bucket between the
    thresholds); each case is a condition from a fixed pool whose cells not yet decided all
    share one outcome; the outcome of the next case is a fair coin among those available, so
    every position of the list says "returnable" or "not returnable" about equally often.
    The choices at each state depend only on the store's shape (`_eligibility_step`); the
    chosen conditions get this store's thresholds and final-sale leaves."""
    thresholds = sorted({window, *limits.values()})
    shape = (bool(final_sale), len(thresholds), tuple(thresholds.index(limits[t]) for t in TIERS))
    n_cells, yes, _ = _eligibility_shape(*shape)

    def outcomes_of(m: int) -> set:
        return {o for o, part in (("yes", m & yes), ("no", m & ~yes)) if part}

    def pure(m: int) -> bool:  # len(outcomes_of(m)) == 1
        return bool(m) and (not m & yes or not m & ~yes)

    remaining = (1 << n_cells) - 1
    clauses: list = []
    while not (len(clauses) >= 3 and pure(remaining)):
        step = _eligibility_step(shape, remaining)
        if step is None:
            break
        outcomes, widest = step
        outcome = dr.pick(outcomes)
        atoms, hit = dr.pick(widest[outcome])
        atoms = tuple((slot, op, final_sale if slot == "item" else thresholds[v] if slot == "days_delivered" else v)
                      for slot, op, v in atoms)
        clauses.append((atoms, _const(outcome)))
        remaining &= ~hit
    outcomes = outcomes_of(remaining)
    if len(outcomes) != 1:  # cannot happen: single cells are always pure candidates
        raise RuntimeError("eligibility decision list did not converge")
    return tuple(clauses), _const(outcomes.pop())


def _eligibility_rule(dr: _Draws, store: _StoreDraws, spec: RuleSpec, dept: str) -> PolicyRule:
    name, w, fs, bonus = DEPARTMENT_NAMES[dept], store.windows[dept], store.final_sale[dept], store.bonus
    std, plus, prem = bonus["standard"], bonus["plus"], bonus["premium"]
    clauses, default = _eligibility_clauses(dr, fs, w, {t: w + bonus[t] for t in TIERS})
    notes = (f"The base window is {_days(w)} from delivery; standard accounts get {std} extra days "
             f"({w + std} in total), Plus members {plus} extra days ({w + plus} in total) and Premium "
             f"members {prem} extra days ({w + prem} in total). The window is the same whatever the "
             "item's condition (unopened, opened or damaged).")
    if fs:
        notes += " Final-sale items (" + ", ".join(_leaf_phrase(x) for x in fs) + ") are never returnable."
    else:
        notes += f" No {name} items are final sale."
    return _rule(
        spec, f"Return eligibility: {name}", f"Whether an item from the {name} department can be returned.",
        (("department", dept),), clauses, default, _yesno_outcome("returnable", "not returnable"), notes,
        params=(("window", w), ("standard_bonus", std), ("plus_bonus", plus), ("premium_bonus", prem),
        ("final_sale", fs)),
    )


def _maybe_zero(dr: _Draws, outcome: tuple) -> tuple:
    return _const(0) if dr.coin(P_ZERO) else outcome


def _restocking_rule(dr: _Draws, store: _StoreDraws, spec: RuleSpec, dept: str) -> PolicyRule:
    name = DEPARTMENT_NAMES[dept]
    threshold = dr.pick(_THRESHOLD_DOLLARS) * 100
    pcts = _picks(dr, RESTOCKING_PCTS, 5)
    clauses = _interleave(dr, [
        ((("condition", "eq", "damaged"),), _maybe_zero(dr, _pct("item_price", pcts[0]))),
        ((("tier", "eq", "premium"),), _pct("item_price", pcts[1])),
        ((("condition", "eq", "unopened"),), _pct("item_price", pcts[2])),
        ((("item_price", "ge", threshold),), _pct("item_price", pcts[3])),
    ])
    return _rule(
        spec, f"Restocking fees: {name}",
        f"Restocking fee charged on returned {name} items, deducted from the refund.", (("department", dept),),
        clauses, _pct("item_price", pcts[4]), _money_outcome("no restocking fee ($0)"),
        f"Fees are rounded to the nearest cent. {CONDITION_NOTE}",
    )


_EARLY_MONTHS = {w: tuple(m for m in (1, 2, 3) if m < w) for w in {m for ms, _ in WARRANTY_MONTHS.values() for m in ms}}


def _warranty_rule(dr: _Draws, store: _StoreDraws, spec: RuleSpec, dept: str) -> PolicyRule:
    name = DEPARTMENT_NAMES[dept]
    months_choices, ext_choices = WARRANTY_MONTHS[dept]
    w = dr.pick(months_choices)
    early = dr.pick(_EARLY_MONTHS[w])
    ext = dr.pick(ext_choices)
    outs = _varied(dr, WARRANTY_OPTIONS, 5)
    clauses = _interleave(dr, [
        ((("issue", "eq", "accidental damage"),), _const(outs[0])),
        ((("months_owned", "le", early),), _const(outs[1])),
        ((("months_owned", "le", w),), _const(outs[2])),
        ((("tier", "eq", "premium"), ("months_owned", "le", w + ext)), _const(outs[3])),
    ], chains=((1, 2),))
    notes = (f"Warranty periods: {_months(w)} from purchase, {w + ext} months for Premium members. "
             "Possible outcomes: repair, replacement, refund or not covered.")
    return _rule(
        spec, f"Warranty: {name}", f"What the store warranty does for a faulty item from the {name} department.",
        (("department", dept),), clauses, _const(outs[4]), _choice_outcome, notes,
        params=(("warranty_months", w), ("premium_extra_months", ext)),
    )


def _return_shipping_rule(dr: _Draws, store: _StoreDraws, spec: RuleSpec, method: str) -> PolicyRule:
    fees = _picks(dr, RETURN_SHIP_FEES[method], 5)
    threshold = dr.pick((50, 75, 100, 150)) * 100
    mname = METHOD_NAMES[method]
    clauses = _interleave(dr, [
        ((("condition", "eq", "damaged"),), _maybe_zero(dr, _const(fees[0]))),
        ((("tier", "eq", "premium"),), _const(fees[1])),
        ((("tier", "eq", "plus"),), _const(fees[2])),
        ((("item_price", "ge", threshold),), _const(fees[3])),
    ])
    return _rule(
        spec, f"Return shipping: {mname} returns", f"What the shopper pays to send a return back by {mname}.",
        (("return_method", method),), clauses, _const(fees[4]), _money_outcome("free ($0)", "{m}"), CONDITION_NOTE,
    )


def _shipping_fee_rule(dr: _Draws, store: _StoreDraws, spec: RuleSpec, region: str) -> PolicyRule:
    menu, free_c, plus_c = SHIPPING[region]
    fees = _picks(dr, menu, 6)
    free = dr.pick(free_c)
    plus_free = free - dr.pick(plus_c)
    rname = REGION_NAMES[region]
    clauses = _interleave(dr, [
        ((("speed", "eq", "overnight"),), _const(fees[0])),
        ((("tier", "eq", "premium"),), _const(fees[1])),
        ((("speed", "eq", "expedited"),), _const(fees[2])),
        ((("order_total", "ge", free * 100),), _maybe_zero(dr, _const(fees[3]))),
        ((("tier", "eq", "plus"), ("order_total", "ge", plus_free * 100)), _maybe_zero(dr, _const(fees[4]))),
    ])
    return _rule(
        spec, f"Shipping fees: {rname}",
        f"Shipping cost of an order shipped to {rname}, by shipping speed (standard, expedited, overnight).",
        (("region", region),), clauses, _const(fees[5]), _money_outcome("free ($0)"),
    )


def _delivery_rule(dr: _Draws, store: _StoreDraws, spec: RuleSpec, region: str) -> PolicyRule:
    lo, hi = DELIVERY_DAYS[region]
    over, exp, prem, std, oversized = _picks(dr, tuple(range(lo, hi + 1)), 5)
    rname = REGION_NAMES[region]
    clauses = _interleave(dr, [
        ((("speed", "eq", "overnight"),), _const(over)),
        ((("speed", "eq", "expedited"),), _const(exp)),
        ((("oversized", "eq", "yes"),), _const(oversized)),
        ((("tier", "eq", "premium"),), _const(prem)),
    ])
    return _rule(
        spec, f"Delivery times: {rname}", f"Business days from dispatch to delivery for orders shipped to {rname}.",
        (("region", region),), clauses, _const(std), _unit_outcome(_business_days),
    )


def _refund_method_rule(dr: _Draws, store: _StoreDraws, spec: RuleSpec, payment: str) -> PolicyRule:
    pname = PAYMENT_NAMES[payment]
    options = spec.options
    late = dr.pick((7, 10, 14, 21))
    outs = _varied(dr, options, 5)
    clauses = _interleave(dr, [
        ((("gift", "eq", "yes"),), _const(outs[0])),
        ((("days_delivered", "gt", late),), _const(outs[1])),
        ((("tier", "eq", "premium"),), _const(outs[2])),
        ((("condition", "eq", "opened"),), _const(outs[3])),
    ])
    extra = " (a new gift card)" if payment == "gift card" else ""
    notes = f"Possible outcomes: {options[0]}{extra} or store credit. {CONDITION_NOTE}"
    return _rule(
        spec, f"Refund method: paid by {pname}",
        f"How the refund of a return is issued for purchases paid by {pname}.", (("payment", payment),), clauses,
        _const(outs[4]), _choice_outcome, notes,
    )


def _refund_time_rule(dr: _Draws, store: _StoreDraws, spec: RuleSpec, payment: str) -> PolicyRule:
    pname = PAYMENT_NAMES[payment]
    days = _picks(dr, REFUND_DAYS, 5)
    threshold = dr.pick((300, 500, 750, 1000)) * 100
    clauses = _interleave(dr, [
        ((("tier", "eq", "premium"),), _const(days[0])),
        ((("return_method", "eq", "drop_off"),), _const(days[1])),
        ((("return_method", "eq", "pickup"),), _const(days[2])),
        ((("item_price", "ge", threshold),), _const(days[3])),
    ])
    return _rule(
        spec, f"Refund processing time: paid by {pname}",
        f"Business days from receiving a return to issuing the refund, for purchases paid by {pname}.",
        (("payment", payment),), clauses, _const(days[4]), _unit_outcome(_business_days),
    )


def _price_protection_rule(dr: _Draws, store: _StoreDraws, spec: RuleSpec, tier: str) -> PolicyRule:
    tname = TIER_NAMES[tier]
    windows, caps = PROTECTION[tier]
    window, cap = dr.pick(windows), dr.pick(caps) * 100
    minimum = dr.between(5, min(25, cap // 100 - 5)) * 100
    shares = [("slot", "price_drop") if p == 100 else _pct("price_drop", p)
              for p in _picks(dr, PROTECTION_PCTS + (100,), 4)]
    clauses = _interleave(dr, [
        ((("days_purchased", "gt", window),), _maybe_zero(dr, shares[0])),
        ((("clearance", "eq", "yes"),), shares[1]),
        ((("price_drop", "ge", cap),), _const(cap)),
        ((("price_drop", "lt", minimum),), _maybe_zero(dr, shares[2])),
    ])
    who = "standard accounts" if tier == "standard" else f"{tname} members"
    return _rule(
        spec, f"Price protection: {tname} members",
        f"If our own price drops after purchase, {who} get back part of the difference.", (("tier", tier),),
        clauses, shares[3], _money_outcome("nothing ($0)", "{m}"), "Amounts are rounded to the nearest cent.",
    )


def _price_match_rule(dr: _Draws, store: _StoreDraws, spec: RuleSpec, dept: str) -> PolicyRule:
    name = DEPARTMENT_NAMES[dept]
    window = dr.pick((7, 14, 30))
    gap = dr.pick((25, 50, 100)) * 100
    outs = _varied(dr, YES_NO, 6)
    clauses = _interleave(dr, [
        ((("competitor", "eq", "online marketplace"),), _const(outs[0])),
        ((("clearance", "eq", "yes"),), _const(outs[1])),
        ((("days_purchased", "gt", window),), _const(outs[2])),
        ((("tier", "eq", "premium"),), _const(outs[3])),
        ((("price_gap", "ge", gap),), _const(outs[4])),
    ])
    return _rule(
        spec, f"Price matching: {name}",
        f"Whether we match a competitor's lower price on an item from the {name} department bought from us "
        "(refunding the difference). Competitors are major retailers, online marketplace sellers and local stores.",
        (("department", dept),), clauses, _const(outs[5]), _yesno_outcome("we match the price", "no price match"),
    )


def _points_rule(dr: _Draws, store: _StoreDraws, spec: RuleSpec, tier: str) -> PolicyRule:
    tname = TIER_NAMES[tier]
    base = dr.pick(POINT_RATES[tier])
    d1, d2 = dr.subset(DEPARTMENTS, 2) if dr.coin() else dr.subset(DEPARTMENTS, 2)[::-1]
    threshold = dr.pick(_THRESHOLD_DOLLARS) * 100
    clauses = _interleave(dr, [
        ((("department", "eq", d1),), ("rate", "order_total", base + dr.pick((3, 4)))),
        ((("department", "eq", d2),), ("rate", "order_total", base + 2)),
        ((("order_total", "ge", threshold),), ("rate", "order_total", base + 1)),
    ])
    who = "standard accounts" if tier == "standard" else f"{tname} members"
    return _rule(
        spec, f"Reward points: {tname} members",
        f"Reward points {who} earn on an order, per whole dollar of the order total.", (("tier", tier),), clauses,
        ("rate", "order_total", base), _points_outcome,
    )


def _cancellation_rule(dr: _Draws, store: _StoreDraws, spec: RuleSpec, tier: str) -> PolicyRule:
    tname = TIER_NAMES[tier]
    fee = dr.pick(MEMBER_FEES[tier]) * 100
    grace = dr.pick((7, 14))
    partial_days = dr.pick((30, 60, 90))
    refunds = [fee * p // 100 for p in _picks(dr, REFUND_PCTS, 5)]
    clauses = _interleave(dr, [
        ((("plan", "eq", "monthly"),), _maybe_zero(dr, _const(refunds[0]))),
        ((("days_member", "le", grace), ("benefits_used", "eq", "no")), _const(refunds[1])),
        ((("days_member", "le", partial_days),), _const(refunds[2])),
        ((("benefits_used", "eq", "no"),), _const(refunds[3])),
    ], chains=((1, 2), (1, 3)))
    notes = f"The annual {tname} fee is {money(fee)}."
    return _rule(
        spec, f"Membership cancellation: {tname}",
        f"Refund of the annual {tname} membership fee when a member cancels.", (("tier", tier),), clauses,
        _const(refunds[4]), _money_outcome("no refund ($0)", "a refund of {m}"), notes,
        params=(("annual_fee", fee),),
    )


def _bonus_rule(dr: _Draws, store: _StoreDraws, spec: RuleSpec, key: None) -> PolicyRule:
    tiers = _picks(dr, TIERS, 3)
    clauses = tuple(((("tier", "eq", t),), _const(store.bonus[t])) for t in tiers[:2])
    return _rule(
        spec, "Membership return bonus",
        "Extra days every account tier gets on the return window of every department.",
        (), clauses, _const(store.bonus[tiers[2]]), _unit_outcome(_extra_days),
    )


def _slug(s: str) -> str:
    return s.replace(" & ", "-").replace(" ", "-").replace("_", "-")


@dataclass(frozen=True)
class _StoreDraws:
    """The store-wide draws the eligibility and bonus rules share with `StorePolicy`."""

    windows: dict[str, int]  # department -> return window (days)
    bonus: dict[str, int]  # tier -> extra days
    final_sale: dict[str, tuple[str, ...]]  # department -> final-sale leaves


@dataclass(frozen=True)
class RuleSpec:
    """What is fixed about one rule before any draw: its id, topic, family, the question it
    answers (with the answer kind and the options of a choice), the scope key it is made for
    (a department, region, payment, tier or return method; None for a store-wide rule), the
    most cases (the default counted) a rule of it can have, and its builder
    ``build(draws, store, spec, key) -> PolicyRule``."""

    rule_id: str
    topic: str
    family: str
    question: str
    kind: str
    options: tuple[str, ...]
    cases: int
    key: object
    build: Callable[[_Draws, _StoreDraws, "RuleSpec", object], PolicyRule]


def _specs(rule_id: Callable[[object], str], topic: str, family: str, question: str, kind: str, cases: int,
           keys: tuple, build: Callable, options: Callable[[object], tuple] = lambda key: ()) -> list[RuleSpec]:
    return [RuleSpec(rule_id(k), topic, family, question, kind, options(k), cases, k, build) for k in keys]


# An eligibility rule has at most one case per cell of the largest store shape (final sale
# or not x 3 tiers x 5 day buckets between 4 thresholds): every case decides at least one.
_ELIGIBILITY_CASES = 2 * len(TIERS) * 5

RULE_SPECS: tuple[RuleSpec, ...] = tuple(
    _specs(lambda d: f"returns-eligibility-{_slug(d)}", "returns", "return_eligibility", "return_allowed", "yesno",
           _ELIGIBILITY_CASES, DEPARTMENTS, _eligibility_rule)
    + _specs(lambda d: f"returns-restocking-{_slug(d)}", "returns", "restocking_fee", "restocking_fee", "money", 5,
             DEPARTMENTS, _restocking_rule)
    + _specs(lambda m: f"returns-shipping-{_slug(m)}", "returns", "return_shipping", "return_shipping_fee", "money", 5,
             RETURN_METHODS, _return_shipping_rule)
    + _specs(lambda p: f"returns-refund-method-{_slug(p)}", "returns", "refund_method", "refund_method", "choice", 5,
             PAYMENTS, _refund_method_rule,
             options=lambda p: GIFT_CARD_REFUND_OPTIONS if p == "gift card" else REFUND_OPTIONS)
    + _specs(lambda p: f"returns-refund-time-{_slug(p)}", "returns", "refund_time", "refund_days", "business_days", 5,
             PAYMENTS, _refund_time_rule)
    + _specs(lambda r: f"shipping-fees-{_slug(r)}", "shipping", "shipping_fee", "shipping_fee", "money", 6,
             REGIONS, _shipping_fee_rule)
    + _specs(lambda r: f"shipping-delivery-{_slug(r)}", "shipping", "delivery_time", "delivery_days",
             "business_days", 5, REGIONS, _delivery_rule)
    + _specs(lambda t: f"pricing-protection-{t}", "pricing", "price_protection", "price_protection", "money", 5,
             TIERS, _price_protection_rule)
    + _specs(lambda d: f"pricing-match-{_slug(d)}", "pricing", "price_match", "price_match", "yesno", 6,
             DEPARTMENTS, _price_match_rule)
    + _specs(lambda t: f"membership-points-{t}", "membership", "reward_points", "reward_points", "points", 4,
             TIERS, _points_rule)
    + _specs(lambda t: f"membership-cancellation-{t}", "membership", "membership_cancellation", "membership_refund",
             "money", 5, ("plus", "premium"), _cancellation_rule)
    + _specs(lambda _: "membership-return-bonus", "membership", "return_bonus", "return_bonus_days", "days", 3,
             (None,), _bonus_rule)
    + _specs(lambda d: f"warranty-{_slug(d)}", "warranty", "warranty", "warranty_remedy", "choice", 5,
             DEPARTMENTS, _warranty_rule, options=lambda d: WARRANTY_OPTIONS)
)
_STORE_DRAWS = 48  # the store-wide draws take at most 42 (more would continue the policy stream)
_RULE_DRAWS = 32  # uniforms per rule (a rule takes at most 21 in 3,000 stores); more continue on its own generator


def generate_policy(rng: np.random.Generator) -> StorePolicy:
    """A store policy of 64 rules (`RULE_SPECS`) over returns, shipping, pricing, membership
    and warranty, every parameter drawn from `rng`.

    `rng` must be the policy's own stream (nothing else may draw from it). The return
    windows, bonus days and final-sale leaves are drawn now. Each rule draws from its own
    row of uniforms (drawn, for all rules at once, when the first rule is needed) and is
    built on first need (`StorePolicy.rule_at`): a rule is the same whichever rules were
    built before it, and whether they were built at all."""
    store_draws = rng.random(_STORE_DRAWS).tolist()
    dr = _Draws(store_draws, lambda: rng)
    windows = {d: dr.pick(WINDOW_CHOICES[d]) for d in DEPARTMENTS}
    plus = dr.between(11, 22)
    bonus = {"standard": dr.pick(STANDARD_BONUS), "plus": plus, "premium": plus + dr.between(5, 16)}
    final_sale = {}
    for d in DEPARTMENTS:
        pool, lo, hi = FINAL_SALE_POOL[d]
        final_sale[d] = dr.subset(pool, dr.between(lo, hi))
    store = _StoreDraws(windows, bonus, final_sale)
    rows: list[list[float]] = []

    def make_rule(index: int) -> PolicyRule:
        if not rows:  # one row per rule: its uniforms, then the seed of its overflow generator
            rows.extend(rng.random((len(RULE_SPECS), _RULE_DRAWS + 1)).tolist())
        row = rows[index]
        seed = int(row[-1] * (1 << 53))
        spec = RULE_SPECS[index]
        return spec.build(_Draws(row[:-1], lambda: np.random.default_rng(seed)), store, spec, spec.key)

    return StorePolicy(
        return_windows=windows,
        membership_bonus_days=bonus,
        non_returnable_l3=frozenset(leaf for d in DEPARTMENTS for leaf in final_sale[d]),
        rule_ids=tuple(s.rule_id for s in RULE_SPECS),
        make_rule=make_rule,
    )


# --------------------------------------------------------------------------- evaluation

UNKNOWN = "<unknown>"  # a case needed a slot the context lacks


def _holds(atom: tuple, ctx: dict) -> bool:
    slot, op, v = atom
    x = ctx[slot]
    if op == "eq":
        return x == v
    if op == "in":
        return x in v
    if op == "nin":
        return x not in v
    if op == "le":
        return x <= v
    if op == "lt":
        return x < v
    if op == "ge":
        return x >= v
    if op == "gt":
        return x > v
    raise ValueError(f"unknown operator {op!r}")


def outcome_value(outcome: tuple, ctx: dict):
    """The value of an outcome in context (money in cents, rounded half up)."""
    tag = outcome[0]
    if tag == "const":
        return outcome[1]
    if tag == "pct":
        return (ctx[outcome[1]] * outcome[2] + 50) // 100
    if tag == "slot":
        return ctx[outcome[1]]
    if tag == "rate":
        return ctx[outcome[1]] // 100 * outcome[2]
    raise ValueError(f"unknown outcome {outcome!r}")


def applies(rule: PolicyRule, ctx: dict) -> bool:
    if rule.param("question") != ctx.get("question"):
        return False
    return all(ctx.get(slot) == value for slot, value in rule.param("scope"))


def evaluate(rule: PolicyRule, ctx: dict):
    """(answer, deciding case number) of `rule` on the question context `ctx`; None when the
    rule does not apply (another question or scope); (UNKNOWN, case) when a case up to the
    deciding one needs a slot the context lacks."""
    if not applies(rule, ctx):
        return None
    clauses = rule.param("clauses")
    try:
        for i, (atoms, outcome) in enumerate(clauses, 1):
            if all(_holds(a, ctx) for a in atoms):
                return outcome_value(outcome, ctx), i
        return outcome_value(rule.param("default"), ctx), len(clauses) + 1
    except KeyError:
        return UNKNOWN, 0


def max_depth(rule: PolicyRule) -> int:
    """Cases of the rule, counting the default ('Otherwise')."""
    return len(rule.param("clauses")) + 1


# --------------------------------------------------------------------------- questions


@dataclass(frozen=True)
class PolicyQuestion:
    """A question context answered by exactly the first `depth` cases of `rule`."""

    rule: PolicyRule
    depth: int
    context: dict  # "question" + scope + slot values (money in cents)
    answer: object  # int cents (money), int (numbers), "yes"/"no", or an option string
    kind: str
    needed: tuple[str, ...]  # slots the deciding cases and outcome read, in case order


def _needed_slots(rule: PolicyRule, depth: int) -> list[str]:
    clauses = rule.param("clauses")
    names: list[str] = []
    for atoms, _ in clauses[:depth]:
        for slot, _, _ in atoms:
            if slot not in names:
                names.append(slot)
    outcome = clauses[depth - 1][1] if depth <= len(clauses) else rule.param("default")
    if outcome[0] in ("pct", "slot", "rate") and outcome[1] not in names:
        names.append(outcome[1])
    return names


def _solve_cat(values: tuple, cons: list, rng: np.random.Generator):
    ok = [v for v in values if all(_holds((None, op, val), {None: v}) == truth for op, val, truth in cons)]
    return ok[int(rng.integers(len(ok)))] if ok else None


def _int_bounds(spec: SlotSpec, cons: list, scale: int) -> tuple[int, int, bool, bool]:
    """(lo, hi, lo_tight, hi_tight): the integer range (in units of `scale`) meeting `cons`."""
    lo, hi = spec.lo, spec.hi
    lo_tight = hi_tight = False
    for op, val, truth in cons:
        v = val // scale
        if (op, truth) in (("le", True), ("gt", False)):
            if v < hi:
                hi, hi_tight = v, True
        elif (op, truth) in (("lt", True), ("ge", False)):
            if v - 1 < hi:
                hi, hi_tight = v - 1, True
        elif (op, truth) in (("ge", True), ("lt", False)):
            if v > lo:
                lo, lo_tight = v, True
        elif (op, truth) in (("gt", True), ("le", False)):
            if v + 1 > lo:
                lo, lo_tight = v + 1, True
        else:
            raise ValueError(f"unsupported numeric condition {op!r}")
    return lo, hi, lo_tight, hi_tight


def _solve_int(spec: SlotSpec, cons: list, rng: np.random.Generator, p_edge: float, scale: int):
    lo, hi, lo_tight, hi_tight = _int_bounds(spec, cons, scale)
    if lo > hi:
        return None
    edges = [e for e, tight in ((lo, lo_tight), (hi, hi_tight)) if tight]
    if edges and rng.random() < p_edge:
        return edges[int(rng.integers(len(edges)))] * scale
    if lo_tight and not hi_tight:
        hi = min(hi, lo + spec.spread)
    elif hi_tight and not lo_tight:
        lo = max(lo, min(spec.typical_lo, hi))
    elif not lo_tight and not hi_tight:
        lo, hi = max(lo, spec.typical_lo), min(hi, spec.typical_hi)
    return int(rng.integers(lo, hi + 1)) * scale


def _item_values(ctx: dict, cons: list) -> list[str]:
    return [x for x in DEPARTMENT_LEAVES[ctx["department"]]
            if all(_holds(("i", op, val), {"i": x}) == t for op, val, t in cons)]


def _feasible(slot: str, cons: list, ctx: dict) -> bool:
    """Whether some value of `slot` meets every (op, value, truth) in `cons` (a scope slot
    already set in `ctx` must meet them itself)."""
    if slot in ctx:
        return all(_holds((slot, op, val), ctx) == t for op, val, t in cons)
    spec = SLOTS[slot]
    if spec.kind == "item":
        return "department" in ctx and bool(_item_values(ctx, cons))
    if spec.kind == "cat":
        return any(all(_holds((None, op, val), {None: v}) == t for op, val, t in cons) for v in spec.values)
    lo, hi, _, _ = _int_bounds(spec, cons, 100 if spec.kind == "money" else 1)
    return lo <= hi


def _item_for(dept: str, exclude: frozenset, rng: np.random.Generator) -> str:
    leaves = [x for x in DEPARTMENT_LEAVES[dept] if x not in exclude]
    return leaves[int(rng.integers(len(leaves)))]


def _falsify(cases: tuple, cons: dict, ctx: dict, rng: np.random.Generator) -> dict | None:
    """Constraints that make every case in `cases` false (one false atom each, atoms tried
    in a random order, backtracking), on top of `cons`; None when no choice is feasible."""
    if not cases:
        return cons
    atoms = cases[0][0]
    for i in rng.permutation(len(atoms)):
        slot, op, val = atoms[int(i)]
        trial = cons.get(slot, []) + [(op, val, False)]
        if _feasible(slot, trial, ctx):
            found = _falsify(cases[1:], {**cons, slot: trial}, ctx, rng)
            if found is not None:
                return found
    return None


def _try_context(rule: PolicyRule, depth: int, rng: np.random.Generator, p_edge: float,
                 policy: StorePolicy) -> dict | None:
    clauses = rule.param("clauses")
    ctx: dict = {"question": rule.param("question")}
    ctx.update(rule.param("scope"))
    cons: dict[str, list] = {}
    if depth <= len(clauses):
        for slot, op, val in clauses[depth - 1][0]:  # the deciding case holds
            cons.setdefault(slot, []).append((op, val, True))
    cons = _falsify(clauses[: depth - 1], cons, ctx, rng)  # these cases must NOT hold
    if cons is None:
        return None
    for slot in _needed_slots(rule, depth):
        spec = SLOTS[slot]
        c = cons.get(slot, [])
        if slot in ctx:  # a scope slot: it must already satisfy its cases
            if not all(_holds((slot, op, val), ctx) == t for op, val, t in c):
                return None
            continue
        if spec.kind == "item":
            ok = _item_values(ctx, c)
            if not c:
                ok = [x for x in ok if x not in policy.non_returnable_l3]
            value = ok[int(rng.integers(len(ok)))] if ok else None
        elif spec.kind == "cat":
            value = _solve_cat(spec.values, c, rng)
        else:
            value = _solve_int(spec, c, rng, p_edge, 100 if spec.kind == "money" else 1)
        if value is None:
            return None
        ctx[slot] = value
    return ctx


def question_for(policy: StorePolicy, rule: PolicyRule, depth: int, rng: np.random.Generator,
                 p_edge: float = 0.0, tries: int = 16) -> PolicyQuestion | None:
    """A question about `rule` decided by exactly its case `depth` (1-based; n + 1 is the
    default), or None when no situation reaches that case."""
    if not 1 <= depth <= max_depth(rule):
        return None
    for _ in range(tries):
        ctx = _try_context(rule, depth, rng, p_edge, policy)
        if ctx is None:
            continue
        if rule.param("family") in ITEM_FAMILIES:  # the item the question is about
            if "department" not in ctx:
                ctx["department"] = DEPARTMENTS[int(rng.integers(len(DEPARTMENTS)))]
            if "item" not in ctx:
                ctx["item"] = _item_for(ctx["department"], policy.non_returnable_l3, rng)
        answer, case = evaluate(rule, ctx)
        if case != depth:  # (defensive) the solver must land on the planned case
            continue
        return PolicyQuestion(rule, depth, ctx, answer, rule.param("kind"), tuple(_needed_slots(rule, depth)))
    return None


def _case_outcome(rule: PolicyRule, depth: int) -> tuple:
    clauses = rule.param("clauses")
    return clauses[depth - 1][1] if depth <= len(clauses) else rule.param("default")


def _first(permutation: np.ndarray, lead: int | None) -> list[int]:
    """The permutation as ints, with `lead` moved to the front (when given)."""
    out = [int(i) for i in permutation]
    if lead is not None:
        out.remove(lead)
        out.insert(0, lead)
    return out


def sample_question(policy: StorePolicy, depth: int, rng: np.random.Generator, p_edge: float = 0.0,
                    families: tuple[str, ...] | None = None, stratum: int | None = None) -> PolicyQuestion:
    """A question whose answer depends on exactly the first `depth` cases of one rule
    (a depth no rule of the store reaches falls to the deepest one reached). Target first: a
    question type (the question and its answer options) uniformly among the types whose
    rules can be that deep (`RuleSpec.cases`; a type none of whose rules in this store is
    deep enough is passed over), building only the rules of the types tried; for yes/no
    and option questions the answer uniformly among the type's options, then a rule of the
    type whose case `depth` gives that answer; for amounts and counts a rule of the type
    uniformly (the store's menus spread the values). So no answer is favoured by the
    question's wording or by the depth. `stratum` (E_POLICY passes the episode seed)
    stratifies both draws over consecutive strata: stratum s asks type s mod T first and,
    for yes/no and options, the answer (s // T) mod K first (T types, K options), so over
    any run of seeds types and answers are balanced up to one question, not just in
    expectation. Numeric slots sit on a case's threshold with probability `p_edge`. Every
    item question names a department and a leaf of it (a returnable one unless a case is
    about final sale)."""
    specs = [(i, s) for i, s in enumerate(RULE_SPECS) if families is None or s.family in families]
    if not specs:
        raise ValueError("no policy rules to ask about")
    depth = max(1, min(depth, max(s.cases for _, s in specs)))
    while depth >= 1:
        types: dict[tuple, list[int]] = {}  # (question, options) -> rules whose spec can reach `depth`
        for i, s in specs:
            if s.cases >= depth:
                types.setdefault((s.question, s.options), []).append(i)
        keys = list(types)
        for t in _first(rng.permutation(len(keys)), None if stratum is None else stratum % len(keys)):
            cands = [r for r in map(policy.rule_at, types[keys[t]]) if max_depth(r) >= depth]
            if not cands:
                continue
            order = [cands[int(j)] for j in rng.permutation(len(cands))]
            if cands[0].param("kind") in ("yesno", "choice"):
                options = cands[0].param("options") or YES_NO
                lead = None if stratum is None else stratum // len(keys) % len(options)
                order = [r for a in _first(rng.permutation(len(options)), lead) for r in order
                         if _case_outcome(r, depth) == _const(options[a])]
            for r in order:
                q = question_for(policy, r, depth, rng, p_edge)
                if q is not None:
                    return q
        depth -= 1
    raise RuntimeError("no policy question could be generated")
