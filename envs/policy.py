"""E_POLICY: answer the shopper's question about the store policy, exactly.

Hidden goal. The episode's store policy (`ecomrlve.envs.store_policy.generate_policy`, 64 rules over
returns, shipping, pricing, membership and warranty, every number drawn per episode) is the
knowledge base. `sample_question` picks ONE rule and a shopper situation whose answer follows
from exactly the first B_branch(d) = 1 + d//3 cases of that rule: cases 1..B-1 do not hold,
case B does (or, for B = n + 1, the rule's "Otherwise"). Numeric situation values sit on a
case's threshold ("delivered exactly 30 days ago", "$35 order") with p_edge(d). Every rule
answers one question within its scope (department, region, payment, return method, tier),
and the (question, scope) pairs are unique within a policy, so evaluating every rule's
structured logic on the situation yields exactly the generating rule's answer.

The shopper states the item (with its department) and the scope facts; every other fact the
deciding cases read is omitted with p_missing(d) and given when asked (`ask_user`, or a
question in the agent's message). The agent looks the rule up with `policy_search` and
answers `{"policy_answer": ...}`.

Verifier (documented answer formats; `check_answer`):
- money (fees, refunds, prices): a number or a string holding exactly one number ("18.55",
  "$18.55", "USD 18.55"); correct when it equals the truth to the cent
  (round(value * 100) == cents). "free", "nothing", "none", "no fee", "no charge", "zero"
  mean 0.
- counts (days, business days, reward points): one number, correct within a relative
  tolerance of 1e-6 (|x - truth| <= 1e-6 * max(1, |truth|)); the zero words above mean 0.
- yes/no: true/false, or a string whose first word is yes/y/yeah/yep/true/correct/sure or
  no/n/nope/false; case and punctuation are ignored. Numbers are not accepted.
- options (warranty remedy, refund method): case, punctuation, hyphens and a leading
  article are ignored, and listed synonyms map to their option ("replace" -> replacement,
  "credit" -> store credit, "original payment" / the payment's own name -> original
  payment method, "no" / "none" -> not covered).
A string with several different numbers, a number for a yes/no question, or anything else
is wrong. Grounding: the answer counts only when the rule that governs it was among the
rules a `policy_search` call returned in this episode; an answer given without it is a
guess, scored wrong (r_task = -1) and counted as one hallucinated item in r_hall.
r_task = 1 if correct and grounded else -1; correct only with an answer.

Answers are balanced by construction: every store draws its rules' case order and case
outcomes, and `sample_question` draws the target answer first (see `ecomrlve.envs.store_policy`),
so neither the question's wording nor d predicts the answer; the episode seed stratifies
the question type and the target answer, so over any run of seeds they are balanced.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .actions import Answer
from .base import ShopEnv
from .reward import TaskScore
from .shopper import Slot, Utterance, fill, join_phrases, singular, with_article
from .store_policy import (
    DEPARTMENT_NAMES,
    PAYMENT_NAMES,
    PolicyQuestion,
    money,
    sample_question,
)

GREETINGS = ("Hi!", "Hello.", "Hey there.", "Hi, quick question.", "Hello, I have a policy question.")
SWITCH_LEADS = ("Actually, I have a different question.", "Sorry, scratch that, another question.")

# ---- how the shopper names an item (leaf category -> phrase)
ITEM_PHRASES = {
    "Computer Mice": "a computer mouse", "USB Hubs": "a USB hub", "USB Flash Drives": "a USB flash drive",
    "Portable SSDs": "a portable SSD", "Over-Ear Headphones": "a pair of over-ear headphones",
    "Earbuds": "a pair of earbuds", "Running Shoes": "a pair of running shoes",
    "Hiking Boots": "a pair of hiking boots", "Sneakers": "a pair of sneakers", "Men's Jeans": "a pair of men's jeans",
    "Women's Leggings": "a pair of women's leggings", "Athletic Shorts": "a pair of athletic shorts",
    "Safety Glasses": "a pair of safety glasses", "Work Gloves": "a pair of work gloves",
    "Oven Mitts": "a pair of oven mitts", "Trekking Poles": "a pair of trekking poles",
    "Dumbbells": "a pair of dumbbells",
    "Measuring Cups": "a set of measuring cups", "Resistance Bands": "a set of resistance bands",
    "Magnetic Tiles": "a set of magnetic tiles", "Toy Cars": "a set of toy cars", "Bed Sheets": "a set of bed sheets",
    "Bath Towels": "a set of bath towels", "Pens": "a pack of pens", "Sticky Notes": "a pack of sticky notes",
    "Baby Wipes": "a pack of baby wipes", "Baby Food Pouches": "a pack of baby food pouches",
    "Protein Bars": "a box of protein bars", "Snack Bars": "a box of snack bars",
    "Chocolate Chips": "a bag of chocolate chips", "Potato Chips": "a bag of potato chips",
    "Mixed Nuts": "a bag of mixed nuts", "Trail Mix": "a bag of trail mix", "Sprinkles": "a jar of sprinkles",
    "Flour": "a bag of flour", "Sugar": "a bag of sugar", "Coffee Beans": "a bag of coffee beans",
    "Tea": "a box of tea", "Electrolyte Drink Mix": "a tub of electrolyte drink mix",
    "Protein Powder": "a tub of protein powder", "Infant Formula": "a can of infant formula",
    "Cake Mix": "a box of cake mix", "Vanilla Extract": "a bottle of vanilla extract",
    "Parchment Paper": "a roll of parchment paper", "Painter's Tape": "a roll of painter's tape",
    "Interior Paint": "a can of interior paint", "Primers": "a can of primer", "Sandpaper": "a pack of sandpaper",
    "Spackle": "a tub of spackle", "Canvases": "a canvas", "Bookshelves": "a bookshelf",
    "Putty Knives": "a putty knife", "Freeze-Dried Meals": "a freeze-dried meal",
}


def item_phrase(leaf: str) -> str:
    """'Memory Cards' -> 'a memory card', with hand-written phrases for pairs, packs, mass nouns."""
    if leaf in ITEM_PHRASES:
        return ITEM_PHRASES[leaf]
    return with_article(singular(leaf))


def _n_days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


# ---- facts: (slot, value) -> a first-person clause, plus the words that ask for the slot
REGION_FACTS = {
    "contiguous us": ("I'm in the contiguous US (Ohio)", "I'm in the contiguous US (Texas)"),
    "alaska & hawaii": ("I live in Alaska", "I live in Hawaii"),
    "us territories": ("I live in Puerto Rico, a US territory", "I live in Guam, a US territory"),
    "canada": ("I live in Canada",),
}
CATEGORICAL_FACTS = {
    "tier": {"standard": "I have a standard account with no paid membership", "plus": "I'm a Plus member",
             "premium": "I'm a Premium member"},
    "condition": {"unopened": "it's still unopened in the original packaging", "opened": "I've opened it",
                  "damaged": "it arrived damaged"},
    "speed": {"standard": "I'd choose standard shipping", "expedited": "I'd choose expedited shipping",
              "overnight": "I'd choose overnight shipping"},
    "payment": {"credit card": "I paid with a credit card", "debit card": "I paid with a debit card",
                "paypal": "I paid with PayPal", "gift card": "I paid with a gift card"},
    "return_method": {"mail": "I'd send it back by mail", "drop_off": "I'd take it to a drop-off point",
                      "pickup": "I'd have it picked up from my home"},
    "gift": {"yes": "it was a gift", "no": "I bought it for myself, it wasn't a gift"},
    "issue": {"defect": "it stopped working on its own", "accidental damage": "I dropped it and it broke"},
    "oversized": {"yes": "my order is one oversized item", "no": "nothing in my order is oversized"},
    "clearance": {"yes": "I bought it on clearance", "no": "I paid the regular price, it wasn't on clearance"},
    "competitor": {"major retailer": "a major retailer now sells it for less",
                   "online marketplace": "an online marketplace seller now has it for less",
                   "local store": "a local store now sells it for less"},
    "plan": {"monthly": "I'm on the monthly plan", "annual": "I paid for the annual plan"},
    "benefits_used": {"yes": "I've already used some member benefits",
                      "no": "I haven't used any member benefits yet"},
}
# fact slot -> how the shopper mentions it while it is still unsaid (holds one of its keywords)
FACT_HINTS: dict[str, str] = {
    "tier": "my membership", "condition": "the item's condition", "item_price": "the price I paid",
    "order_total": "my order total", "days_delivered": "when it was delivered", "days_purchased": "when I bought it",
    "months_owned": "how long I've had it", "region": "where I live", "speed": "the shipping speed I picked",
    "payment": "my payment method", "return_method": "how I'd send it back", "gift": "whether it was a gift",
    "issue": "what the problem is", "oversized": "the item's size", "clearance": "whether it was on clearance",
    "price_drop": "how much the price dropped",
}
OMITTED_FACTS = ("I can also tell you {facts} if that matters.", "Ask me if you need {facts}.")
SLOT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "tier": ("member", "membership", "tier", "account", "plus", "premium"),
    "condition": ("condition", "opened", "unopened", "damaged", "packaging", "state"),
    "item_price": ("price", "cost", "how much", "paid", "pay"),
    "order_total": ("total", "order value", "how much", "amount", "spend", "cost"),
    "days_delivered": ("when", "deliver", "how long ago", "days", "date", "arrive"),
    "days_purchased": ("when", "purchase", "bought", "how long ago", "days", "date"),
    "months_owned": ("how long", "months", "when", "purchase", "bought", "owned", "had it"),
    "region": ("where", "region", "address", "location", "live", "ship to", "country", "state"),
    "speed": ("speed", "shipping option", "shipping method", "how fast", "expedited", "overnight"),
    "payment": ("pay", "payment", "card", "paypal"),
    "return_method": ("method", "send it back", "drop", "pickup", "pick up", "mail"),
    "gift": ("gift",),
    "issue": ("issue", "problem", "what happened", "wrong", "broke", "damage", "defect"),
    "oversized": ("size", "oversized", "large", "heavy", "big", "dimensions"),
    "clearance": ("clearance", "sale", "discount", "regular price"),
    "price_drop": ("price drop", "dropped", "how much lower", "difference", "current price", "price now"),
    "competitor": ("competitor", "which store", "where", "seller", "retailer"),
    "price_gap": ("difference", "how much lower", "gap", "their price", "cheaper"),
    "days_member": ("when", "joined", "how long", "days", "signed up", "member since"),
    "plan": ("plan", "monthly", "annual", "billing", "yearly"),
    "benefits_used": ("benefit", "used", "perks"),
    "department": ("department", "category", "what kind", "which kind"),
}
QUESTIONS = {
    "return_allowed": "Can I still return it?",
    "restocking_fee": "If I return it, how much is the restocking fee in dollars?",
    "return_shipping_fee": "How much will I pay for the return shipping?",
    "refund_method": "Would the refund go to my original payment method or be store credit?",
    "refund_days": "Once you receive the return, how many business days until I get my refund?",
    "shipping_fee": "How much will shipping cost?",
    "delivery_days": "How many business days will delivery take?",
    "price_protection": "How much of the price drop can I get back, in dollars?",
    "price_match": "Will you match their price?",
    "reward_points": "How many reward points will I earn on this order?",
    "membership_refund": "If I cancel my membership now, how much of the fee do I get back?",
    "return_bonus_days": "How many extra days do I get on return windows?",
    "warranty_remedy": "What does the warranty give me: a repair, a replacement, a refund, or is it not covered?",
}
GIFT_CARD_REFUND_QUESTION = "Would the refund be a gift card or store credit?"


def fact_text(slot: str, value, ctx: dict, variant: int = 0) -> str:
    """The shopper's clause stating `slot = value` (lower-case start, no period)."""
    if slot == "item":
        return f"I bought {item_phrase(value)} from the {DEPARTMENT_NAMES[ctx['department']]} department"
    if slot == "department":
        return f"it's {with_article(DEPARTMENT_NAMES[value])} order"
    if slot == "region":
        options = REGION_FACTS[value]
        return options[variant % len(options)]
    if slot in CATEGORICAL_FACTS:
        return CATEGORICAL_FACTS[slot][value]
    if slot == "item_price":
        return f"it cost {money(value)}"
    if slot == "order_total":
        return f"my order total is {money(value)}"
    if slot == "days_delivered":
        return f"it was delivered {_n_days(value)} ago"
    if slot == "days_purchased":
        return f"I bought it {_n_days(value)} ago"
    if slot == "months_owned":
        return f"I've had it for {value} month" + ("" if value == 1 else "s")
    if slot == "price_drop":
        return f"the price has since dropped by {money(value)}"
    if slot == "price_gap":
        return f"their price is {money(value)} lower than what I paid"
    if slot == "days_member":
        return f"I joined {_n_days(value)} ago"
    raise ValueError(f"no shopper phrasing for slot {slot!r}")


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


# --------------------------------------------------------------------------- answers

_NUMBER = re.compile(r"-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)")
_PUNCT = re.compile(r"[^a-z0-9 ]+")
ZERO_WORDS = frozenset({"free", "nothing", "none", "no fee", "no charge", "zero", "no refund", "no points",
                        "no extra days"})
YES_WORDS = frozenset({"yes", "y", "yeah", "yep", "true", "correct", "sure"})
NO_WORDS = frozenset({"no", "n", "nope", "false"})
OPTION_SYNONYMS: dict[str, frozenset[str]] = {
    "repair": frozenset({"repair", "repaired", "repairs", "a repair", "free repair", "fix", "fixed"}),
    "replacement": frozenset({"replacement", "replace", "replaced", "a replacement", "exchange", "new one"}),
    "refund": frozenset({"refund", "refunded", "a refund", "full refund", "money back"}),
    "not covered": frozenset({"not covered", "no", "none", "no coverage", "uncovered", "nothing",
                              "not covered by warranty", "not covered by the warranty", "no warranty"}),
    "original payment method": frozenset({"original payment method", "original payment", "original method",
                                          "original form of payment", "original method of payment",
                                          "same payment method", "original payment source",
                                          "refund to original payment method"}),
    "store credit": frozenset({"store credit", "credit", "shop credit", "store credits", "account credit"}),
    "gift card": frozenset({"gift card", "giftcard", "new gift card", "a gift card", "a new gift card"}),
}


def normalise_text(value) -> str:
    """Lower case, hyphens/underscores as spaces, other punctuation dropped, spaces collapsed."""
    text = str(value).lower().replace("-", " ").replace("_", " ")
    return " ".join(_PUNCT.sub(" ", text).split())


MAX_ANSWER_NUMBER = 1e12  # larger (or non-finite) numbers are never a policy amount


def parse_number(value) -> float | None:
    """A number from a JSON number or from a string holding exactly one distinct number
    ("$1,234.50" -> 1234.5); the zero words ("free", "none", ...) are 0; else None (also for
    numbers beyond +-MAX_ANSWER_NUMBER, inf and nan)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = float(value) if abs(value) <= MAX_ANSWER_NUMBER else math.inf
    if isinstance(value, float):
        return value if abs(value) <= MAX_ANSWER_NUMBER else None  # inf, nan and 1e308 match nothing
    if not isinstance(value, str):
        return None
    found = {float(m.replace(",", "")) for m in _NUMBER.findall(value)}
    if any(not abs(x) <= MAX_ANSWER_NUMBER for x in found):
        return None
    if len(found) == 1:
        return found.pop()
    if not found and normalise_text(value) in ZERO_WORDS:
        return 0.0
    return None


def check_answer(kind: str, truth, given, options: tuple[str, ...] = (), synonyms: dict | None = None) -> bool:
    """Whether `given` (the agent's policy_answer) matches `truth` (see the module doc)."""
    if given is None:
        return False
    if kind == "money":
        x = parse_number(given)
        return x is not None and round(x * 100) == truth
    if kind in ("days", "business_days", "points", "months", "percent"):
        x = parse_number(given)
        return x is not None and abs(x - truth) <= 1e-6 * max(1.0, abs(truth))
    if kind == "yesno":
        if isinstance(given, bool):
            return ("yes" if given else "no") == truth
        if not isinstance(given, str):
            return False
        words = normalise_text(given).split()
        if not words:
            return False
        said = "yes" if words[0] in YES_WORDS else "no" if words[0] in NO_WORDS else None
        return said == truth
    if kind == "choice":
        if not isinstance(given, str):
            return False
        text = normalise_text(given)
        for article in ("a ", "an ", "the "):
            if text.startswith(article) and text[len(article):]:
                text = text[len(article):]
        table = dict(OPTION_SYNONYMS)
        for option, extra in (synonyms or {}).items():
            table[option] = table.get(option, frozenset()) | frozenset(extra)
        matches = [o for o in options if text == o or text in table.get(o, ())]
        return matches == [truth]
    raise ValueError(f"unknown answer kind {kind!r}")


def display_answer(kind: str, value):
    """The truth as an agent would write it: dollars for money, ints, words."""
    if kind == "money":
        return value / 100
    return value


# --------------------------------------------------------------------------- environment

@dataclass
class PolicyGoal:
    question: PolicyQuestion
    rule_id: str
    kind: str
    answer: object  # cents for money
    options: tuple[str, ...]
    synonyms: dict  # option -> extra accepted words (the payment's own name, ...)
    facts: dict  # slot -> the shopper's clause
    question_text: str

    @property
    def expected(self):
        return display_answer(self.kind, self.answer)


class PolicyEnv(ShopEnv):
    env_id = "E_POLICY"
    uses_policy = True
    tools = ("policy_search", "ask_user")
    answer_fields = ("policy_answer",)
    task_brief = (
        "The shopper asks a question about the store's policies. Find the rule with policy_search (ask the "
        "shopper for any missing detail with ask_user), apply it to the shopper's situation and answer "
        "with policy_answer: a number for amounts (dollars, days, business days, points), yes or no, or "
        "the option's name (e.g. repair, replacement, refund, not covered, store credit)."
    )

    # ------------------------------------------------------------------ generation
    def _oracle_turns(self, omitted: bool) -> int:
        """[ask?, policy_search] -> answer."""
        return math.ceil((1 + int(omitted)) / self.axes.B_tool) + 1

    def _make_goal(self, q: PolicyQuestion) -> PolicyGoal:
        ctx = q.context
        variant = int(self.rand("goal").integers(2))
        facts = {}
        if "item" in ctx:
            facts["item"] = fact_text("item", ctx["item"], ctx)
        for slot, _ in q.rule.param("scope"):
            if slot != "department":
                facts[slot] = fact_text(slot, ctx[slot], ctx, variant)
        for slot in q.needed:
            if slot not in facts and slot != "item":
                facts[slot] = fact_text(slot, ctx[slot], ctx, variant)
        question = QUESTIONS[ctx["question"]]
        synonyms = {}
        if ctx["question"] == "refund_method":
            if ctx["payment"] == "gift card":
                question = GIFT_CARD_REFUND_QUESTION
            else:
                name = PAYMENT_NAMES[ctx["payment"]].lower()
                synonyms["original payment method"] = (name, f"my {name}", f"original {name}", f"back to {name}")
        return PolicyGoal(q, q.rule.rule_id, q.kind, q.answer, q.rule.param("options"), synonyms, facts, question)

    def _generate(self) -> Utterance:
        self.retrieved: set[str] = set()  # rule ids policy_search has returned this episode
        rng = self.rand("goal")
        q = sample_question(self.world.policy, self.axes.B_branch, rng, p_edge=self.axes.p_edge, stratum=self.seed)
        self.goal = self._make_goal(q)
        anchors = {"item", "department"} | {slot for slot, _ in q.rule.param("scope")}
        fixed, optional = [], []
        for slot, text in self.goal.facts.items():
            keywords = SLOT_KEYWORDS.get(slot, (slot.replace("_", " "),))
            s = Slot(slot, text, _cap(text) + ".", keywords, FACT_HINTS.get(slot, f"the {keywords[0]}"))
            (fixed if slot in anchors else optional).append(s)
        self.shopper.plan_disclosure(fixed, 0.0, keep=len(fixed))
        self.shopper.plan_disclosure(optional, self.axes.p_missing, keep=0)
        if self.shopper.omitted and self._oracle_turns(True) > self.axes.T_max:
            self.shopper.omitted.clear()
        self.plan_turns = self._oracle_turns(bool(self.shopper.omitted))
        self.plan_caused = {0} if self.shopper.omitted else set()  # the question comes first
        self._order = [int(i) for i in self.rand("shopper").permutation(len(self.goal.facts))]
        return self._opening()

    def _fact_sentences(self, revealed_only: bool) -> list[str]:
        names = list(self.goal.facts)
        first = [n for n in names if n == "item"]
        rest = [names[i] for i in self._order if names[i] != "item"]
        return [_cap(self.goal.facts[n]) + "." for n in first + rest
                if not revealed_only or self.shopper.revealed(n)]

    def _opening(self) -> Utterance:
        sh = self.shopper
        parts = [sh.choose(GREETINGS)] + self._fact_sentences(True) + [self.goal.question_text]
        if sh.omitted:  # an unsaid fact is mentioned as open, so the agent can ask for it
            facts = join_phrases([sh.slots[n].hint for n in sh.omitted])
            parts.append(fill(sh.choose(OMITTED_FACTS), facts=facts))
        disclosed = tuple(n for n in sh.slots if sh.revealed(n))
        return sh.say(" ".join(parts), "opening", disclosed)

    def _on_tool(self, name: str, args, result: dict) -> None:
        if name == "policy_search":
            self.retrieved.update(r["rule_id"] for r in result.get("rules", []))

    # ------------------------------------------------------------------ shopper reactions
    def _react(self, message: str, turn: int, had_tools: bool) -> Utterance | None:
        """A question in the agent's text is answered like `ask_user`."""
        if "?" in message:
            return self.shopper.answer(message, turn)
        return None

    def _switch_goal(self, rng) -> Utterance | None:
        """(E_JOURNEY) The shopper asks a different policy question at the same depth, stating
        every fact at once."""
        q = sample_question(self.world.policy, self.goal.question.depth, rng, p_edge=self.axes.p_edge)
        self.goal = self._make_goal(q)
        self.shopper.omitted.clear()
        for slot, text in self.goal.facts.items():
            self.shopper.slots[slot] = Slot(slot, text, _cap(text) + ".",
                                            SLOT_KEYWORDS.get(slot, (slot.replace("_", " "),)))
        self._order = [int(i) for i in rng.permutation(len(self.goal.facts))]
        self.replan_turns += 1  # the new question needs its own policy_search
        text = " ".join([self.shopper.choose(SWITCH_LEADS)] + self._fact_sentences(False) + [self.goal.question_text])
        return self.shopper.say(text, "switch", tuple(self.goal.facts))

    # ------------------------------------------------------------------ verifier
    def _score(self, answer: Answer | None) -> TaskScore:
        g = self.goal
        given = answer.policy_answer if answer is not None else None
        grounded = g.rule_id in self.retrieved
        if given is not None and not grounded:
            self.ungrounded.append(f"policy_answer without rule {g.rule_id}")
        ok = grounded and check_answer(g.kind, g.answer, given, g.options, g.synonyms)
        details = {"rule_id": g.rule_id, "depth": g.question.depth, "kind": g.kind, "expected": g.expected,
                   "given": given, "grounded": grounded}
        return TaskScore(1.0 if ok else -1.0, ok, details)
