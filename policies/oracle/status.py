"""Oracle for E_STATUS: [order_list, ask?] -> order_get(target) -> answer (status, eta)."""

from __future__ import annotations

from .common import Planner, call, slot_question

# each says exactly one status (the claim checker reads it)
STATUS_WORDS = {
    "placed": "has been placed and is being prepared", "shipped": "has shipped", "in_transit": "is in transit",
    "delivered": "was delivered", "cancelled": "was cancelled", "returned": "was returned",
}


class StatusPlanner(Planner):
    def __init__(self, env):
        super().__init__(env)
        self.phase = 0
        self.pending: list[dict] = []

    def next_action(self) -> dict:
        env, g = self.env, self.env.goal
        if self.phase == 0:
            self.pending = [call("order_list")]
            if env.shopper.omitted:
                self.pending.append(call("ask_user", question=slot_question(env.shopper)))
            self.phase = 1
        if self.phase == 1 and not self.pending:
            self.pending = [call("order_get", order_id=g.order_id)]
            self.phase = 2
        if self.pending:
            taken, self.pending = self.pending[: self.budget], self.pending[self.budget :]
            return {"tool_calls": taken}
        order = env.world.order(g.order_id)
        answer = {"selected_order_id": g.order_id, "order_status": order.status}
        message = f"I found it: your order {order.order_id} {STATUS_WORDS[order.status]}."
        if g.eta_asked and order.eta is not None:
            answer["eta"] = order.eta.isoformat()
            message += f" It should arrive on {order.eta:%B} {order.eta.day}, {order.eta.year}."
        elif g.eta_asked:
            message += " There is no delivery date for it."
        return {"assistant_message": message, "answer": answer}
