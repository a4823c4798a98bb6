"""Oracle for E_JOURNEY: delegate to the planner of the active sub-task."""

from __future__ import annotations

from .common import Planner


class JourneyPlanner(Planner):
    def __init__(self, env):
        super().__init__(env)
        self._index = None
        self._inner = None

    def next_action(self) -> dict:
        from . import planner_for

        env = self.env
        sub = env._sync()
        if self._index != (env.index, id(sub)):
            self._index = (env.index, id(sub))
            self._inner = planner_for(sub)
        action = self._inner.next_action()
        if action.get("answer") is not None:
            action["answer"] = dict(action["answer"], env=sub.env_id)
        return action
