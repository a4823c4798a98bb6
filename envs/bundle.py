"""E_BUNDLE: equip a project (home office, camping, baking, ...) with one product per
required category, within a total budget.

Projects. `PROJECT_TEMPLATES` maps a project to leaf-category names (those of the
synthetic taxonomy, copied here because `envs` never imports `catalog_service`);
`PROJECT_KEYWORDS` are fallbacks for catalogs with other leaf names (Amazebay). At env
construction both are resolved against the leaves the catalog actually has
(`catalog.codes("category_l3")[1]`; cached per catalog, `resolve_projects`): a template
name matches a leaf when their normalised forms agree (case, punctuation and a light
plural ignored); when fewer than `MAX_S_REQ` template names match, leaves whose name
contains a keyword (whole words) are appended. Only leaves with in-stock products count.
A project is usable at a difficulty when it has >= S_req(d) such leaves; when none is,
the generic "shopping list" project (every leaf) is used, and when even that has fewer
leaves than S_req (a tiny catalog, or an axis override), the episode requires them all.

Hidden goal. S_req(d) = min(12, 3 + d//2) leaves drawn from the project (`rand("goal")`),
each with its rows (`catalog.category_rows`, cached) and its category path. Stated
constraints (`ecomrlve.envs.constraints.Constraint`) for n_c = min(S_req, (m(d) - 2) // 2) of the
categories, one each: a color or brand first (shuffled), else another attribute, taken
from an in-stock anchor product and kept only when it leaves >= 2 in-stock options and
actually excludes some. A total budget: per category a cheap-ish in-stock feasible price
(the q-quantile, q ~ U[0.05, max(0.12, 0.35 - 0.02 d)], tighter with d) summed, times
headroom U[1.05, 1.25], rounded up to a round amount; so the cheapest feasible bundle
always fits, and a bundle of typical prices often does not. All of this is vectorised over
the drawn leaves' rows only.

The shopper's opening names every category (always) and says the budget and each
constraint unless omitted with p_missing(d) (`shopper.plan_disclosure`); omitted ones
are answered via `ask_user` (or a question in the message text). Omissions are dropped at
reset when the oracle plan (ask + batched searches + answer, `_oracle_turns`) would not
fit in T_max(d) turns.

Mid-episode stock-out: with p_oos(d) (decided at reset) the first catalog_search that
shows a feasible in-stock product of a required category schedules the cheapest such
product to sell out at the next turn, only if its category keeps another feasible
in-stock option and the cheapest feasible bundle without it still fits the budget.

Verifier (`_score`), on the recommended ids (deduplicated, order kept) and the FINAL
world: an id covers category c when it is a product of c, meets c's constraints, is in
stock, and c is not covered yet. TP = covered categories; F1 = f1_score(TP, #ids,
S_req) (exact Fraction); total = sum of the recommended known products' prices in
integer cents;

    r_task = clip(2 F1 - 1 - 0.5 [total > budget], -1, 1)

`is_correct` iff F1 == 1 (one valid product per category, nothing else), total <=
budget and every recommended id appeared in a catalog_search result this episode.

Shopper reactions (`_react`): a text question without product ids is answered like
`ask_user`; proposed products (ids in the text) get, for the first problem found, "not
one of the things I need", the broken constraint (revealed if it was omitted), "sold
out", or "over my budget" (revealing the budget) for the proposed set; else a
confirmation. In a journey the shopper may raise the budget (`_switch_goal`); this only
relaxes, so every valid bundle stays valid.
"""

from __future__ import annotations

import math
import re
import weakref
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .actions import Answer
from .base import ShopEnv
from .catalog import ATTRIBUTE_COLUMNS, CATEGORY_SEP, CatalogLike
from .constraints import Constraint, code_of, compatible_rows
from .reward import TaskScore, f1_score
from .shopper import Slot, Utterance, fill, join_phrases, singular
from .stockout import SearchStockout

MAX_S_REQ = 12  # the S_req axis' ceiling; keyword fallbacks apply below it
MIN_CONSTRAINED_OPTIONS = 2  # in-stock options a stated constraint must leave
QUANTILE_LOW, QUANTILE_HIGH_D0, QUANTILE_HIGH_MIN = 0.05, 0.35, 0.12  # cheap-ish reference price
HEADROOM_RANGE = (1.05, 1.25)
OVER_BUDGET_PENALTY = Fraction(1, 2)
ORACLE_PRICE_RANK = 5  # the oracle's search caps price at the 5th cheapest feasible option
MAX_MENTIONS = 32
GENERIC_PROJECT = "shopping list"

# project -> leaf names of the synthetic taxonomy (catalog_service/taxonomy.py PROJECTS,
# plus extra projects built from its leaves).
PROJECT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "home office": (
        "Desks", "Standing Desks", "Office Chairs", "Monitors", "Keyboards", "Computer Mice",
        "Desk Lamps", "Webcams", "Headsets", "Monitor Stands", "Laptop Stands", "USB Hubs",
        "Surge Protectors", "Desk Organizers", "Footrests", "Whiteboards", "Filing Cabinets",
        "Notebooks", "Printers",
    ),
    "camping": (
        "Tents", "Sleeping Bags", "Sleeping Pads", "Camping Stoves", "Headlamps", "Camping Lanterns",
        "Coolers", "Hiking Backpacks", "Water Bottles", "Camp Chairs", "Hammocks", "Trekking Poles",
        "First Aid Kits", "Multi-Tools", "Power Banks", "Hiking Boots", "Rain Jackets", "Sunscreens",
        "Trail Mix", "Freeze-Dried Meals",
    ),
    "baking": (
        "Mixing Bowls", "Baking Sheets", "Stand Mixers", "Hand Mixers", "Measuring Cups", "Rolling Pins",
        "Oven Mitts", "Cake Pans", "Muffin Pans", "Cooling Racks", "Pie Dishes", "Spatulas",
        "Kitchen Scales", "Parchment Paper", "Aprons", "Flour", "Chocolate Chips", "Vanilla Extract",
        "Sugar", "Sprinkles", "Cake Mix",
    ),
    "painting": (
        "Paint Brushes", "Paint Rollers", "Paint Trays", "Painter's Tape", "Drop Cloths", "Interior Paint",
        "Primers", "Putty Knives", "Sandpaper", "Spackle", "Caulk Guns", "Step Ladders",
        "Safety Glasses", "Work Gloves",
    ),
    "fitness": (
        "Yoga Mats", "Dumbbells", "Kettlebells", "Resistance Bands", "Jump Ropes", "Foam Rollers",
        "Pull-Up Bars", "Ab Rollers", "Exercise Bikes", "Fitness Trackers", "Smartwatches",
        "Shaker Bottles", "Protein Powder", "Protein Bars", "Water Bottles", "Running Shoes",
        "Athletic Shorts", "Sports Bras", "Gym Bags", "Earbuds", "Electrolyte Drink Mix",
    ),
    "nursery": (
        "Cribs", "Crib Mattresses", "Crib Sheets", "Changing Pads", "Changing Tables", "Nursery Gliders",
        "Swaddle Blankets", "Diaper Pails", "High Chairs", "Baby Monitors", "Night Lights", "Diaper Bags",
        "Baby Bodysuits", "Baby Lotions", "Baby Wipes", "Diaper Creams", "Play Mats", "Crib Mobiles",
        "Stuffed Animals", "Humidifiers",
    ),
    "kitchen": (
        "Blenders", "Coffee Makers", "Air Fryers", "Toasters", "Skillets", "Dutch Ovens", "Saucepans",
        "Cookware Sets", "Mixing Bowls", "Measuring Cups", "Spatulas", "Kitchen Scales", "Oven Mitts",
        "Aprons", "Coffee Beans", "Tea",
    ),
    "home workshop": (
        "Cordless Drills", "Circular Saws", "Orbital Sanders", "Multi-Tools", "Hammers", "Screwdriver Sets",
        "Tape Measures", "Safety Glasses", "Work Gloves", "Step Ladders", "Sandpaper", "Putty Knives",
        "First Aid Kits", "Headlamps",
    ),
    "dorm room": (
        "Laptops", "Desk Lamps", "Bed Sheets", "Bath Towels", "Notebooks", "Pens", "Sticky Notes",
        "Coffee Makers", "Bookshelves", "Earbuds", "Power Banks", "USB Flash Drives", "Charging Cables",
        "Shampoos", "Body Washes", "Snack Bars", "Floor Lamps", "Smart Plugs",
    ),
    "road trip": (
        "Car Chargers", "Power Banks", "Coolers", "Water Bottles", "Snack Bars", "Trail Mix", "Mixed Nuts",
        "Potato Chips", "Bluetooth Speakers", "First Aid Kits", "Headlamps", "Sunscreens", "Charging Cables",
        "Earbuds",
    ),
    "kids' birthday party": (
        "Building Sets", "Magnetic Tiles", "Board Games", "Jigsaw Puzzles", "Scooters", "Foam Blasters",
        "Dolls", "Toy Cars", "Stuffed Animals", "Cake Mix", "Sprinkles", "Candles", "Potato Chips",
    ),
}

# project -> keywords (whole words, matched after normalisation) for catalogs whose leaf
# names differ from the templates.
PROJECT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "home office": (
        "desk", "office chair", "computer monitor", "monitor stand", "keyboard", "computer mouse", "mice",
        "webcam", "headset", "laptop stand", "usb hub", "surge protector", "filing cabinet", "whiteboard",
        "footrest", "printer", "stapler", "paper shredder", "desk lamp",
    ),
    "camping": (
        "tent", "sleeping bag", "sleeping pad", "camping", "camp", "headlamp", "lantern", "cooler",
        "hiking", "backpacking", "hammock", "trekking pole", "first aid", "multi tool", "rain jacket",
        "trail mix", "freeze dried",
    ),
    "baking": (
        "baking", "bakeware", "mixing bowl", "stand mixer", "hand mixer", "measuring cup", "rolling pin",
        "oven mitt", "cake", "muffin", "cooling rack", "pie", "spatula", "kitchen scale", "parchment",
        "apron", "flour", "chocolate chip", "vanilla extract", "sprinkle",
    ),
    "painting": (
        "paint", "painter", "primer", "drop cloth", "putty knife", "sandpaper", "spackle", "caulk",
        "step ladder", "ladder", "safety glass", "work glove",
    ),
    "fitness": (
        "yoga", "dumbbell", "kettlebell", "resistance band", "jump rope", "foam roller", "pull up",
        "ab roller", "exercise", "fitness", "smartwatch", "shaker", "protein", "running shoe",
        "athletic", "sports bra", "gym", "electrolyte",
    ),
    "nursery": (
        "crib", "changing pad", "changing table", "nursery", "glider", "swaddle", "diaper", "high chair",
        "baby", "night light", "infant", "play mat", "stuffed animal", "humidifier",
    ),
    "kitchen": (
        "blender", "coffee maker", "air fryer", "toaster", "skillet", "frying pan", "dutch oven", "saucepan",
        "cookware", "mixing bowl", "measuring cup", "spatula", "kitchen", "coffee bean", "tea",
    ),
    "home workshop": (
        "drill", "saw", "sander", "multi tool", "hammer", "screwdriver", "tape measure", "wrench",
        "safety glass", "work glove", "ladder", "sandpaper", "tool set", "headlamp",
    ),
    "dorm room": (
        "laptop", "desk lamp", "bed sheet", "towel", "notebook", "pen", "sticky note", "bookshelf",
        "bookshelves", "earbud", "power bank", "flash drive", "charging cable", "shampoo", "body wash",
        "floor lamp", "smart plug",
    ),
    "road trip": (
        "car charger", "power bank", "cooler", "water bottle", "snack", "trail mix", "nut", "chip",
        "bluetooth speaker", "first aid", "sunscreen", "charging cable", "earbud",
    ),
    "kids' birthday party": (
        "building set", "magnetic tile", "board game", "puzzle", "scooter", "blaster", "doll", "toy",
        "cake mix", "sprinkle", "candle",
    ),
}

PROJECT_INTROS: dict[str, tuple[str, ...]] = {
    "home office": ("Hi! I'm setting up a home office.", "Hello. I'm putting together a home office."),
    "camping": ("Hi! I'm getting ready for a camping trip.", "Hey, I'm gearing up to go camping."),
    "baking": ("Hi! I'm getting into baking and need to stock up.", "Hello. I want to set up for baking at home."),
    "painting": ("Hi! I'm about to paint a room.", "Hey, I'm planning a painting project at home."),
    "fitness": ("Hi! I'm starting a fitness routine.", "Hello. I'm setting up to get in shape."),
    "nursery": ("Hi! We're getting the nursery ready for our baby.", "Hello. I'm preparing a nursery."),
    "kitchen": ("Hi! I'm equipping my new kitchen.", "Hello. I'm setting up a kitchen from scratch."),
    "home workshop": ("Hi! I'm setting up a small home workshop.", "Hey, I'm putting together a DIY workshop."),
    "dorm room": ("Hi! I'm moving into a dorm room.", "Hello. I'm getting ready for college and my dorm."),
    "road trip": ("Hi! I'm planning a road trip.", "Hey, I'm packing for a long road trip."),
    "kids' birthday party": (
        "Hi! I'm planning a kids' birthday party.", "Hello. I'm organizing my kid's birthday party.",
    ),
    GENERIC_PROJECT: ("Hi! I have a shopping list to get through.", "Hello. I need to pick up a few things."),
}
NEEDS = (
    "I need one item from each of these categories: {cats}.",
    "Please find me one product from each of these categories: {cats}.",
    "Could you pick one product in each of these categories: {cats}?",
)
BUDGET_SENTENCES = ("I can spend {budget}.", "My budget: I can spend {budget}.")
DETAIL_SENTENCES = ("I'd like {details}.", "Also, I'd like {details}.")
NOT_NEEDED = ("I don't need anything like that for this.", "That's not one of the things I need.")
SOLD_OUT = ("That one is sold out.", "That one says it's out of stock.")
UNSUITABLE = ("That one won't work.", "That one doesn't fit what I need.")
OVER_BUDGET = ("That adds up to more than I want to spend.", "Together that's over my budget.")
CONFIRM = ("Those look good to me.", "That works for me.")
BUDGET_HINT = "a budget in mind"
BUDGET_HINT_SENTENCE = "I have a budget in mind for all of it."
BUDGET_KEYWORDS = ("budget", "price", "spend", "cost", "total", "$", "expensive", "cheap", "afford", "money")
KEEP_PLURAL = ("glasses", "jeans", "shorts", "leggings", "pants", "scissors", "supplies")
IRREGULAR_SINGULAR = {
    "knives": "knife", "mice": "mouse", "hoodies": "hoodie", "bookshelves": "bookshelf", "shelves": "shelf",
    "canvases": "canvas", "cookies": "cookie", "leaves": "leaf", "brownies": "brownie", "smoothies": "smoothie",
}

_WORDS = re.compile(r"[a-z0-9]+")
_PROJECT_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


# --------------------------------------------------------------------------- project resolution

def singular_word(word: str) -> str:
    """A light English singular of one lower-case word ('knives' -> 'knife', 'jeans' kept)."""
    if word in KEEP_PLURAL:
        return word
    if word in IRREGULAR_SINGULAR:
        return IRREGULAR_SINGULAR[word]
    return singular(word)


def _norm_words(name: str) -> tuple[str, ...]:
    """Lower-case words with a light singular, apostrophes dropped: "Painter's Tape" ->
    ("painter", "tape"), "USB Hubs" -> ("usb", "hub")."""
    return tuple(singular_word(w) for w in _WORDS.findall(name.lower().replace("'", "")))


def _contains(words: tuple[str, ...], key: tuple[str, ...]) -> bool:
    n = len(key)
    return n > 0 and any(words[i : i + n] == key for i in range(len(words) - n + 1))


@dataclass(frozen=True)
class LeafInfo:
    name: str
    path: str | None  # "l1 > l2 > l3" when every product of the leaf shares it, else None
    n_in_stock: int


@dataclass(frozen=True)
class ProjectIndex:
    """The projects resolved against one catalog: project -> usable leaves (template order,
    then keyword matches by name), plus every usable leaf (the generic project)."""

    projects: dict[str, tuple[str, ...]]
    leaves: dict[str, LeafInfo]
    all_leaves: tuple[str, ...]


def _leaf_info(catalog: CatalogLike, leaf: str) -> LeafInfo:
    rows = catalog.category_rows(leaf)
    n_in = int((np.asarray(catalog.numeric("stock")[rows]) > 0).sum()) if len(rows) else 0
    path = None
    if len(rows):
        parents = [np.asarray(catalog.codes(level)[0][rows]) for level in ("category_l1", "category_l2")]
        if all(int(codes.min()) == int(codes.max()) for codes in parents):
            r = int(rows[0])
            path = CATEGORY_SEP.join(catalog.value(f"category_l{i}", r) or "" for i in (1, 2, 3))
    return LeafInfo(leaf, path, n_in)


def resolve_projects(catalog: CatalogLike) -> ProjectIndex:
    """Resolve `PROJECT_TEMPLATES` / `PROJECT_KEYWORDS` against `catalog` (cached per catalog)."""
    try:
        cached = _PROJECT_CACHE.get(catalog)
    except TypeError:
        cached = None
    if cached is not None:
        return cached
    names = sorted(v for v in catalog.codes("category_l3")[1] if v)
    infos: dict[str, LeafInfo] = {}

    def usable(leaf: str) -> bool:
        if leaf not in infos:
            infos[leaf] = _leaf_info(catalog, leaf)
        return infos[leaf].n_in_stock > 0

    norms = {name: _norm_words(name) for name in names}
    by_norm: dict[tuple[str, ...], str] = {}
    for name in names:
        by_norm.setdefault(norms[name], name)
    projects: dict[str, tuple[str, ...]] = {}
    for project, template in PROJECT_TEMPLATES.items():
        out: list[str] = []
        for t in template:
            leaf = by_norm.get(_norm_words(t))
            if leaf is not None and leaf not in out and usable(leaf):
                out.append(leaf)
        if len(out) < MAX_S_REQ:
            keys = [_norm_words(k) for k in PROJECT_KEYWORDS.get(project, ())]
            for name in names:
                words = norms[name]
                if name not in out and any(k[0] in words and _contains(words, k) for k in keys if k) and usable(name):
                    out.append(name)
        projects[project] = tuple(out)
    all_leaves = tuple(n for n in names if usable(n))
    index = ProjectIndex(projects, infos, all_leaves)
    try:
        _PROJECT_CACHE[catalog] = index
    except TypeError:
        pass
    return index


# --------------------------------------------------------------------------- goal

@dataclass
class Requirement:
    """One required category of the bundle."""

    leaf: str
    path: str | None
    rows: np.ndarray  # the leaf's rows, ascending
    constraints: list[Constraint]
    mask: np.ndarray | None = None  # rows meeting every constraint (stock ignored); see `BundleEnv.requirement_mask`
    ref_cents: int = 0  # the cheap-ish reference price used for the budget
    compatible: tuple | None = None  # (len(constraints), rows): `BundleEnv._compatible`, memoised
    by_price: tuple | None = None  # (len(constraints), rows, cents): `BundleEnv._by_price`, memoised

    @property
    def noun(self) -> str:
        """'Desk Lamps' -> 'desk lamp', "Men's Jeans" -> "men's jeans" (how the shopper names one item)."""
        return singular(self.leaf)

    def slot_name(self, c: Constraint) -> str:
        return f"{self.leaf}|{c.name}"


@dataclass
class BundleGoal:
    project: str
    requirements: list[Requirement]
    budget_cents: int
    oos_planned: bool = False
    oos_row: int | None = None  # the row scheduled to sell out mid-episode
    version: int = 0  # bumped when the shopper changes the goal (budget)
    by_leaf: dict[str, int] = field(default_factory=dict)


def money(cents: int) -> str:
    """1234500 -> '$12,345'; 1999 -> '$19.99'."""
    if cents % 100 == 0:
        return f"${cents // 100:,}"
    return f"${cents / 100:,.2f}"


def nice_budget_cents(target_cents: float) -> int:
    """A round amount a shopper would say, at or above `target_cents`."""
    dollars = target_cents / 100
    step = 5 if dollars < 100 else 10 if dollars < 500 else 25 if dollars < 2000 else 50 if dollars < 10000 else 100
    step_c = step * 100
    return int(math.ceil(target_cents / step_c)) * step_c if target_cents > 0 else step_c


class BundleEnv(SearchStockout, ShopEnv):
    env_id = "E_BUNDLE"
    tools = ("catalog_search", "catalog_get_product", "ask_user")
    answer_fields = ("recommended_product_ids",)
    task_brief = (
        "The shopper needs one product from each of several categories for a project. Pick exactly one "
        "in-stock product per requested category that meets the shopper's preferences, with the total "
        "price within their budget: answer {\"recommended_product_ids\": [...]}."
    )

    def __init__(self, catalog: CatalogLike, difficulty: int = 0):
        super().__init__(catalog, difficulty)
        self.projects = resolve_projects(catalog)

    # ------------------------------------------------------------------ vector helpers
    def _code(self, column: str, value: str) -> int | None:
        return code_of(self.catalog, column, value)

    def _constraint_mask(self, c: Constraint, rows: np.ndarray) -> np.ndarray:
        """`Constraint.holds` for every row of `rows` (brand / attribute kinds are used here)."""
        if c.kind in ("brand", "attribute", "category"):
            column = {"brand": "brand", "category": "category_l3"}.get(c.kind, c.attribute)
            code = self._code(column, str(c.value))
            if code is None:
                return np.zeros(len(rows), dtype=bool)
            return np.asarray(self.catalog.codes(column)[0][rows]) == code
        return np.array([c.holds(self.catalog, int(r)) for r in rows], dtype=bool)

    def _cents(self, rows: np.ndarray) -> np.ndarray:
        return np.round(np.asarray(self.catalog.numeric("price")[rows], dtype=np.float64) * 100).astype(np.int64)

    def requirement_mask(self, req: Requirement) -> np.ndarray:
        """Which of `req.rows` meet every constraint of `req` (stock ignored); computed on
        first use (O(leaf)), so episodes that never ask pay nothing."""
        if req.mask is None:
            mask = np.ones(len(req.rows), dtype=bool)
            for c in req.constraints:
                mask &= self._constraint_mask(c, req.rows)
            req.mask = mask
        return req.mask

    def feasible_mask(self, req: Requirement, exclude_pending: bool = True, drop: int | None = None) -> np.ndarray:
        """Rows of `req` that meet its constraints and are in stock now (optionally without
        `drop`). O(leaf): the episode itself uses the lookups below instead."""
        m = self.requirement_mask(req) & self.world.stock_mask(req.rows, exclude_pending)
        if drop is not None:
            m &= req.rows != drop
        return m

    # ------------------------------------------------------------------ size-independent lookups
    def _overlay_free(self, leaf: str) -> bool:
        """Whether no stock override or pending stock-out of this episode lies in `leaf`: its
        in-stock rows are then exactly the catalog's precomputed ones."""
        touched = self.world.overlay_rows()
        if not touched:
            return True
        code = self._code("category_l3", leaf)
        codes = self.catalog.codes("category_l3")[0]
        return all(int(codes[r]) != code for r in touched)

    def _compatible(self, req: Requirement) -> np.ndarray:
        """Rows of `req`'s leaf meeting its constraints (stock ignored), ascending (memoised on
        `req` while its constraints stay the same: the budget and the price order both need them)."""
        if req.compatible is None or req.compatible[0] != len(req.constraints):
            rows = compatible_rows(self.catalog, [Constraint("category", req.leaf), *req.constraints])
            req.compatible = (len(req.constraints), rows)
        return req.compatible[1]

    def _by_price(self, req: Requirement) -> tuple[np.ndarray, np.ndarray]:
        """Rows meeting `req`'s constraints ordered by (cents, row), and their cents
        (memoised on `req` while its constraints stay the same: a stock-out search asks for
        them once per candidate)."""
        if req.by_price is None or req.by_price[0] != len(req.constraints):
            if not req.constraints:
                rows, cents = self.catalog.category_rows_by_price(req.leaf)
                rows = np.asarray(rows, dtype=np.int64)
            else:
                rows = self._compatible(req)
                cents = self._cents(rows)
                order = np.lexsort((rows, cents))
                rows, cents = rows[order], cents[order]
            req.by_price = (len(req.constraints), rows, cents)
        return req.by_price[1], req.by_price[2]

    def _feasible_cents(self, req: Requirement) -> np.ndarray:
        """Sorted cents of the rows meeting `req`'s constraints and in stock (pending
        stock-outs count as sold out): ``np.sort(self._cents(req.rows[self.feasible_mask(req)]))``."""
        if not self._overlay_free(req.leaf):
            return np.sort(self._cents(req.rows[self.feasible_mask(req)]))
        if not req.constraints:
            return np.asarray(self.catalog.category_in_stock_by_price(req.leaf)[1])
        rows = self._compatible(req)
        return np.sort(self._cents(rows[np.asarray(self.catalog.numeric("stock")[rows]) > 0]))

    def cheapest_cents(self, req: Requirement, drop: int | None = None) -> int | None:
        """The lowest price in cents among `req`'s feasible rows now (pending stock-outs
        count as sold out), without `drop`; None when there is none. Scans the rows in
        price order and stops at the first feasible one."""
        rows, cents = self._by_price(req)
        start, size = 0, 32
        while start < len(rows):
            chunk = rows[start : start + size]
            live = self.world.stock_mask_any_order(chunk, exclude_pending=True)
            if drop is not None:
                live &= chunk != drop
            hit = np.flatnonzero(live)
            if len(hit):
                return int(cents[start + int(hit[0])])
            start, size = start + size, size * 4
        return None

    def min_bundle_cents(self, drop: int | None = None) -> int | None:
        """The cheapest feasible bundle's total now (None when a category has no option)."""
        total = 0
        for req in self.goal.requirements:
            cheapest = self.cheapest_cents(req, drop)
            if cheapest is None:
                return None
            total += cheapest
        return total

    # ------------------------------------------------------------------ generation
    def _pick_leaves(self, rng: np.random.Generator, n: int) -> tuple[str, list[str]]:
        """A project with `n` leaves that have in-stock products in the live world, and its
        leaves (random order). Falls back to the generic project, then to fewer leaves."""
        idx = self.projects
        usable = [p for p, leaves in idx.projects.items() if len(leaves) >= n]
        order = [usable[i] for i in rng.permutation(len(usable))] + [GENERIC_PROJECT]
        best: tuple[str, list[str]] | None = None
        for project in order:
            leaves = idx.all_leaves if project == GENERIC_PROJECT else idx.projects[project]
            picked = []
            for i in rng.permutation(len(leaves)):
                if self._has_live(leaves[i]):
                    picked.append(leaves[i])
                    if len(picked) == n:
                        return project, picked
            if best is None or len(picked) > len(best[1]):
                best = (project, picked)
        if best is None or not best[1]:
            raise RuntimeError("catalog has no leaf category with in-stock products for a bundle")
        return best

    def _has_live(self, leaf: str) -> bool:
        """Whether `leaf` has an in-stock product (pending stock-outs count as sold out)."""
        if self._overlay_free(leaf):
            return len(self.catalog.category_in_stock_rows(leaf)) > 0
        rows = self.catalog.category_rows(leaf)
        return bool(len(rows)) and bool(self.world.stock_mask(rows, exclude_pending=True).any())

    def _choose_constraint(self, rng: np.random.Generator, req: Requirement) -> Constraint | None:
        live = None  # None: the catalog's in-stock rows are this world's (`_overlay_free`)
        if self._overlay_free(req.leaf):
            live_rows = np.asarray(self.catalog.category_in_stock_rows(req.leaf), dtype=np.int64)
        else:
            live = self.world.stock_mask(req.rows, exclude_pending=True)
            live_rows = req.rows[live]
        n_live = len(live_rows)
        if n_live < MIN_CONSTRAINED_OPTIONS:
            return None
        anchor = int(live_rows[int(rng.integers(len(live_rows)))])
        cat = self.catalog
        preferred: list[Constraint] = []
        if cat.value("color", anchor):
            preferred.append(Constraint("attribute", cat.value("color", anchor), "color"))
        if cat.value("brand", anchor):
            preferred.append(Constraint("brand", cat.value("brand", anchor)))
        others = [Constraint("attribute", cat.value(a, anchor), a) for a in ATTRIBUTE_COLUMNS
                  if a != "color" and cat.value(a, anchor)]
        candidates = [preferred[i] for i in rng.permutation(len(preferred))]
        candidates += [others[i] for i in rng.permutation(len(others))]
        for c in candidates:
            if live is None:
                rows = self._compatible(Requirement(req.leaf, req.path, req.rows, [c]))
                n = int((np.asarray(cat.numeric("stock")[rows]) > 0).sum())
            else:
                n = int((self._constraint_mask(c, req.rows) & live).sum())
            if MIN_CONSTRAINED_OPTIONS <= n < n_live:
                return c
        return None

    def _oracle_turns(self, n_categories: int, dependent: int, ask: bool) -> int:
        """Turns the oracle needs: [ask + independent searches], the remaining searches in
        batches of B_tool, then the answer."""
        b = self.axes.B_tool
        if not ask:
            return math.ceil(n_categories / b) + 1
        first = min(b - 1, n_categories - dependent)
        return 1 + math.ceil((n_categories - first) / b) + 1

    def _quantile_high(self) -> float:
        """The budget tightens with difficulty: the reference price per category is a
        quantile q ~ U[0.05, max(0.12, 0.35 - 0.02 d)] of its feasible in-stock prices."""
        return max(QUANTILE_HIGH_MIN, QUANTILE_HIGH_D0 - 0.02 * self.difficulty)

    def _generate(self) -> Utterance:
        rng = self.rand("goal")
        cat = self.catalog
        project, leaves = self._pick_leaves(rng, self.axes.S_req)
        reqs = []
        for leaf in leaves:
            rows = cat.category_rows(leaf)
            info = self.projects.leaves.get(leaf)
            reqs.append(Requirement(leaf, info.path if info else None, rows, []))
        n_constrained = min(len(reqs), max(0, (self.axes.m - 2) // 2))
        done = 0
        for i in rng.permutation(len(reqs)):
            if done >= n_constrained:
                break
            req = reqs[int(i)]
            c = self._choose_constraint(rng, req)
            if c is not None:
                req.constraints.append(c)
                done += 1
        total_ref = 0
        for req in reqs:
            cents = self._feasible_cents(req)
            q = rng.uniform(QUANTILE_LOW, self._quantile_high())
            req.ref_cents = int(cents[int(q * (len(cents) - 1))])
            total_ref += req.ref_cents
        budget = nice_budget_cents(total_ref * rng.uniform(*HEADROOM_RANGE))
        self.goal = BundleGoal(project, reqs, budget, by_leaf={r.leaf: i for i, r in enumerate(reqs)})
        self.goal.oos_planned = self.axes.p_oos > 0 and self.rand("oos").random() < self.axes.p_oos
        self.searched_ids: set[str] = set()

        sh = self.shopper
        sh.plan_disclosure([Slot(f"category:{r.leaf}", r.leaf, f"I need {r.leaf}.", ()) for r in reqs], 0.0,
                           keep=len(reqs))
        details = [self._budget_slot()]
        for req in reqs:
            details += [self._constraint_slot(req, c) for c in req.constraints]
        sh.plan_disclosure(details, self.axes.p_missing, keep=0)
        dependent = sum(1 for r in reqs if any(r.slot_name(c) in sh.omitted for c in r.constraints))
        if sh.omitted and self._oracle_turns(len(reqs), dependent, True) > self.axes.T_max:
            sh.omitted.clear()  # the plan would not fit in T_max: say everything
            dependent = 0
        # oracle plan: [ask +] searches -> [re-search a category hit by a stock-out] -> answer
        self.plan_turns = self._oracle_turns(len(reqs), dependent, bool(sh.omitted)) + int(self.goal.oos_planned)
        self.plan_caused = {0} if sh.omitted else set()  # the question comes first
        return self._opening()

    def _budget_slot(self) -> Slot:
        phrase = f"at most {money(self.goal.budget_cents)} in total"
        return Slot("budget", phrase, f"I can spend {phrase}.", BUDGET_KEYWORDS, BUDGET_HINT)

    def _constraint_slot(self, req: Requirement, c: Constraint) -> Slot:
        base = c.slot()
        phrase = f"the {req.noun} {base.phrase}"
        return Slot(req.slot_name(c), phrase, f"I'd like {phrase}.", base.keywords + (req.noun,),
                    f"the {req.noun} {base.hint}")

    def _opening(self) -> Utterance:
        sh, goal = self.shopper, self.goal
        parts = [sh.choose(PROJECT_INTROS.get(goal.project, PROJECT_INTROS[GENERIC_PROJECT]))]
        parts.append(fill(sh.choose(NEEDS), cats=join_phrases([r.leaf for r in goal.requirements])))
        if sh.revealed("budget"):
            parts.append(fill(sh.choose(BUDGET_SENTENCES), budget=sh.slots["budget"].phrase))
        else:  # an omitted budget is mentioned as open, so the agent can ask for it
            parts.append(BUDGET_HINT_SENTENCE)
        details = [sh.spoken(r.slot_name(c)) for r in goal.requirements for c in r.constraints]
        if details:
            parts.append(fill(sh.choose(DETAIL_SENTENCES), details=join_phrases(details)))
        disclosed = tuple(n for n in sh.slots if sh.revealed(n))
        return sh.say(" ".join(parts), "opening", disclosed)

    # ------------------------------------------------------------------ goal state
    def requirement_of(self, row: int | None) -> Requirement | None:
        if row is None:
            return None
        j = self.goal.by_leaf.get(self.catalog.value("category_l3", row))
        return None if j is None else self.goal.requirements[j]

    def broken_constraint(self, req: Requirement, row: int) -> Constraint | None:
        for c in req.constraints:
            if not c.holds(self.catalog, row):
                return c
        return None

    def price_cents(self, row: int) -> int:
        return int(round(float(self.catalog.numeric("price")[row]) * 100))

    # ------------------------------------------------------------------ world events
    def _stockout_victim(self, shown_ids: list[str]) -> int | None:
        """The cheapest in-stock, unscheduled product this search showed that meets its
        requirement and without which the cheapest bundle still fits the budget."""
        goal = self.goal
        pending = {r for _, r in self.world.scheduled_stockouts}
        base = self.min_bundle_cents()
        candidates = []
        for pid in dict.fromkeys(shown_ids):
            row = self.world.row(pid)
            req = self.requirement_of(row)
            if req is None or row in pending or not self.world.in_stock(row) or self.broken_constraint(req, row):
                continue
            rest = self.cheapest_cents(req, drop=row)
            if base is None or rest is None:
                continue
            after = base - self.cheapest_cents(req) + rest
            if after > goal.budget_cents:  # the cheapest bundle without it must still fit
                continue
            candidates.append((self.price_cents(row), row))
        return min(candidates)[1] if candidates else None

    # ------------------------------------------------------------------ shopper reactions
    def _mentioned(self, message: str) -> list[int]:
        found = []
        for pid in sorted(self.seen_ids):
            pos = message.find(pid)
            if pos >= 0 and self.world.row(pid) is not None:
                found.append((pos, pid))
        found.sort()
        return list(dict.fromkeys(self.world.row(pid) for _, pid in found[:MAX_MENTIONS]))

    def _react(self, message: str, turn: int, had_tools: bool) -> Utterance | None:
        sh, goal = self.shopper, self.goal
        rows = self._mentioned(message)
        if not rows:
            return sh.answer(message, turn) if "?" in message else None
        for row in rows:
            req = self.requirement_of(row)
            if req is None:
                return sh.say(sh.choose(NOT_NEEDED), "not_needed")
            c = self.broken_constraint(req, row)
            if c is not None:
                name = req.slot_name(c)
                self.shopper.reveal(name)
                return sh.say(f"{sh.choose(UNSUITABLE)} {sh.slots[name].reply}", "correction", (name,))
            if not self.world.in_stock(row):
                return sh.say(sh.choose(SOLD_OUT), "sold_out")
        if sum(self.price_cents(r) for r in rows) > goal.budget_cents:
            self.shopper.reveal("budget")
            return sh.say(f"{sh.choose(OVER_BUDGET)} {sh.slots['budget'].reply}", "over_budget", ("budget",))
        return sh.say(sh.choose(CONFIRM), "confirm")

    def _switch_goal(self, rng: np.random.Generator) -> Utterance | None:
        """The shopper changes its mind (journeys): a higher budget. Only relaxes."""
        goal = self.goal
        raised = nice_budget_cents(goal.budget_cents * (1.1 + 0.3 * rng.random()))
        goal.budget_cents = max(goal.budget_cents + 500, raised)
        goal.version += 1
        slot = self._budget_slot()
        self.shopper.slots["budget"] = slot
        self.shopper.reveal("budget")
        return self.shopper.say(f"Actually, I can stretch my budget: I can spend {slot.phrase}.", "switch", ("budget",))

    # ------------------------------------------------------------------ verifier
    def _score(self, answer: Answer | None) -> TaskScore:
        goal = self.goal
        ids = list(dict.fromkeys(answer.recommended_product_ids or [])) if answer is not None else []
        covered: set[int] = set()
        total = 0
        status: list[str] = []
        for pid in ids:
            row = self.world.row(pid)
            if row is None:
                status.append("unknown")
                continue
            total += self.price_cents(row)
            j = goal.by_leaf.get(self.catalog.value("category_l3", row))
            if j is None:
                status.append("not_requested")
            elif j in covered:
                status.append("duplicate_category")
            elif self.broken_constraint(goal.requirements[j], row) is not None:
                status.append("constraint_broken")
            elif not self.world.in_stock(row):
                status.append("out_of_stock")
            else:
                covered.add(j)
                status.append("ok")
        n_gold = len(goal.requirements)
        f1 = f1_score(len(covered), len(ids), n_gold)
        over = total > goal.budget_cents
        r_task = max(Fraction(-1), min(Fraction(1), 2 * f1 - 1 - (OVER_BUDGET_PENALTY if over else 0)))
        all_searched = all(i in self.searched_ids for i in ids)
        correct = f1 == 1 and not over and all_searched
        details = {
            "project": goal.project,
            "n_required": n_gold,
            "n_recommended": len(ids),
            "n_covered": len(covered),
            "f1": float(f1),
            "total_cents": total,
            "budget_cents": goal.budget_cents,
            "over_budget": over,
            "all_searched": all_searched,
            "status": status,
        }
        return TaskScore(float(r_task), bool(correct), details)
