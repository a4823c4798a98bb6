"""The store policy knowledge base, generated per episode from its own random stream.

`generate_policy(rng)` returns the `StorePolicy` whose rules `policy_search` shows and whose
return windows the return tools enforce. Every parameter (windows, fees, thresholds,
percentages, rates, which leaves are final sale, the order of some cases) is drawn from
`rng`, so memorising one store does not answer another.

Rule model. Every rule answers ONE question (`question`, e.g. "restocking_fee") within a
scope (`scope`, e.g. department = electronics) as an ordered decision list: numbered cases
`(1) condition: outcome`, `(2) ...`, then `Otherwise: outcome`; the first case whose
condition holds decides. A condition is a conjunction of atoms `(slot, op, value)` over the
shopper's situation (tier, condition, item price, days since delivery, region, ...); an
outcome is a constant, a percentage of a money slot, a slot's value or a rate per dollar.
The text is rendered from exactly that structure (`_render`), so it states every clause and
every number, and `evaluate(rule, ctx)` runs the same structure in exact integer arithmetic
(money in cents). Within one policy the (question, scope) pairs are unique: for a given
question context at most one rule applies.

`StorePolicy.return_windows`, `membership_bonus_days` and `non_returnable_l3` are set from
the same draws as the "return eligibility" rules (window per department; Plus/Premium extra
days; final-sale leaves), so `return_window(line, tier) = window + bonus` is exactly what the
texts say: "delivered at most N days ago", whatever the item's condition.

`PolicyRule.data` keys: family, question, kind (the answer kind), scope ((slot, value), ...),
clauses (((atom, ...), outcome), ...), default (outcome), options (choice answers), plus
family parameters (window, plus_bonus, premium_bonus, final_sale for return eligibility;
warranty_months, premium_extra_months; annual_fee). Money is in integer cents everywhere.

`sample_question(policy, depth, rng)` builds a question context whose answer follows from
exactly the first `depth` cases of one rule (cases 1..depth-1 false, case `depth` true; the
default counts as case n+1), used by E_POLICY.
"""

from __future__ import annotations

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


def _rule(rule_id: str, topic: str, family: str, title: str, header: str, question: str, kind: str,
          scope: tuple, clauses: tuple, default: tuple, outcome: Callable[[tuple], str], notes: str = "",
          options: tuple = (), params: tuple = ()) -> PolicyRule:
    text = _render(family, header, clauses, default, outcome, notes)
    data = (("family", family), ("question", question), ("kind", kind), ("scope", scope), ("clauses", clauses),
            ("default", default), ("options", options)) + params
    return PolicyRule(rule_id=rule_id, topic=topic, title=title, text=text, data=data)


# --------------------------------------------------------------------------- random draws


class _Draws:
    """Uniforms drawn in one batch from the policy stream (one Generator call per policy)."""

    def __init__(self, rng: np.random.Generator, n: int = 256):
        self.rng = rng
        self.u = rng.random(n).tolist()
        self.i = 0

    def uniform(self) -> float:
        if self.i >= len(self.u):
            self.u += self.rng.random(256).tolist()
        x = self.u[self.i]
        self.i += 1
        return x

    def pick(self, options):
        return options[int(self.uniform() * len(options))]

    def between(self, lo: int, hi: int) -> int:
        return lo + int(self.uniform() * (hi - lo + 1))

    def subset(self, pool: tuple, k: int) -> tuple:
        """`k` distinct items of `pool` (partial Fisher-Yates), kept in pool order."""
        idx = list(range(len(pool)))
        for j in range(k):
            r = j + int(self.uniform() * (len(idx) - j))
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
SOFT_GOODS = frozenset({"clothing", "beauty", "grocery"})
RETURN_SHIP_FEES = {  # method -> (base fees, Plus fees) in cents
    "mail": ((599, 699, 799, 899), (299, 399)),
    "drop_off": ((199, 299, 399), (99, 149)),
    "pickup": ((999, 1299, 1499), (499, 699)),
}
SHIPPING = {  # region -> standard, expedited, overnight fees (cents), free threshold ($), Plus reduction ($)
    "contiguous us": ((499, 599, 699), (999, 1299, 1499), (1999, 2499, 2999), (25, 35, 49, 59), (10, 15, 20)),
    "alaska & hawaii": ((999, 1299, 1499), (1999, 2499), (3499, 3999, 4499), (75, 99, 125), (20, 25)),
    "us territories": ((1199, 1499), (2499, 2999), (4499, 4999), (99, 125, 150), (25, 50)),
    "canada": ((1499, 1999), (2999, 3499), (4999, 5999), (99, 150, 199), (25, 50)),
}
DELIVERY = {  # region -> overnight, expedited, oversized (lo, hi), premium, standard (lo, hi) business days
    "contiguous us": ((1,), (2, 3), (6, 10), (2,), (3, 7)),
    "alaska & hawaii": ((2, 3), (4, 5), (10, 14), (4, 5), (6, 10)),
    "us territories": ((3,), (5, 6), (12, 18), (6,), (8, 12)),
    "canada": ((2, 3), (4, 5), (10, 15), (4, 5), (7, 12)),
}
REFUND_DAYS = {  # payment -> default business days choices
    "credit card": (5, 7, 10), "debit card": (7, 10), "paypal": (3, 5), "gift card": (2, 3),
}
PROTECTION = {  # tier -> window days, cap ($)
    "standard": ((7, 14), (25, 50)), "plus": ((14, 21, 30), (50, 75, 100)), "premium": ((30, 45, 60), (100, 150, 200)),
}
POINT_RATES = {"standard": (1,), "plus": (1, 2), "premium": (2, 3)}
MEMBER_FEES = {"plus": (49, 59, 69), "premium": (99, 119, 139)}


CONDITION_NOTE = "An item's condition is exactly one of: unopened, opened, or arrived damaged."


def _return_rules(dr: _Draws, windows: dict, bonus: dict, final_sale: dict) -> list[PolicyRule]:
    out = []
    plus, prem = bonus["plus"], bonus["premium"]
    for dept in DEPARTMENTS:
        name, w, fs = DEPARTMENT_NAMES[dept], windows[dept], final_sale[dept]
        clauses = []
        if fs:
            clauses.append(((("item", "in", fs),), _const("no")))
        clauses += [
            ((("days_delivered", "le", w),), _const("yes")),
            ((("tier", "eq", "plus"), ("days_delivered", "le", w + plus)), _const("yes")),
            ((("tier", "eq", "premium"), ("days_delivered", "le", w + prem)), _const("yes")),
        ]
        notes = (f"The base window is {_days(w)} from delivery; Plus members get {plus} extra days "
                 f"({w + plus} in total) and Premium members {prem} extra days ({w + prem} in total). "
                 "The window is the same whatever the item's condition (unopened, opened or damaged).")
        if not fs:
            notes += f" No {name} items are final sale."
        out.append(_rule(
            f"returns-eligibility-{_slug(dept)}", "returns", "return_eligibility", f"Return eligibility: {name}",
            f"Whether an item from the {name} department can be returned.", "return_allowed", "yesno",
            (("department", dept),),
            tuple(clauses), _const("no"), _yesno_outcome("returnable", "not returnable"), notes,
            params=(("window", w), ("plus_bonus", plus), ("premium_bonus", prem), ("final_sale", fs)),
        ))
    return out


def _restocking_rules(dr: _Draws) -> list[PolicyRule]:
    out = []
    for dept in DEPARTMENTS:
        name = DEPARTMENT_NAMES[dept]
        base = dr.pick((10, 15, 20, 25))
        high = base + dr.pick((5, 10))
        threshold = dr.pick((100, 150, 200, 250, 300)) * 100
        middle = [((("tier", "eq", "premium"),), _pct("item_price", dr.pick((0, 5)))),
                  ((("condition", "eq", "unopened"),), _pct("item_price", dr.pick((0, 5, 10))))]
        if dr.coin():
            middle.reverse()
        clauses = (
            ((("condition", "eq", "damaged"),), _const(0)),
            *middle,
            ((("item_price", "ge", threshold),), _pct("item_price", high)),
        )
        out.append(_rule(
            f"returns-restocking-{_slug(dept)}", "returns", "restocking_fee", f"Restocking fees: {name}",
            f"Restocking fee charged on returned {name} items, deducted from the refund.", "restocking_fee",
            "money", (("department", dept),), clauses, _pct("item_price", base),
            _money_outcome("no restocking fee ($0)"),
            f"Fees are rounded to the nearest cent. {CONDITION_NOTE}",
        ))
    return out


def _warranty_rules(dr: _Draws) -> list[PolicyRule]:
    out = []
    for dept in DEPARTMENTS:
        name = DEPARTMENT_NAMES[dept]
        months_choices, ext_choices = WARRANTY_MONTHS[dept]
        w = dr.pick(months_choices)
        early = dr.pick(tuple(m for m in (1, 2, 3) if m < w))
        ext = dr.pick(ext_choices)
        first = dr.pick(("replacement", "refund"))
        second = "replacement" if dept in SOFT_GOODS else "repair"
        if first == second:
            first = "refund"
        clauses = (
            ((("issue", "eq", "accidental damage"),), _const("not covered")),
            ((("months_owned", "le", early),), _const(first)),
            ((("months_owned", "le", w),), _const(second)),
            ((("tier", "eq", "premium"), ("months_owned", "le", w + ext)), _const(second)),
        )
        notes = (f"The standard warranty lasts {_months(w)} from purchase; Premium members get {ext} extra months "
                 f"({w + ext} in total). Possible outcomes: repair, replacement, refund or not covered.")
        out.append(_rule(
            f"warranty-{_slug(dept)}", "warranty", "warranty", f"Warranty: {name}",
            f"What the store warranty does for a faulty item from the {name} department.", "warranty_remedy", "choice",
            (("department", dept),), clauses, _const("not covered"), _choice_outcome, notes,
            options=WARRANTY_OPTIONS, params=(("warranty_months", w), ("premium_extra_months", ext)),
        ))
    return out


def _return_shipping_rules(dr: _Draws) -> list[PolicyRule]:
    out = []
    for method in RETURN_METHODS:
        base_choices, plus_choices = RETURN_SHIP_FEES[method]
        base, plus_fee = dr.pick(base_choices), dr.pick(plus_choices)
        threshold = dr.pick((50, 75, 100, 150)) * 100
        mname = METHOD_NAMES[method]
        clauses = (
            ((("condition", "eq", "damaged"),), _const(0)),
            ((("tier", "eq", "premium"),), _const(0)),
            ((("tier", "eq", "plus"),), _const(plus_fee)),
            ((("item_price", "ge", threshold),), _const(0)),
        )
        out.append(_rule(
            f"returns-shipping-{_slug(method)}", "returns", "return_shipping", f"Return shipping: {mname} returns",
            f"What the shopper pays to send a return back by {mname}.", "return_shipping_fee", "money",
            (("return_method", method),), clauses, _const(base), _money_outcome("free ($0)", "{m}"), CONDITION_NOTE,
        ))
    return out


def _shipping_fee_rules(dr: _Draws) -> list[PolicyRule]:
    out = []
    for region in REGIONS:
        std_c, exp_c, over_c, free_c, plus_c = SHIPPING[region]
        std, exp, over = dr.pick(std_c), dr.pick(exp_c), dr.pick(over_c)
        free = dr.pick(free_c)
        plus_free = free - dr.pick(plus_c)
        rname = REGION_NAMES[region]
        clauses = (
            ((("speed", "eq", "overnight"),), _const(over)),
            ((("tier", "eq", "premium"),), _const(0)),
            ((("speed", "eq", "expedited"),), _const(exp)),
            ((("order_total", "ge", free * 100),), _const(0)),
            ((("tier", "eq", "plus"), ("order_total", "ge", plus_free * 100)), _const(0)),
        )
        out.append(_rule(
            f"shipping-fees-{_slug(region)}", "shipping", "shipping_fee", f"Shipping fees: {rname}",
            f"Shipping cost of an order shipped to {rname}, by shipping speed (standard, expedited, overnight).",
            "shipping_fee", "money", (("region", region),), clauses, _const(std), _money_outcome("free ($0)"),
        ))
    return out


def _delivery_rules(dr: _Draws) -> list[PolicyRule]:
    out = []
    for region in REGIONS:
        over_c, exp_c, (olo, ohi), prem_c, (slo, shi) = DELIVERY[region]
        over, exp, prem = dr.pick(over_c), dr.pick(exp_c), dr.pick(prem_c)
        oversized, std = dr.between(olo, ohi), dr.between(slo, shi)
        rname = REGION_NAMES[region]
        middle = [((("oversized", "eq", "yes"),), _const(oversized)), ((("tier", "eq", "premium"),), _const(prem))]
        if dr.coin():
            middle.reverse()
        clauses = (
            ((("speed", "eq", "overnight"),), _const(over)),
            ((("speed", "eq", "expedited"),), _const(exp)),
            *middle,
        )
        out.append(_rule(
            f"shipping-delivery-{_slug(region)}", "shipping", "delivery_time", f"Delivery times: {rname}",
            f"Business days from dispatch to delivery for orders shipped to {rname}.", "delivery_days",
            "business_days", (("region", region),), clauses, _const(std), _unit_outcome(_business_days),
        ))
    return out


def _refund_method_rules(dr: _Draws) -> list[PolicyRule]:
    out = []
    for payment in PAYMENTS:
        pname = PAYMENT_NAMES[payment]
        original = "gift card" if payment == "gift card" else "original payment method"
        late = dr.pick((7, 10, 14, 21))
        middle = [((("tier", "eq", "premium"),), _const(original)),
                  ((("condition", "eq", "opened"),), _const("store credit"))]
        if dr.coin():
            middle.reverse()
        clauses = (
            ((("gift", "eq", "yes"),), _const("store credit")),
            ((("days_delivered", "gt", late),), _const("store credit")),
            *middle,
        )
        extra = " (a new gift card)" if payment == "gift card" else ""
        notes = f"Possible outcomes: {original}{extra} or store credit. {CONDITION_NOTE}"
        out.append(_rule(
            f"returns-refund-method-{_slug(payment)}", "returns", "refund_method", f"Refund method: paid by {pname}",
            f"How the refund of a return is issued for purchases paid by {pname}.", "refund_method", "choice",
            (("payment", payment),), clauses, _const(original), _choice_outcome, notes,
            options=GIFT_CARD_REFUND_OPTIONS if payment == "gift card" else REFUND_OPTIONS,
        ))
    return out


def _refund_time_rules(dr: _Draws) -> list[PolicyRule]:
    out = []
    for payment in PAYMENTS:
        pname = PAYMENT_NAMES[payment]
        default = dr.pick(REFUND_DAYS[payment])
        premium = dr.pick((1, 2))
        threshold = dr.pick((300, 500, 750, 1000)) * 100
        rest = [
            ((("return_method", "eq", "drop_off"),), _const(max(1, default - dr.pick((1, 2))))),
            ((("return_method", "eq", "pickup"),), _const(default + dr.pick((1, 2)))),
            ((("item_price", "ge", threshold),), _const(default + dr.pick((3, 5)))),
        ]
        order = sorted(range(3), key=lambda i: dr.uniform())
        clauses = (((("tier", "eq", "premium"),), _const(premium)), *(rest[i] for i in order))
        out.append(_rule(
            f"returns-refund-time-{_slug(payment)}", "returns", "refund_time",
            f"Refund processing time: paid by {pname}",
            f"Business days from receiving a return to issuing the refund, for purchases paid by {pname}.",
            "refund_days", "business_days", (("payment", payment),), clauses, _const(default),
            _unit_outcome(_business_days),
        ))
    return out


def _price_protection_rules(dr: _Draws) -> list[PolicyRule]:
    out = []
    for tier in TIERS:
        tname = TIER_NAMES[tier]
        windows, caps = PROTECTION[tier]
        window, cap = dr.pick(windows), dr.pick(caps) * 100
        minimum = dr.pick((5, 10)) * 100
        share = dr.pick((25, 50))
        clauses = (
            ((("days_purchased", "gt", window),), _const(0)),
            ((("clearance", "eq", "yes"),), _pct("price_drop", share)),
            ((("price_drop", "ge", cap),), _const(cap)),
            ((("price_drop", "lt", minimum),), _const(0)),
        )
        who = "standard accounts" if tier == "standard" else f"{tname} members"
        out.append(_rule(
            f"pricing-protection-{tier}", "pricing", "price_protection", f"Price protection: {tname} members",
            f"If our own price drops after purchase, {who} get back part of the difference.", "price_protection",
            "money", (("tier", tier),), clauses, ("slot", "price_drop"),
            _money_outcome("nothing ($0)", "{m}"), "Amounts are rounded to the nearest cent.",
        ))
    return out


def _price_match_rules(dr: _Draws) -> list[PolicyRule]:
    out = []
    for dept in DEPARTMENTS:
        name = DEPARTMENT_NAMES[dept]
        window = dr.pick((7, 14, 30))
        gap = dr.pick((25, 50, 100)) * 100
        first = [
            ((("competitor", "eq", "online marketplace"),), _const("no")),
            ((("clearance", "eq", "yes"),), _const("no")),
            ((("days_purchased", "gt", window),), _const("no")),
        ]
        order = sorted(range(3), key=lambda i: dr.uniform())
        clauses = (
            *(first[i] for i in order),
            ((("tier", "eq", "premium"),), _const("yes")),
            ((("price_gap", "ge", gap),), _const("no")),
        )
        out.append(_rule(
            f"pricing-match-{_slug(dept)}", "pricing", "price_match", f"Price matching: {name}",
            f"Whether we match a competitor's lower price on an item from the {name} department bought from us "
            "(refunding the "
            "difference). Competitors are major retailers, online marketplace sellers and local stores.",
            "price_match", "yesno", (("department", dept),), clauses, _const("yes"),
            _yesno_outcome("we match the price", "no price match"),
        ))
    return out


def _points_rules(dr: _Draws) -> list[PolicyRule]:
    out = []
    for tier in TIERS:
        tname = TIER_NAMES[tier]
        base = dr.pick(POINT_RATES[tier])
        d1, d2 = dr.subset(DEPARTMENTS, 2) if dr.coin() else dr.subset(DEPARTMENTS, 2)[::-1]
        threshold = dr.pick((100, 150, 200)) * 100
        clauses = (
            ((("department", "eq", d1),), ("rate", "order_total", base + dr.pick((3, 4)))),
            ((("department", "eq", d2),), ("rate", "order_total", base + 2)),
            ((("order_total", "ge", threshold),), ("rate", "order_total", base + 1)),
        )
        who = "standard accounts" if tier == "standard" else f"{tname} members"
        out.append(_rule(
            f"membership-points-{tier}", "membership", "reward_points", f"Reward points: {tname} members",
            f"Reward points {who} earn on an order, per whole dollar of the order total.", "reward_points",
            "points", (("tier", tier),), clauses, ("rate", "order_total", base), _points_outcome,
        ))
    return out


def _cancellation_rules(dr: _Draws) -> list[PolicyRule]:
    out = []
    for tier in ("plus", "premium"):
        tname = TIER_NAMES[tier]
        fee = dr.pick(MEMBER_FEES[tier]) * 100
        grace = dr.pick((7, 14))
        partial_days = dr.pick((30, 60, 90))
        partial_pct = dr.pick((50, 75))
        unused_pct = dr.pick((20, 25))
        partial = fee * partial_pct // 100
        unused = fee * unused_pct // 100
        clauses = (
            ((("plan", "eq", "monthly"),), _const(0)),
            ((("days_member", "le", grace), ("benefits_used", "eq", "no")), _const(fee)),
            ((("days_member", "le", partial_days),), _const(partial)),
            ((("benefits_used", "eq", "no"),), _const(unused)),
        )
        notes = (f"The annual {tname} fee is {money(fee)}; {money(partial)} is {partial_pct}% of it and "
                 f"{money(unused)} is {unused_pct}% of it. Monthly plans can be cancelled at any time.")
        out.append(_rule(
            f"membership-cancellation-{tier}", "membership", "membership_cancellation",
            f"Membership cancellation: {tname}",
            f"Refund of the annual {tname} membership fee when a member cancels.", "membership_refund", "money",
            (("tier", tier),), clauses, _const(0), _money_outcome("no refund ($0)", "a refund of {m}"), notes,
            params=(("annual_fee", fee),),
        ))
    return out


def _bonus_rule(bonus: dict) -> PolicyRule:
    clauses = (
        ((("tier", "eq", "premium"),), _const(bonus["premium"])),
        ((("tier", "eq", "plus"),), _const(bonus["plus"])),
    )
    return _rule(
        "membership-return-bonus", "membership", "return_bonus", "Membership return bonus",
        "Paid members get extra days on the return window of every department.", "return_bonus_days", "days",
        (), clauses, _const(0), _unit_outcome(_extra_days),
    )


def _slug(s: str) -> str:
    return s.replace(" & ", "-").replace(" ", "-").replace("_", "-")


def generate_policy(rng: np.random.Generator) -> StorePolicy:
    """A store policy of 64 rules over returns, shipping, pricing, membership and warranty,
    every parameter drawn from `rng`."""
    dr = _Draws(rng)
    windows = {d: dr.pick(WINDOW_CHOICES[d]) for d in DEPARTMENTS}
    plus = dr.pick((7, 10, 14, 15))
    bonus = {"standard": 0, "plus": plus, "premium": plus + dr.pick((7, 10, 15, 16))}
    final_sale = {}
    for d in DEPARTMENTS:
        pool, lo, hi = FINAL_SALE_POOL[d]
        final_sale[d] = dr.subset(pool, dr.between(lo, hi))
    rules = (
        _return_rules(dr, windows, bonus, final_sale)
        + _restocking_rules(dr)
        + _return_shipping_rules(dr)
        + _refund_method_rules(dr)
        + _refund_time_rules(dr)
        + _shipping_fee_rules(dr)
        + _delivery_rules(dr)
        + _price_protection_rules(dr)
        + _price_match_rules(dr)
        + _points_rules(dr)
        + _cancellation_rules(dr)
        + [_bonus_rule(bonus)]
        + _warranty_rules(dr)
    )
    return StorePolicy(
        rules=rules,
        return_windows=windows,
        membership_bonus_days=bonus,
        non_returnable_l3=frozenset(leaf for d in DEPARTMENTS for leaf in final_sale[d]),
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
    data = dict(rule.data)
    if data["question"] != ctx.get("question"):
        return False
    return all(ctx.get(slot) == value for slot, value in data["scope"])


def evaluate(rule: PolicyRule, ctx: dict):
    """(answer, deciding case number) of `rule` on the question context `ctx`; None when the
    rule does not apply (another question or scope); (UNKNOWN, case) when a case up to the
    deciding one needs a slot the context lacks."""
    if not applies(rule, ctx):
        return None
    data = dict(rule.data)
    try:
        for i, (atoms, outcome) in enumerate(data["clauses"], 1):
            if all(_holds(a, ctx) for a in atoms):
                return outcome_value(outcome, ctx), i
        return outcome_value(data["default"], ctx), len(data["clauses"]) + 1
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


def _solve_int(spec: SlotSpec, cons: list, rng: np.random.Generator, p_edge: float, scale: int):
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


def _item_for(dept: str, exclude: frozenset, rng: np.random.Generator) -> str:
    leaves = [x for x in DEPARTMENT_LEAVES[dept] if x not in exclude]
    return leaves[int(rng.integers(len(leaves)))]


def _try_context(rule: PolicyRule, depth: int, rng: np.random.Generator, p_edge: float,
                 policy: StorePolicy) -> dict | None:
    data = dict(rule.data)
    clauses = data["clauses"]
    cons: dict[str, list] = {}
    for atoms, _ in clauses[: depth - 1]:  # these cases must NOT hold: one atom false
        slot, op, val = atoms[int(rng.integers(len(atoms)))]
        cons.setdefault(slot, []).append((op, val, False))
    if depth <= len(clauses):
        for slot, op, val in clauses[depth - 1][0]:  # the deciding case holds
            cons.setdefault(slot, []).append((op, val, True))
    ctx: dict = {"question": data["question"]}
    ctx.update(data["scope"])
    for slot in _needed_slots(rule, depth):
        spec = SLOTS[slot]
        c = cons.get(slot, [])
        if slot in ctx:  # a scope slot: it must already satisfy its cases
            if not all(_holds((slot, op, val), ctx) == t for op, val, t in c):
                return None
            continue
        if spec.kind == "item":
            dept = ctx["department"]
            ok = [x for x in DEPARTMENT_LEAVES[dept] if all(_holds(("i", op, val), {"i": x}) == t for op, val, t in c)]
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
                 p_edge: float = 0.0, tries: int = 8) -> PolicyQuestion | None:
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


def sample_question(policy: StorePolicy, depth: int, rng: np.random.Generator, p_edge: float = 0.0,
                    families: tuple[str, ...] | None = None) -> PolicyQuestion:
    """A question whose answer depends on exactly the first `depth` cases of one rule, drawn
    uniformly among the rules deep enough (`depth` is capped at the deepest rule). Numeric
    slots sit on a case's threshold with probability `p_edge`. Every item question names a
    department and a leaf of it (a returnable one unless a case is about final sale)."""
    rules = [r for r in policy.rules if families is None or r.param("family") in families]
    if not rules:
        raise ValueError("no policy rules to ask about")
    depth = max(1, min(depth, max(max_depth(r) for r in rules)))
    while depth >= 1:
        candidates = [r for r in rules if max_depth(r) >= depth]
        for j in rng.permutation(len(candidates)):
            q = question_for(policy, candidates[int(j)], depth, rng, p_edge)
            if q is not None:
                return q
        depth -= 1
    raise RuntimeError("no policy question could be generated")
