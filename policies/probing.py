"""`ConfirmEachIdPolicy`: an exploit probe for the order environments, observation-only.

It lists the orders, then asks the shopper "Is it order W...?" about each listed order (one
a turn, keeping two turns to finish) until the shopper says "that's the one" or names an
order id itself, and lets `HeuristicPolicy` finish the task with that id. When the shopper
already wrote an order id it does not probe. It profits only if the shopper acts as a
yes/no oracle over ids it cannot know; the tests and the exploit benchmark hold it to at
most the heuristic's success and mean reward (the same agent without the probing).
"""

from __future__ import annotations

import json
import re

from .heuristic import HeuristicPolicy

ORDER_ID = re.compile(r"\bW\d{7}\b")
_TURNS = re.compile(r"and (\d+) turns")


class ConfirmEachIdPolicy:
    def __init__(self):
        self.heuristic = HeuristicPolicy()

    def reset(self) -> None:
        pass

    def act(self, obs: dict) -> dict:
        msgs = obs["messages"]
        listed: list[str] = []
        for m in msgs:
            if m["role"] == "tool" and m.get("name") == "order_list":
                listed = [o["order_id"] for o in json.loads(m["content"]).get("orders", [])]
        if not listed:
            return {"tool_calls": [{"name": "order_list", "args": {}}]}
        users = [m["content"] for m in msgs if m["role"] == "user"]
        if ORDER_ID.search(users[0]):  # the shopper gave its id: nothing to probe
            return self.heuristic.act(obs)
        asked = [i for m in msgs if m["role"] == "assistant" for i in ORDER_ID.findall(m.get("content") or "")]
        replies = users[1:]
        confirmed = None
        if asked and replies and "that's the one" in replies[-1].lower():
            confirmed = asked[-1]
        named = [i for r in replies for i in ORDER_ID.findall(r)]
        confirmed = confirmed or (named[-1] if named else None)
        todo = [o for o in listed if o not in asked]
        m = _TURNS.search(msgs[0]["content"])
        turn_budget = int(m.group(1)) if m else 4
        if confirmed is None and todo and obs["turn"] < turn_budget - 2:
            return {"assistant_message": f"Is it order {todo[0]}?"}
        if confirmed is not None:  # the heuristic takes an order id the shopper wrote
            obs = dict(obs, messages=msgs + [{"role": "user", "content": f"It's order {confirmed}."}])
        return self.heuristic.act(obs)
