"""Oracle for E_POLICY: [ask_user if facts were omitted, policy_search] -> answer.

The search query is the generating rule's title (its topic and scope words), checked with
the same ranking `policy_search` uses so that the rule is within the results; if a search
result in the transcript does not show the rule, the planner searches again with the next
candidate phrasing before answering. The answer is the rule evaluated on the shopper's
situation, written as an agent would (dollars for money).
"""

from __future__ import annotations

import json

from ecomrlve.envs.policy_kb import rank_rules

from ecomrlve.envs.shopper import count_noun
from ecomrlve.envs.store_policy import money

from .common import Planner, call, slot_question

UNITS = {"days": "day", "business_days": "business day", "points": "point", "months": "month"}

SEARCH_TOP_K = 3


def query_candidates(rule) -> list[str]:
    """Phrasings of a search for `rule`, most natural first."""
    header = rule.text.split(" The first matching case applies:")[0]
    return [rule.title, f"{rule.title} {header}", f"{rule.title} {rule.text}"]


def pick_query(rules, rule, top_k: int = SEARCH_TOP_K) -> tuple[str, int]:
    """The first candidate query whose top results include `rule` (else the last, with the
    widest top_k)."""
    for k in (top_k, 10):
        for q in query_candidates(rule):
            if any(r.rule_id == rule.rule_id for r in rank_rules(rules, q, k)):
                return q[:500], k
    return query_candidates(rule)[-1][:500], 10


class PolicyPlanner(Planner):
    def __init__(self, env):
        super().__init__(env)
        self._start()

    def _start(self) -> None:
        self.goal = self.env.goal
        self.asked = False
        self.searches = 0
        self.pending: list[dict] = []

    def _found(self) -> bool:
        """Whether a policy_search result in the transcript shows the goal's rule (since the
        current goal began)."""
        for msg in reversed(self.env.messages):
            if msg.get("role") == "tool" and msg.get("name") == "policy_search":
                try:
                    rules = json.loads(msg["content"]).get("rules", [])
                except (ValueError, TypeError, AttributeError):
                    continue
                if any(r.get("rule_id") == self.goal.rule_id for r in rules):
                    return True
        return False

    def _search(self) -> dict:
        env = self.env
        rule = self.goal.question.rule
        cands = query_candidates(rule)
        if self.searches == 0:
            query, k = pick_query(env.world.policy.rules, rule)
        else:  # (defensive) the first search missed: the fullest phrasing, widest results
            query, k = cands[min(self.searches, len(cands) - 1)][:500], 10
        self.searches += 1
        return call("policy_search", query=query, top_k=k)

    def next_action(self) -> dict:
        env = self.env
        if env.goal is not self.goal:  # a journey switched the question
            self._start()
        if not self.pending:
            if env.shopper.omitted and not self.asked:
                self.pending.append(call("ask_user", question=slot_question(env.shopper)))
                self.asked = True
            if self.searches == 0 or (not self._found() and self.searches < 3):
                self.pending.append(self._search())
        if self.pending:
            taken, self.pending = self.pending[: self.budget], self.pending[self.budget:]
            return {"tool_calls": taken}
        return {"assistant_message": self._message(), "answer": {"policy_answer": self.goal.expected}}

    def _message(self) -> str:
        goal = self.goal
        a = goal.answer
        if goal.kind == "money":
            value = money(int(a))
        elif goal.kind in UNITS and isinstance(a, int):
            value = count_noun(a, UNITS[goal.kind])
        elif goal.kind == "percent":
            value = f"{a}%"
        else:
            value = str(a)
        return (f"I checked our store policy ({goal.question.rule.title}). "
                f"For your situation, the answer is {value}.")
