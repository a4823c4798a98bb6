"""The shopper's order history, and how a shopper talks about it.

`generate_orders(catalog, clock, rng, n_orders, ...)` builds H(d) = 1 + d//2 orders ONCE at
reset; the environment stores them in `world.orders`, where both its hidden goal and the
tools (`order_list`, `order_get`, the return tools) read them. Everything is drawn from the
`rng` the caller passes (one named episode stream) and dated by the episode's `SimClock`, so
the history is a pure function of (env_id, difficulty, seed). Cost is O(lines), never
O(catalog): product rows are sampled by index.

Each order has a status in `ORDER_STATUSES` and a consistent timeline relative to the
clock's today:

    placed      placed 1-2 days ago, eta 3-8 days ahead, no carrier yet
    shipped     placed 1-4 days ago, eta 1-5 days ahead, carrier + tracking number
    in_transit  placed 2-7 days ago, eta 0-3 days ahead, carrier + tracking number
    delivered   delivered 0-119 days ago, placed 2-5 days before that, carrier + tracking
    cancelled   placed 1-90 days ago, nothing shipped
    returned    delivered 15-149 days ago and sent back (no return record: the status says it)

Placed dates are strictly before today and distinct across the episode's orders (so "my
order from Tuesday" names one order; a date drawn twice is redrawn, then moved earlier). Order ids are "W" + 7 digits from the rng, unique;
order-line ids are "OL1".."OLn" from the world's id counter (unique in the episode, also
when a journey generates orders twice). Lines (1-3 per order) carry the catalog's title
(plus the variant, when the product has variants), unit price, and category_l1/l3 (which the
store policy's return windows key on).

`OrderSpec` pins an order's status, delivery age or lines: environments use it to place
their target (e.g. a line delivered exactly `window + 1` days ago). The helpers below
describe lines and orders the way a shopper would ("the blue Acme kettle I bought about a
month ago", "my order from Tuesday") and only return descriptions that match exactly one
line / order of the world. `mentions()` finds which orders and lines an agent's text
names; `recognised()` keeps what a customer can recognise (its items by title, an order id
its own reference gave it) for the shopper's confirm / deny reactions (`OrderShopper`), and
flags ids it cannot know, which it answers with `UNKNOWN_ID_REPLY`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .catalog import CatalogLike
from .constraints import attribute_phrase
from .rng import WeightedIndex
from .shopper import TemplateShopper, Utterance, merge_utterances, names_slot, singular
from .world import ORDER_STATUSES, Order, OrderLine, SimClock, World

CARRIERS: tuple[str, ...] = ("UPS", "FedEx", "USPS", "DHL")
OPEN_STATUSES: tuple[str, ...] = ("placed", "shipped", "in_transit")
# Status mix of the orders nobody pinned (same order as ORDER_STATUSES).
STATUS_WEIGHTS: tuple[float, ...] = (0.10, 0.12, 0.12, 0.45, 0.10, 0.11)
_STATUS_INDEX = WeightedIndex(STATUS_WEIGHTS)
MAX_LINES = 3
MAX_TRIES = 64
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass
class OrderSpec:
    """What an environment pins about one order; None fields are drawn at random.
    `lines` are prebuilt lines (`make_line`) that lead the order; 0..MAX_LINES-len extra
    random lines follow unless `n_lines` says how many lines in total. After
    `generate_orders`, `order` is the generated order."""

    status: str | None = None
    delivered_days_ago: int | None = None
    lines: list[OrderLine] = field(default_factory=list)
    n_lines: int | None = None
    order: Order | None = None


# --------------------------------------------------------------------------- lines

_VARIANT_SUFFIX = re.compile(r" \(([a-z][a-z ]*): ([^()]*)\)$")


def variant_suffix(attribute: str, value: str) -> str:
    return f" ({attribute.replace('_', ' ')}: {value})"


def make_line(catalog: CatalogLike, rng: np.random.Generator, row: int, world: World | None = None,
              quantity: int | None = None) -> OrderLine:
    """An order line for catalog row `row` (line id assigned later by `generate_orders`).
    A product with variants gets one of them (via `world.variants_of`)."""
    pid = catalog.product_id(row)
    title = catalog.value("title", row) or pid
    variant_id = None
    if world is not None:
        variants = world.variants_of(pid)
        if variants:
            v = variants[int(rng.integers(len(variants)))]
            variant_id = v.variant_id
            title += variant_suffix(v.attribute, v.value)
    if quantity is None:
        quantity = 1 if rng.random() < 0.75 else int(rng.integers(2, 4))
    return OrderLine(
        line_id="",
        product_id=pid,
        variant_id=variant_id,
        title=title,
        category_l1=catalog.value("category_l1", row) or "",
        category_l3=catalog.value("category_l3", row) or "",
        quantity=quantity,
        unit_price=round(float(catalog.numeric("price")[row]), 2),
    )


def random_row(catalog: CatalogLike, rng: np.random.Generator) -> int:
    """A uniformly random catalog row, O(1)."""
    return int(rng.integers(len(catalog)))


def sibling_row(catalog: CatalogLike, rng: np.random.Generator, row: int, avoid_rows: set[int] = frozenset(),
                in_stock: bool = False, other_brand: bool = False) -> int | None:
    """Another product of the same leaf category (optionally in stock, of another brand)."""
    rows = catalog.category_rows(catalog.value("category_l3", row))
    if len(rows) == 0:
        return None
    stock = catalog.numeric("stock")
    brand = catalog.value("brand", row)
    for _ in range(MAX_TRIES):
        r = int(rows[int(rng.integers(len(rows)))])
        if r == row or r in avoid_rows or (in_stock and stock[r] <= 0):
            continue
        if other_brand and catalog.value("brand", r) == brand:
            continue
        return r
    return None


# --------------------------------------------------------------------------- orders

def _days(n: int) -> dt.timedelta:
    return dt.timedelta(days=int(n))


def _tracking(rng: np.random.Generator, carrier: str) -> str:
    digits = lambda n: "".join(str(int(x)) for x in rng.integers(0, 10, n))  # noqa: E731
    if carrier == "UPS":
        alnum = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
        return "1Z" + "".join(alnum[int(i)] for i in rng.integers(0, len(alnum), 16))
    if carrier == "FedEx":
        return digits(12)
    if carrier == "USPS":
        return "94" + digits(20)
    return "JD" + digits(16)


def _timeline(rng: np.random.Generator, today: dt.date, status: str, delivered_days_ago: int | None) -> dict:
    """Dates of an order with `status`, relative to `today`."""
    out: dict = {"eta": None, "delivered_at": None}
    if status == "placed":
        out["placed_at"] = today - _days(rng.integers(1, 3))
        out["eta"] = today + _days(rng.integers(3, 9))
    elif status == "shipped":
        out["placed_at"] = today - _days(rng.integers(1, 5))
        out["eta"] = today + _days(rng.integers(1, 6))
    elif status == "in_transit":
        out["placed_at"] = today - _days(rng.integers(2, 8))
        out["eta"] = today + _days(rng.integers(0, 4))
    elif status in ("delivered", "returned"):
        if delivered_days_ago is None:
            delivered_days_ago = int(rng.integers(0, 120) if status == "delivered" else rng.integers(15, 150))
        out["delivered_at"] = today - _days(delivered_days_ago)
        out["placed_at"] = out["delivered_at"] - _days(rng.integers(2, 6))
    elif status == "cancelled":
        out["placed_at"] = today - _days(rng.integers(1, 91))
    else:
        raise ValueError(f"unknown order status {status!r}; known: {', '.join(ORDER_STATUSES)}")
    return out


def generate_orders(
    catalog: CatalogLike,
    clock: SimClock,
    rng: np.random.Generator,
    n_orders: int,
    *,
    world: World | None = None,
    specs: Sequence[OrderSpec] = (),
    existing: Sequence[Order] = (),
) -> list[Order]:
    """`n_orders` orders (at least `len(specs)`), most recently placed first.

    The first orders follow `specs` (each spec's `order` is set to its order); the rest are
    random. `world` (optional) supplies product variants and the line-id counter;
    `existing` orders (already in the world) keep their ids and placed dates unique."""
    if n_orders < len(specs):
        raise ValueError(f"n_orders={n_orders} < {len(specs)} pinned specs")
    today = clock.today()
    taken_ids = {o.order_id for o in existing}
    taken_dates = {o.placed_at for o in existing}
    specs = list(specs) + [OrderSpec() for _ in range(n_orders - len(specs))]
    orders: list[Order] = []
    for spec in specs:
        status = spec.status
        if status is None:
            status = ORDER_STATUSES[_STATUS_INDEX(rng)]
        for _ in range(8):  # distinct placed dates: redraw a few times, then place it earlier
            times = _timeline(rng, today, status, spec.delivered_days_ago)
            if times["placed_at"] not in taken_dates:
                break
        while times["placed_at"] in taken_dates:
            times["placed_at"] -= _days(1)
        taken_dates.add(times["placed_at"])
        while True:
            order_id = f"W{int(rng.integers(1_000_000, 10_000_000))}"
            if order_id not in taken_ids:
                taken_ids.add(order_id)
                break
        lines = list(spec.lines)
        n_lines = spec.n_lines if spec.n_lines is not None else max(len(lines), int(rng.integers(1, MAX_LINES + 1)))
        while len(lines) < n_lines:
            lines.append(make_line(catalog, rng, random_row(catalog, rng), world))
        carrier = tracking = None
        if status in ("shipped", "in_transit", "delivered", "returned"):
            carrier = CARRIERS[int(rng.integers(len(CARRIERS)))]
            tracking = _tracking(rng, carrier)
        order = Order(order_id=order_id, placed_at=times["placed_at"], status=status, lines=lines,
                      eta=times["eta"], delivered_at=times["delivered_at"], tracking_number=tracking,
                      carrier=carrier)
        spec.order = order
        orders.append(order)
    orders.sort(key=lambda o: o.placed_at, reverse=True)
    counter = iter(range(1, 10**9))
    for order in orders:
        for line in order.lines:
            line.line_id = world.next_id("OL") if world is not None else f"OL{next(counter)}"
    return orders


# --------------------------------------------------------------------------- how a shopper says it

def ago_phrase(days: int) -> str:
    """A loose, truthful 'when' for something `days` days ago."""
    if days <= 0:
        return "today"
    if days == 1:
        return "yesterday"
    if days <= 6:
        return "a few days ago"
    if days <= 13:
        return "last week"
    if days <= 24:
        return "a couple of weeks ago"
    if days <= 45:
        return "about a month ago"
    if days <= 75:
        return "about two months ago"
    if days <= 105:
        return "about three months ago"
    return "a few months ago"


def date_phrase(day: dt.date, today: dt.date) -> str:
    """An exact, unambiguous day: 'yesterday', 'on Tuesday' (2-6 days ago), 'on March 3'."""
    days = (today - day).days
    if days == 1:
        return "yesterday"
    if 2 <= days <= 6:
        return f"on {WEEKDAYS[day.weekday()]}"
    return f"on {MONTHS[day.month - 1]} {day.day}"


def line_features(world: World, line: OrderLine) -> dict[str, str | None]:
    """What a shopper remembers of a line: leaf category, brand, color (the variant's color
    when the variant differs on color)."""
    row = world.row(line.product_id)
    color = world.catalog.value("color", row) if row is not None else None
    if line.variant_id:
        v = world.variant(line.product_id, line.variant_id)
        if v is not None and v.attribute == "color":
            color = v.value
    brand = world.catalog.value("brand", row) if row is not None else None
    return {"leaf": line.category_l3, "brand": brand, "color": color}


# description kinds: which features name the item (the leaf is always part of it)
DESCRIPTIONS: tuple[tuple[str, ...], ...] = ((), ("color",), ("brand",), ("brand", "color"))


def _matches(feat: dict, target: dict, keys: tuple[str, ...]) -> bool:
    return feat["leaf"] == target["leaf"] and all(feat[k] == target[k] for k in keys)


def _item_phrase(target: dict, keys: tuple[str, ...]) -> str:
    words = ["the"]
    if "color" in keys:
        words.append(str(target["color"]).lower())
    if "brand" in keys:
        words.append(str(target["brand"]))
    words.append(singular(target["leaf"]))
    return " ".join(words)


def unique_item_phrases(world: World, order: Order, line: OrderLine, scope: str = "line") -> list[str]:
    """Descriptions ('the blue Acme kettle') that match `line` and, with scope 'line', no
    other line of the world's orders; with scope 'order', no line of another order."""
    target = line_features(world, line)
    leaf = line.category_l3  # every description names the leaf: only lines of the same leaf can clash
    feats = [(o, ln, line_features(world, ln)) for o in world.orders for ln in o.lines if ln.category_l3 == leaf]
    out = []
    for keys in DESCRIPTIONS:
        if any(target[k] is None for k in keys):
            continue
        if scope == "line":
            clash = [ln for o, ln, f in feats if ln is not line and _matches(f, target, keys)]
        else:
            clash = [ln for o, ln, f in feats if o is not order and _matches(f, target, keys)]
        if not clash:
            out.append(_item_phrase(target, keys))
    return out


def item_reference(world: World, order: Order, line: OrderLine, rng: np.random.Generator, indirect: bool) -> str:
    """How the shopper names the item it means; always matches exactly this line.

    Direct: the product title (+ variant), with the order id when the title is not unique.
    Indirect: features + when it was bought ('the blue Acme kettle I bought about a month
    ago'); when features cannot single it out, the exact order date does."""
    today = world.clock.today()
    if indirect:
        phrases = unique_item_phrases(world, order, line, "line")
        if phrases:
            phrase = phrases[int(rng.integers(len(phrases)))]
            return f"{phrase} I bought {ago_phrase((today - order.placed_at).days)}"
        same_day = [ln for ln in order.lines if ln is not line and ln.category_l3 == line.category_l3]
        same_date = [o for o in world.orders if o is not order and o.placed_at == order.placed_at]
        if not same_day and not same_date:
            return f"the {singular(line.category_l3)} I ordered {date_phrase(order.placed_at, today)}"
    same_title = [ln for o in world.orders for ln in o.lines if ln is not line and ln.title == line.title]
    quoted = quoted_title(line.title)
    if same_title:
        return f"{quoted} from order {order.order_id}"
    return quoted


def quoted_title(title: str) -> str:
    """How the shopper quotes a line title: the product title in quotes, then the variant
    said the way people say it ('the "Acme Mug" in Black'), never the raw "(color: Black)"."""
    m = _VARIANT_SUFFIX.search(title)
    if m is None:
        return f'the "{title}"'
    attribute = m.group(1).replace(" ", "_")
    return f'the "{title[: m.start()]}" {attribute_phrase(attribute, m.group(2))}'


def order_reference(world: World, order: Order, rng: np.random.Generator, indirect: bool) -> str:
    """How the shopper names an order: by id, or by an item in it / the day it was placed."""
    if not indirect:
        return f"order {order.order_id}"
    today = world.clock.today()
    options = []
    for line in order.lines:
        options += [f"my order with {p}" for p in unique_item_phrases(world, order, line, "order")]
    if not any(o is not order and o.placed_at == order.placed_at for o in world.orders):
        options.append(f"my order from {date_phrase(order.placed_at, today).removeprefix('on ')}")
    if not options:
        return f"order {order.order_id}"
    return options[int(rng.integers(len(options)))]


# --------------------------------------------------------------------------- what the agent names

_ORDER_ID = re.compile(r"(?<![A-Za-z0-9])W\d{7}(?![A-Za-z0-9])")
_LINE_ID = re.compile(r"(?<![A-Za-z0-9])OL\d+(?![A-Za-z0-9])")


def _has_token(text: str, token: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-])", text) is not None


def mentions(text: str, orders: Sequence[Order]) -> tuple[list[str], list[tuple[str, str]]]:
    """(order ids, (order id, line id) pairs) named in `text`: order ids, line ids,
    product ids and full line titles, in the world's order."""
    order_ids = set(_ORDER_ID.findall(text))
    line_ids = set(_LINE_ID.findall(text))
    lower = text.lower()
    named_orders = [o.order_id for o in orders if o.order_id in order_ids]
    named_lines = []
    for o in orders:
        for ln in o.lines:
            said = ln.title and (ln.title.lower() in lower or quoted_title(ln.title).lower() in lower)
            if ln.line_id in line_ids or _has_token(text, ln.product_id) or said:
                named_lines.append((o.order_id, ln.line_id))
    return named_orders, named_lines


def known_ids(reference: str) -> frozenset[str]:
    """The order ids a shopper knows: those its own words (its goal's reference) contain."""
    return frozenset(_ORDER_ID.findall(reference))


def recognised(text: str, orders: Sequence[Order], known: frozenset[str]) -> tuple[list[str], list[tuple[str, str]], bool]:
    """What a customer can recognise in the agent's `text`: (the order ids it knows that the
    text names, the (order id, line id) of every item the text names by its full title,
    whether the text names ids the customer cannot judge: order ids when it knows none,
    line ids, product ids). A customer knows what it bought, not the store's ids; one that
    knows its order id can tell that another order id is not it."""
    order_ids = set(_ORDER_ID.findall(text))
    lower = text.lower()
    named_orders = [o.order_id for o in orders if o.order_id in order_ids and known]
    named_lines = [(o.order_id, ln.line_id) for o in orders for ln in o.lines
                   if ln.title and ln.title.lower() in lower]
    unknown = bool(order_ids and not known) or bool(_LINE_ID.search(text)) or any(
        _has_token(text, ln.product_id) for o in orders for ln in o.lines)
    return named_orders, named_lines, unknown


UNKNOWN_ID_REPLY = "Sorry, I don't know order numbers."


# --------------------------------------------------------------------------- the shopper

@dataclass
class OrderShopper(TemplateShopper):
    """A template shopper that also reacts when an `ask_user` question names orders or
    items: `reference_hook(question, turn)` returns a confirm / deny reply or None. Slots
    the question asks for are still answered (merged into one message)."""

    reference_hook: Callable[[str, int], Utterance | None] | None = None

    @classmethod
    def adopt(cls, shopper: TemplateShopper, hook: Callable[[str, int], Utterance | None]) -> "OrderShopper":
        """Take over `shopper`'s state (shared `caused_turns` set included)."""
        return cls(rand=shopper.rand, p_noise=shopper.p_noise, slots=shopper.slots, omitted=shopper.omitted,
                   patience=shopper.patience, annoyance=shopper.annoyance, caused_turns=shopper.caused_turns,
                   quit=shopper.quit, question_excused=shopper.question_excused, reference_hook=hook)

    def say(self, clean: str, kind: str, slots: tuple[str, ...] = (), ids: tuple[str, ...] = ()) -> Utterance:
        """As `TemplateShopper.say`; order ids in the text count as mentioned (seen)."""
        found = tuple(i for i in dict.fromkeys(_ORDER_ID.findall(clean)) if i not in ids)
        return super().say(clean, kind, slots, ids + found)

    def answer(self, question: str, turn: int) -> Utterance:
        reply = self.reference_hook(question, turn) if self.reference_hook else None
        if reply is None:
            return super().answer(question, turn)
        q = question.lower()
        if any(names_slot(q, self.slots[n]) for n in self.omitted):
            return merge_utterances([reply, super().answer(question, turn)])
        return reply
