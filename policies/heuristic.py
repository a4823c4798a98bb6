"""`HeuristicPolicy`: a fair non-LLM baseline that sees only the observation.

It reads the observation: the budgets from its structured fields (`turn_budget`,
`tool_budget`, `turns_left`), and the transcript (shopper messages, its own tool results,
which are JSON). It searches with the shopper's words, asks once for missing details, and
answers with simple rules. It has no access to the hidden goal, so typos, omitted slots,
distractors and stock-outs make it fail more often as difficulty rises. One strategy per
environment, named by the environment's registry entry (`EnvSpec.heuristic`: a function of
a `Transcript` returning an action); each derives all of its state from the observation.
"""

from __future__ import annotations

import json
import re

from ecomrlve.envs.registry import intent_table, resolve, spec_for

from .questions import open_choice_question

NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5}
_WORD = re.compile(r"[a-z0-9][a-z0-9\-\.]*")
STOP = frozenset(
    "a an and the i im i'm my me to for of in on with please could can you your hi hey hello "
    "looking need want would like some it is are that this be any top suggest picks put add cart".split()
)


class Transcript:
    """Read-only helpers over an observation's messages."""

    def __init__(self, obs: dict):
        self.obs = obs
        self.messages = obs["messages"]
        self.tool_budget, self.turn_budget = obs["tool_budget"], obs["turn_budget"]
        self.turn = obs["turn"]

    def user_texts(self) -> list[str]:
        return [m["content"] for m in self.messages if m["role"] == "user"]

    def user_text(self) -> str:
        return " ".join(self.user_texts()).lower()

    def results(self, tool: str) -> list[dict]:
        """`tool`'s results in call order; an error result (``{"error": ...}``, e.g. an
        unknown id) is not a result and is left out."""
        out = []
        for m in self.messages:
            if m["role"] == "tool" and m.get("name") == tool:
                try:
                    result = json.loads(m["content"])
                except json.JSONDecodeError:
                    continue
                if isinstance(result, dict) and "error" not in result:
                    out.append(result)
        return out

    def called(self, tool: str) -> int:
        n = 0
        for m in self.messages:
            for c in m.get("tool_calls", []) if m["role"] == "assistant" else []:
                n += c["function"]["name"] == tool
        return n

    def search_hits(self) -> list[dict]:
        return [r for res in self.results("catalog_search") for r in res.get("results", [])]

    def turns_left(self) -> int:
        return self.obs["turns_left"]


def keywords(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOP and not w.isdigit()]


def call(name: str, **args) -> dict:
    return {"name": name, "args": {k: v for k, v in args.items() if v is not None}}


# --------------------------------------------------------------------------- strategies

def cart_strategy(t: Transcript) -> dict:
    """History -> match items by brand -> variants -> add -> done."""
    text = t.user_text()
    history = t.results("user_get_visit_history")
    if not history:
        return {"tool_calls": [call("user_get_visit_history")]}
    viewed = history[-1].get("viewed_products", [])
    wanted = [p for p in viewed if p["brand"].lower() in text]
    variants = {r["product_id"]: r["variants"] for r in t.results("catalog_get_variants") if "variants" in r}
    need_variants = [p["product_id"] for p in wanted if p["product_id"] not in variants]
    if need_variants:
        calls = [call("catalog_get_variants", product_id=pid) for pid in need_variants]
        question = open_choice_question(text)
        if question and not t.called("ask_user") and len(calls) < t.tool_budget:
            calls.append(call("ask_user", question=question))
        return {"tool_calls": calls[: t.tool_budget]}
    cart = t.results("cart_add") + t.results("cart_view")
    in_cart = {ln["product_id"] for c in cart for ln in c.get("cart", c).get("lines", [])}
    adds = []
    for p in wanted:
        if p["product_id"] in in_cart:
            continue
        vs = variants.get(p["product_id"], [])
        pick = next((v for v in vs if v["value"].lower() in text and v["in_stock"]), None)
        pick = pick or next((v for v in vs if v["in_stock"]), None)
        qty = 1
        for word, n in NUMBER_WORDS.items():
            if f"{word} of the {p['brand'].lower()}" in text:
                qty = n
        adds.append(call("cart_add", product_id=p["product_id"], variant_id=pick["variant_id"] if pick else None,
                         quantity=qty))
    if len(adds) > t.tool_budget:
        return {"tool_calls": adds[: t.tool_budget]}
    return {"tool_calls": adds, "answer": {"done": True}}


_PRICE_CAP = re.compile(r"(?:under|at most|up to|budget is) \$([\d,]+(?:\.\d+)?)")
_RATING = re.compile(r"at least (\d(?:\.\d)?) stars")
_SHIP = re.compile(r"within (\d+) days")


def stated_filters(text: str) -> dict:
    """Filters a shopper stated in plain words (price cap, rating, shipping)."""
    f: dict = {"in_stock": True}
    if m := _PRICE_CAP.search(text):
        f["price_max"] = float(m.group(1).replace(",", ""))
    if m := _RATING.search(text):
        f["rating_min"] = float(m.group(1))
    if m := _SHIP.search(text):
        f["ship_days_max"] = int(m.group(1))
    return f


def recommend_strategy(t: Transcript) -> dict:
    """Ask once, search with the shopper's words and stated filters, recommend in-stock hits."""
    question = open_choice_question(t.user_text())
    if question and not t.called("ask_user") and t.turns_left() > 2:
        return {"tool_calls": [call("ask_user", question=question)]}
    hits = t.search_hits()
    if not hits:
        text = t.user_text()
        query = " ".join(keywords(text.split(".")[0])[:8]) or "best seller"
        return {"tool_calls": [call("catalog_search", query=query, filters=stated_filters(text), top_k=20)]}
    k = 3
    m = re.search(r"top (\d+)", t.user_text())
    if m:
        k = int(m.group(1))
    ids: list[str] = []
    for h in hits:
        if h.get("in_stock") and h["product_id"] not in ids:
            ids.append(h["product_id"])
    return {"answer": {"recommended_product_ids": ids[:k]}}


_CATEGORY_LIST = re.compile(r"categories: ([^.?!]+)")
_BUDGET_TOTAL = re.compile(r"\$([\d,]+(?:\.\d+)?)")


def bundle_strategy(t: Transcript) -> dict:
    """Search each listed category, pick the cheapest in-stock hit of each, answer."""
    text = " ".join(t.user_texts())
    m = _CATEGORY_LIST.search(text)
    names = [n.strip() for n in re.split(r",| and ", m.group(1))] if m else []
    names = [n for n in names if n]
    searched = {r.get("query"): r.get("results", []) for r in t.results("catalog_search")}
    todo = [n for n in names if n not in searched]
    if todo and t.turns_left() > 1:
        return {"tool_calls": [call("catalog_search", query=n, filters={"in_stock": True}, top_k=10)
                               for n in todo[: t.tool_budget]]}
    picks = []
    for n in names:
        hits = [h for h in searched.get(n, []) if h.get("in_stock") and h["category"].lower().endswith(n.lower())]
        if hits:
            picks.append(min(hits, key=lambda h: h["price"])["product_id"])
    return {"answer": {"recommended_product_ids": picks}}


_OTHERWISE = re.compile(r"Otherwise: ([^.]+)")
_NUMBER = re.compile(r"\$?(\d+(?:\.\d+)?)")


def policy_strategy(t: Transcript) -> dict:
    """Search the policy with the question; answer the top rule's default case."""
    found = t.results("policy_search")
    if not found:
        question = t.user_texts()[0] if t.user_texts() else "return policy"
        return {"tool_calls": [call("policy_search", query=question[:400], top_k=3)]}
    rules = found[-1].get("rules", [])
    m = _OTHERWISE.search(rules[0]["text"]) if rules else None
    if not m:
        return {"answer": {"policy_answer": "no"}}
    outcome = m.group(1).strip()
    number = _NUMBER.search(outcome)
    if outcome.lower().startswith(("no", "not")):
        return {"answer": {"policy_answer": "no"}}
    if number:
        return {"answer": {"policy_answer": float(number.group(1))}}
    return {"answer": {"policy_answer": outcome}}


ORDER_ID = re.compile(r"\bW\d{7}\b")
REASON_WORDS = (
    ("damaged", ("damaged", "broken")),
    ("defective", ("defective", "stopped working", "doesn't work", "does not work")),
    ("wrong_item", ("wrong item", "wrong thing", "not the item")),
    ("does_not_fit", ("fit",)),
    ("not_as_described", ("described", "description", "listing")),
    ("no_longer_needed", ("don't need", "no longer need", "changed my mind")),
)
METHOD_WORDS = (("pickup", ("pick", "courier")), ("drop_off", ("drop",)), ("mail", ("mail", "ship it back")))


def _overlap(text: str, title: str) -> int:
    words = set(keywords(text))
    return sum(w in words for w in keywords(title))


def _best_order(t: Transcript) -> str | None:
    """The order the shopper means: an id they wrote, else the best word overlap."""
    text = t.user_text()
    m = ORDER_ID.search(" ".join(t.user_texts()))
    if m:
        return m.group(0)
    orders = (t.results("order_list") or [{}])[-1].get("orders", [])
    scored = [(-_overlap(text, " ".join(o.get("items", []))), i, o["order_id"]) for i, o in enumerate(orders)]
    return min(scored)[2] if scored else None


def _pick(text: str, table, default: str) -> str:
    return next((name for name, words in table if any(w in text for w in words)), default)


ORDER_QUESTION = "Which order do you mean?"
NO_ORDER = {"assistant_message": "I can't find any order on your account."}  # order_list listed none


def _order_unnamed(t: Transcript) -> bool:
    """The shopper has not said which order yet (no id, no "my order with/from ...")."""
    text = t.user_text()
    return not ORDER_ID.search(" ".join(t.user_texts())) and "my order with" not in text \
        and "my order from" not in text


def status_strategy(t: Transcript) -> dict:
    """order_list (+ ask which order, when the shopper did not say) -> order_get of the
    matching order -> report its status."""
    ask = _order_unnamed(t) and not t.called("ask_user")
    if not t.results("order_list"):
        calls = [call("order_list")]
        if ask and t.tool_budget > 1:
            calls.append(call("ask_user", question=ORDER_QUESTION))
        return {"tool_calls": calls}
    if ask:
        return {"tool_calls": [call("ask_user", question=ORDER_QUESTION)]}
    order_id = _best_order(t)
    if order_id is None:
        return dict(NO_ORDER)
    got = {r.get("order_id"): r for r in t.results("order_get")}
    if order_id not in got:
        return {"tool_calls": [call("order_get", order_id=order_id)]}
    order = got[order_id]
    answer = {"selected_order_id": order_id, "order_status": order.get("status")}
    if order.get("eta") and any(w in t.user_text() for w in ("when", "arrive", "eta", "deliver")):
        answer["eta"] = order["eta"]
    return {"answer": answer}


def return_strategy(t: Transcript) -> dict:
    """order_list (+ ask) -> order_get -> eligibility -> refund return -> answer."""
    if not t.results("order_list"):
        calls = [call("order_list")]
        question = open_choice_question(t.user_text())
        if question and t.tool_budget > 1:
            calls.append(call("ask_user", question=question))
        return {"tool_calls": calls}
    text = t.user_text()
    order_id = _best_order(t)
    if order_id is None:
        return dict(NO_ORDER)
    got = {r.get("order_id"): r for r in t.results("order_get")}
    if order_id not in got:
        return {"tool_calls": [call("order_get", order_id=order_id)]}
    lines = got[order_id].get("lines", [])
    line = max(lines, key=lambda ln: _overlap(text, ln["title"])) if lines else None
    if line is None:
        return {"answer": {"selected_order_id": order_id, "eligible": False}}
    checks = [r for r in t.results("return_check_eligibility") if r.get("line_id") == line["line_id"]]
    if not checks:
        return {"tool_calls": [call("return_check_eligibility", order_id=order_id, line_id=line["line_id"])]}
    answer = {"selected_order_id": order_id, "selected_line_id": line["line_id"], "eligible": checks[-1]["eligible"]}
    if not checks[-1]["eligible"]:
        return {"assistant_message": "Sorry, this item is not eligible for return.", "answer": answer}
    reason = _pick(text, REASON_WORDS, "other")
    method = _pick(text, METHOD_WORDS, "mail")
    return {"tool_calls": [call("return_initiate", order_id=order_id, line_id=line["line_id"], reason=reason,
                                method=method)], "answer": answer}


DEFAULT_INTENT = "E_PD"  # a journey request no intent words match


# words of a shopper's lead into a new request ("Thanks! One more thing."): a leading sentence
# made only of these carries nothing to search for
LEAD_WORDS = frozenset(
    "thanks thank great perfect okay ok alright all right one more thing another request something else too "
    "there's there have got also".split())
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def drop_lead(text: str) -> str:
    """`text` without its leading sentences that hold only `LEAD_WORDS` (the rest unchanged)."""
    sentences = _SENTENCE_END.split(text)
    i = 0
    while i < len(sentences) - 1 and set(re.findall(r"[a-z']+", sentences[i].lower())) - STOP <= LEAD_WORDS:
        i += 1
    return " ".join(sentences[i:])


def _osa_within(a: str, b: str, budget: int) -> bool:
    """Optimal-string-alignment distance of `a` and `b` (swap, drop, double, wrong key: one
    edit each) is at most `budget`."""
    if abs(len(a) - len(b)) > budget:
        return False
    prev2, prev = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if prev2 is not None and i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > budget:
            return False
        prev2, prev = prev, cur
    return prev[-1] <= budget


def _typo_match(phrase: str, words: list[str]) -> bool:
    """`phrase` occurs in `words` with at most one typo per 7 letters (at least one)."""
    n = len(phrase.split())
    budget = 1 + len(phrase) // 8
    return any(_osa_within(phrase, " ".join(words[i:i + n]), budget)
               for i in range(len(words) - n + 1))


def request_kind(text: str) -> str:
    """The kind of request `text` (lower case) is: the first kind whose intent words occur
    in it; failing that (a shopper's typos), the first whose words occur with typos; else
    `DEFAULT_INTENT`."""
    table = intent_table()
    kind = next((k for k, phrases in table if any(w in text for w in phrases)), None)
    if kind is None:
        words = re.findall(r"[a-z']+:?", text)
        kind = next((k for k, phrases in table if any(len(w) >= 4 and _typo_match(w, words) for w in phrases)),
                    DEFAULT_INTENT)
    return kind


def journey_strategy(t: Transcript) -> dict:
    """Treat the messages since the last answer as one request, its shopper's lead
    ("Thanks! One more thing.") dropped; guess its kind from words."""
    start = max((i for i, m in enumerate(t.messages) if m["role"] == "assistant" and "answer" in m), default=0)
    messages = [t.messages[0]] + t.messages[start + 1:]
    if start:
        at = next((i for i, m in enumerate(messages) if m["role"] == "user"), None)
        if at is not None:
            messages[at] = dict(messages[at], content=drop_lead(messages[at]["content"]))
    sub = Transcript(dict(t.obs, messages=messages))
    first = next((m["content"].lower() for m in sub.messages if m["role"] == "user"), "")
    kind = request_kind(first)
    action = strategy_for(kind)(sub)
    if "answer" in action:
        action["answer"] = dict(action["answer"], env=kind)
    return action


class HeuristicPolicy:
    """Rule-based agent over observations only."""

    def reset(self) -> None:
        pass

    def act(self, obs: dict) -> dict:
        strategy = strategy_for(obs["env_id"])
        if strategy is None:
            return {"assistant_message": "Sorry, I can't help with that."}
        return strategy(Transcript(obs))


def strategy_for(env_id: str):
    """The strategy `env_id`'s registry entry names, or None when it declares none."""
    target = spec_for(env_id).heuristic
    return None if target is None else resolve(target)
