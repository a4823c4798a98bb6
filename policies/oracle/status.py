"""Oracle for E_STATUS: [order_list, ask?] -> order_get(target) -> answer (status, eta)."""

from __future__ import annotations

from .common import Planner, call, slot_question


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
        if g.eta_asked and order.eta is not None:
            answer["eta"] = order.eta.isoformat()
        return {"answer": answer}
