"""The per-episode world: the shared read-only catalog plus a small copy-on-write overlay.

The overlay holds everything an episode may change or add: stock changes, synthesized
variants, the cart, the shopper's orders and returns, the store policy, the visit history
and a simulated clock. Creating a world is O(1) in catalog size; nothing here copies the
catalog. Tools (`ecomrlve.envs.tools`) are the only code that mutates a world during an episode.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping, Sequence

import numpy as np

from .catalog import ATTRIBUTE_COLUMNS, CatalogLike
from .rng import stable_digest

# --------------------------------------------------------------------------- clock

EPOCH = dt.datetime(2026, 1, 1, 9, 0, 0)
MINUTES_PER_TURN = 2


@dataclass
class SimClock:
    """Episode time. Starts at a seed-derived instant in 2026 and advances a fixed amount
    per agent turn; never reads the wall clock."""

    start: dt.datetime
    turn: int = 0

    @classmethod
    def from_rng(cls, rng: np.random.Generator) -> "SimClock":
        offset_min = int(rng.integers(0, 300 * 24 * 60))
        return cls(start=EPOCH + dt.timedelta(minutes=offset_min))

    def now(self) -> dt.datetime:
        return self.start + dt.timedelta(minutes=MINUTES_PER_TURN * self.turn)

    def today(self) -> dt.date:
        return self.now().date()


# --------------------------------------------------------------------------- variants

# The attribute a product's variants differ on, by top-level department, most natural first.
VARIANT_AXES: dict[str, tuple[str, ...]] = {
    "electronics": ("connector_type", "wattage", "capacity", "screen_size", "color"),
    "clothing": ("size", "color"),
    "home & kitchen": ("material", "capacity", "color", "size"),
    "beauty": ("scent", "size", "color"),
    "grocery": ("flavor", "size"),
    "toys": ("color", "age_range"),
    "sports & outdoors": ("size", "color", "capacity"),
    "office": ("color", "size"),
    "tools": ("wattage", "size", "color", "material"),
}
DEFAULT_VARIANT_AXES: tuple[str, ...] = ("size", "color", "material", "capacity")
VARIANTS_PER_PRODUCT = 3  # the product's own value and two alternatives, when the leaf has them
ORDERED_LADDERS: tuple[tuple[str, ...], ...] = (("XS", "S", "M", "L", "XL", "XXL", "3XL"),)
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(.*)$")


@dataclass(frozen=True)
class Variant:
    variant_id: str
    product_id: str
    attribute: str
    value: str
    price: float


def variant_axis(catalog: CatalogLike, row: int) -> str | None:
    """The attribute the variants of `row` differ on, or None when its leaf offers no choice.

    Only attributes with at least two values in the leaf's vocabulary
    (`CatalogLike.leaf_vocabulary`) qualify. Among them: the department's natural axes
    (`VARIANT_AXES`, in order) the product carries, then any other attribute it carries, then,
    for a product that carries none, the first qualifying attribute of its leaf in that same
    order (its variants then take values from the leaf's list)."""
    vocab = catalog.leaf_vocabulary(catalog.value("category_l3", row) or "")
    choices = _axis_choices(vocab, (catalog.value("category_l1", row) or "").lower())
    for attribute in choices:
        if catalog.value(attribute, row) in vocab[attribute]:
            return attribute
    return choices[0] if choices else None


_AXIS_CHOICES: dict[tuple[int, str], tuple[Mapping, tuple[str, ...]]] = {}


def _axis_choices(vocab: Mapping[str, Sequence[str]], dept: str) -> tuple[str, ...]:
    """The attributes with at least two values in the leaf vocabulary `vocab`, ranked as
    `variant_axis` says. A pure function of its arguments, memoised per vocabulary object (a
    catalog derives each leaf's once; the memo holds it, so its id is never reused)."""
    key = (id(vocab), dept)
    hit = _AXIS_CHOICES.get(key)
    if hit is not None and hit[0] is vocab:
        return hit[1]
    ranked = dict.fromkeys(VARIANT_AXES.get(dept, DEFAULT_VARIANT_AXES) + ATTRIBUTE_COLUMNS)
    choices = tuple(a for a in ranked if len(vocab.get(a, ())) >= 2)
    if len(_AXIS_CHOICES) < 8192:
        _AXIS_CHOICES[key] = (vocab, choices)
    return choices


def neighbour_values(vocabulary: Sequence[str], value: str, n: int, salt: str) -> list[str]:
    """Up to `n` values of `vocabulary` other than `value`, most plausible alternatives first,
    deterministic.

    Values on an ordered ladder (apparel sizes) come by rung distance from `value`; numbers
    with the same unit ("65W", "128GB", shoe size "9.5") by numeric distance; the rest follow
    in a digest order keyed by `salt`."""
    near, rest = _near_values(tuple(vocabulary), value)
    if len(near) >= n:
        return list(near[:n])
    return (list(near) + sorted(rest, key=lambda v: stable_digest(f"{salt}|{v}")))[:n]


@functools.lru_cache(maxsize=1 << 16)
def _near_values(vocabulary: tuple[str, ...], value: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the values of `vocabulary` near `value` on a ladder or by number, nearest first; the
    values neither near nor `value`) for `neighbour_values`: a pure function, memoised."""
    others = [v for v in dict.fromkeys(vocabulary) if v and v != value]
    near: list[str] = []
    for ladder in ORDERED_LADDERS:
        if value in ladder:
            i = ladder.index(value)
            near = sorted((v for v in others if v in ladder), key=lambda v: (abs(ladder.index(v) - i), ladder.index(v)))
    m = _NUMBER.match(value)
    if not near and m:
        unit, x = m.group(2), float(m.group(1))
        same_unit = [(abs(float(mv.group(1)) - x), v) for v in others if (mv := _NUMBER.match(v)) and mv.group(2) == unit]
        near = [v for _, v in sorted(same_unit)]
    return tuple(near), tuple(v for v in others if v not in near)


def variant_values(catalog: CatalogLike, row: int, attribute: str, salt: str) -> list[str]:
    """The values the variants of `row` take on `attribute`, sorted: the product's own value
    and its nearest alternatives in the leaf's vocabulary, or (for a product without a value
    there) `VARIANTS_PER_PRODUCT` values of the leaf's list in a digest order keyed by `salt`."""
    vocab = catalog.leaf_vocabulary(catalog.value("category_l3", row) or "").get(attribute, ())
    base = catalog.value(attribute, row)
    if base in vocab:
        return sorted([base, *neighbour_values(vocab, base, VARIANTS_PER_PRODUCT - 1, salt)])
    return sorted(neighbour_values(vocab, "", VARIANTS_PER_PRODUCT, salt))


# --------------------------------------------------------------------------- cart

@dataclass
class CartLine:
    line_id: str
    product_id: str
    variant_id: str | None
    quantity: int
    unit_price: float

    def as_dict(self, title: str) -> dict:
        return {
            "line_id": self.line_id,
            "product_id": self.product_id,
            "variant_id": self.variant_id,
            "title": title,
            "quantity": self.quantity,
            "unit_price": self.unit_price,
        }


# --------------------------------------------------------------------------- orders & returns

OrderStatus = Literal["placed", "shipped", "in_transit", "delivered", "cancelled", "returned"]
ORDER_STATUSES: tuple[str, ...] = ("placed", "shipped", "in_transit", "delivered", "cancelled", "returned")
RETURN_REASONS: tuple[str, ...] = (
    "damaged", "defective", "wrong_item", "does_not_fit", "not_as_described", "no_longer_needed", "other",
)
RETURN_METHODS: tuple[str, ...] = ("mail", "drop_off", "pickup")


@dataclass
class OrderLine:
    line_id: str
    product_id: str
    variant_id: str | None
    title: str
    category_l1: str
    category_l3: str
    quantity: int
    unit_price: float
    condition: str = "new"  # the item's condition now, as the shopper would describe it


@dataclass
class Order:
    order_id: str
    placed_at: dt.date
    status: str
    lines: list[OrderLine]
    eta: dt.date | None = None
    delivered_at: dt.date | None = None
    tracking_number: str | None = None
    carrier: str | None = None

    @property
    def total(self) -> float:
        cents = sum(round(line.unit_price * 100) * line.quantity for line in self.lines)
        return cents / 100

    def line(self, line_id: str) -> OrderLine | None:
        return next((ln for ln in self.lines if ln.line_id == line_id), None)


@dataclass
class ReturnRecord:
    return_id: str
    order_id: str
    line_id: str
    kind: Literal["refund", "exchange"]
    reason: str | None
    method: str | None
    new_product_id: str | None = None
    new_variant_id: str | None = None
    created_at: str = ""


# --------------------------------------------------------------------------- store policy

@dataclass(frozen=True)
class PolicyRule:
    """One store-policy rule. `text` is what `policy_search` shows; the structured fields
    let code decide answers (E_POLICY) and enforce returns. `render_text` makes `text` on
    first access (a pure function of the rule's fields: most episodes never show a rule, so
    reset does not pay for the text)."""

    rule_id: str
    topic: str  # returns | shipping | pricing | membership | warranty
    title: str
    render_text: Callable[[], str] = field(repr=False, compare=False)
    data: tuple[tuple[str, object], ...] = ()  # structured parameters (immutable pairs)

    @functools.cached_property
    def text(self) -> str:
        return self.render_text()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_params", dict(self.data))  # `param` is called ~100 times per rule and reset

    def param(self, key: str, default=None):
        return self._params.get(key, default)


@dataclass
class StorePolicy:
    """The store's rules. `return_window(line, tier)` is the single source the return tools
    and the verifiers use for eligibility. Rules are made by `make_rule(index)` on first
    need, each once: `rule_at(i)` makes one, `rules` all of them in `rule_ids` order
    (episodes that only check returns never need the 64 rules, and a policy question needs
    only the rules of its type)."""

    return_windows: dict[str, int] = field(default_factory=dict)  # category_l1 (lower) -> days
    default_return_window: int = 30
    membership_bonus_days: dict[str, int] = field(default_factory=dict)  # tier -> extra days
    non_returnable_l3: frozenset[str] = frozenset()
    rule_ids: tuple[str, ...] = ()
    make_rule: Callable[[int], PolicyRule] | None = field(default=None, repr=False, compare=False)
    _made: dict[int, PolicyRule] = field(default_factory=dict, repr=False, compare=False)

    def rule_at(self, index: int) -> PolicyRule:
        rule = self._made.get(index)
        if rule is None:
            rule = self._made[index] = self.make_rule(index)
        return rule

    @functools.cached_property
    def rules(self) -> list[PolicyRule]:
        return [self.rule_at(i) for i in range(len(self.rule_ids))]

    def return_window(self, line: OrderLine, tier: str = "standard") -> int:
        base = self.return_windows.get(line.category_l1.lower(), self.default_return_window)
        return base + self.membership_bonus_days.get(tier, 0)

    def is_returnable_category(self, line: OrderLine) -> bool:
        return line.category_l3 not in self.non_returnable_l3


# --------------------------------------------------------------------------- world

@dataclass
class World:
    """One episode's mutable state over the shared catalog."""

    catalog: CatalogLike
    clock: SimClock
    stock: dict[int, int] = field(default_factory=dict)  # row -> stock override
    variants: dict[str, list[Variant]] = field(default_factory=dict)  # product_id -> variants
    variant_stock: dict[str, int] = field(default_factory=dict)  # variant_id -> stock override
    cart: list[CartLine] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    returns: list[ReturnRecord] = field(default_factory=list)
    policy: StorePolicy = field(default_factory=StorePolicy)
    membership_tier: str = "standard"
    visit_history: list[tuple[str, str]] = field(default_factory=list)  # (product_id, viewed_at iso)
    scheduled_stockouts: list[tuple[int, int]] = field(default_factory=list)  # (turn, row)
    _counters: dict[str, int] = field(default_factory=dict)

    # ---- ids
    def next_id(self, prefix: str) -> str:
        n = self._counters.get(prefix, 0) + 1
        self._counters[prefix] = n
        return f"{prefix}{n}"

    # ---- products & stock
    def row(self, product_id: str) -> int | None:
        return self.catalog.row_of(product_id)

    def stock_of(self, row: int) -> int:
        if row in self.stock:
            return self.stock[row]
        return int(self.catalog.numeric("stock")[row])

    def in_stock(self, row: int) -> bool:
        return self.stock_of(row) > 0

    def stock_mask(self, rows: np.ndarray, exclude_pending: bool = False) -> np.ndarray:
        """`in_stock` for every row of `rows` (ascending), vectorised over the catalog's stock
        column plus this overlay; with `exclude_pending`, rows scheduled to sell out count as
        sold out already. O(len(rows) + overrides)."""
        stock = np.array(self.catalog.numeric("stock")[rows], dtype=np.int64)
        overrides = list(self.stock.items())
        if exclude_pending:
            overrides += [(r, 0) for _, r in self.scheduled_stockouts]
        for r, units in overrides:
            i = int(np.searchsorted(rows, r))
            if i < len(rows) and int(rows[i]) == r:
                stock[i] = units
        return stock > 0

    def stock_mask_any_order(self, rows: np.ndarray, exclude_pending: bool = False) -> np.ndarray:
        """`in_stock` for every row of `rows` (any order, repeats allowed), as `stock_mask`
        decides it. O(len(rows) + overrides)."""
        rows = np.asarray(rows, dtype=np.int64)
        live = np.asarray(self.catalog.numeric("stock")[rows]) > 0
        overrides = dict(self.stock)
        if exclude_pending:
            overrides.update((r, 0) for _, r in self.scheduled_stockouts)
        if overrides:
            for i in np.flatnonzero(np.isin(rows, np.fromiter(overrides, dtype=np.int64, count=len(overrides)))):
                live[i] = overrides[int(rows[i])] > 0
        return live

    def overlay_rows(self) -> set[int]:
        """The rows whose stock this episode overrides or has scheduled to sell out: every
        other row is in stock exactly when the catalog says so."""
        return set(self.stock) | {r for _, r in self.scheduled_stockouts}

    def set_stock(self, row: int, units: int) -> None:
        self.stock[row] = int(units)

    def apply_scheduled_stockouts(self, turn: int) -> list[int]:
        """Zero the stock of rows scheduled at or before `turn`; return those rows."""
        due = [row for t, row in self.scheduled_stockouts if t <= turn]
        self.scheduled_stockouts = [(t, row) for t, row in self.scheduled_stockouts if t > turn]
        for row in due:
            self.set_stock(row, 0)
            for v in self.variants.get(self.catalog.product_id(row), []):
                self.variant_stock[v.variant_id] = 0
        return due

    # ---- variants
    def variants_of(self, product_id: str) -> list[Variant]:
        """The product's variants; synthesized once per episode and then stable. They differ
        on `variant_axis` and take values from the product's leaf vocabulary only
        (`variant_values`)."""
        if product_id in self.variants:
            return self.variants[product_id]
        row = self.row(product_id)
        out: list[Variant] = []
        if row is not None:
            attr = variant_axis(self.catalog, row)
            if attr is not None:
                values = variant_values(self.catalog, row, attr, product_id)
                price = float(self.catalog.numeric("price")[row])
                out = [Variant(f"{product_id}-v{i + 1}", product_id, attr, v, price) for i, v in enumerate(values)]
        self.variants[product_id] = out
        return out

    def variant(self, product_id: str, variant_id: str) -> Variant | None:
        return next((v for v in self.variants_of(product_id) if v.variant_id == variant_id), None)

    def variant_in_stock(self, product_id: str, variant_id: str | None) -> bool:
        row = self.row(product_id)
        if row is None or not self.in_stock(row):
            return False
        return variant_id is None or self.variant_stock.get(variant_id, 1) > 0

    # ---- cart
    def cart_line(self, line_id: str) -> CartLine | None:
        return next((ln for ln in self.cart if ln.line_id == line_id), None)

    def cart_units(self) -> dict[tuple[str, str | None], int]:
        """(product_id, variant_id) -> total quantity in the cart."""
        units: dict[tuple[str, str | None], int] = {}
        for line in self.cart:
            key = (line.product_id, line.variant_id)
            units[key] = units.get(key, 0) + line.quantity
        return units

    # ---- orders
    def order(self, order_id: str) -> Order | None:
        return next((o for o in self.orders if o.order_id == order_id), None)

    def returned_lines(self) -> dict[tuple[str, str], ReturnRecord]:
        return {(r.order_id, r.line_id): r for r in self.returns}
