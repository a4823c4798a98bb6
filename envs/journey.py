"""E_JOURNEY: several intents of the other environments chained in one conversation and
one world.

L(d) = min(5, 2 + d//4) sub-tasks of distinct kinds run one after another over the same
`World`, transcript, seen ids and clock. The shopper reveals the next intent only after the
current one is answered (each with its own answer object; `answer.env` may name the
sub-task). With p_switch(d) the shopper changes its mind after the agent's first turn on a
sub-task: it modifies the intent when that environment supports it (`_switch_goal`), or
drops it; the verifier then uses the updated goal, and a dropped intent is not scored.
Whether a sub-task will be dropped is decided when the journey is generated, never by what
the agent does: a modification the agent's actions have made moot (a return already
started) simply does not happen. At least one request always stays live, so no journey can
be scored on nothing.

r_task is the mean of the scored sub-tasks' r_task (an intent never reached scores -1);
correct only if every scored sub-task is.

Turn budget: each sub-task gets the standard T_max(d), so the journey's budget is
L(d) * T_max(d) (the per-intent budget of `envs/difficulty.py`, once per request).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .actions import Answer, InvalidAction
from .base import ShopEnv, require_answer
from .registry import env_class, journey_kinds
from .reward import TaskScore
from .rng import EpisodeRandom
from .shopper import TemplateShopper, Utterance

# the shopper's lead into the next request: thanks only when the agent wrote to it
TRANSITIONS = ("Thanks! One more thing.", "Great, thank you. There's something else, too.",
               "Perfect, thanks. I have another request.", "Thanks. Another thing.")
TRANSITIONS_UNTHANKED = ("Okay. One more thing.", "Alright. There's something else, too.",
                         "Okay, I have another request.", "Alright. Another thing.")
_GREETING = re.compile(r"^(?:Hi|Hello|Hey)(?: there)?[!,.]?\s+")
DROPS = ("Actually, never mind that one, forget it.", "Hmm, scratch that, I don't need it anymore.")


@dataclass
class SubTask:
    kind: str
    env: ShopEnv
    start_turn: int = -1
    switch: bool = False
    drop: bool = False  # the planned switch drops the request (decided at generation)
    switched: bool = False
    modified: bool = False  # the switch changed the request
    dropped: bool = False
    score: TaskScore | None = None


def _union(attr: str) -> tuple[str, ...]:
    """`attr` ("tools" or "answer_fields") of every journey kind, first occurrence kept."""
    out: list[str] = []
    for kind in journey_kinds():
        try:
            cls = env_class(kind)
        except ImportError:
            continue
        out += [x for x in getattr(cls, attr) if x not in out]
    return tuple(out)


class _JourneyUnion:
    """`JourneyEnv.tools` / `.answer_fields`: on the class, the union over the journey kinds
    registered now; an instance pins the union it was built with (its own attribute)."""

    def __init__(self, attr: str):
        self.attr = attr

    def __get__(self, obj, cls=None) -> tuple[str, ...]:
        return _union(self.attr)


class JourneyEnv(ShopEnv):
    env_id = "E_JOURNEY"
    uses_policy = True
    task_brief = (
        "Help the shopper with several requests, one after another. Answer each request with its "
        "own answer object (set answer.env to the request's kind if you know it); the shopper "
        "then tells you the next one."
    )
    tools = _JourneyUnion("tools")
    answer_fields = _JourneyUnion("answer_fields")

    def __init__(self, catalog, difficulty: int = 0):
        # the kinds registered now (`ecomrlve.envs.registry.journey_kinds`)
        self.kinds = journey_kinds()
        self.tools, self.answer_fields = _union("tools"), _union("answer_fields")
        super().__init__(catalog, difficulty)

    # ------------------------------------------------------------------ sub-tasks
    @property
    def active(self) -> SubTask:
        return self.subtasks[self.index]

    def _sync(self) -> ShopEnv:
        sub = self.active.env
        sub.turn = max(0, self.turn - self.active.start_turn)
        return sub

    def _bind(self, sub: ShopEnv, i: int) -> None:
        """Make `sub` run inside this episode: shared world, transcript, ids and turn
        accounting; its own random streams and slot tracking."""
        sub.seed, sub.difficulty = self.seed, self.difficulty
        sub.axes = self.sub_axes
        sub.rand = EpisodeRandom(self.seed, f"{self.env_id}/{i}/{sub.env_id}", self.difficulty)
        sub.world = self.world
        sub.seen_ids, sub.used_ids, sub.ungrounded = self.seen_ids, self.used_ids, self.ungrounded
        sub.messages, sub.utterances = self.messages, self.utterances
        sub.shopper = TemplateShopper(sub.rand, self.axes.p_noise, patience=sub._patience(),
                                      caused_turns=self.caused_turns)
        sub.turn, sub.done, sub.reward_info = 0, False, None
        sub.plan_turns = sub.replan_turns = 0
        sub.plan_caused = set()
        sub.claims_checked = sub.claims_false = 0

    def _activate(self, i: int, lead: str) -> Utterance:
        self.index = i
        task = self.subtasks[i]
        task.start_turn = self.turn + 1 if self.turn or i else 0
        n_sched = len(self.world.scheduled_stockouts)
        opening = task.env._generate()
        # a sub-task schedules stock-outs in its own turns; shift them onto the journey's clock
        sched = self.world.scheduled_stockouts
        self.world.scheduled_stockouts = sched[:n_sched] + [(t + task.start_turn, r) for t, r in sched[n_sched:]]
        self.shopper = task.env.shopper
        if not lead:
            return opening
        text, clean = _without_greeting(opening.text, opening.clean_text)
        return Utterance(f"{lead} {text}", f"{lead} {clean}", opening.kind, opening.slots, opening.mentioned_ids)

    def _generate(self) -> Utterance:
        rng = self.rand("journey")
        self.caused_turns: set[int] = set()
        kinds = [self.kinds[j] for j in rng.permutation(len(self.kinds))[: self.axes.L]]
        self.subtasks = []
        switches = self.rand("switch")
        for i, kind in enumerate(kinds):
            sub = env_class(kind)(self.catalog, difficulty=self.difficulty)
            self._bind(sub, i)
            switch = bool(switches.random() < self.axes.p_switch)
            modifiable = type(sub)._switch_goal is not ShopEnv._switch_goal
            self.subtasks.append(SubTask(kind, sub, switch=switch, drop=switch and not modifiable))
        if all(t.drop for t in self.subtasks):  # keep one request live
            self.subtasks[-1].switch = self.subtasks[-1].drop = False
        self.goal = self.subtasks
        return self._activate(0, "")

    def _episode_axes(self, axes):
        """Each sub-task runs under `axes` (`sub_axes`); the journey's turn budget is
        L * T_max, one T_max per request."""
        self.sub_axes = axes
        return axes.model_copy(update={"T_max": axes.L * axes.T_max})

    # ------------------------------------------------------------------ hooks
    def _check_answer_fields(self, answer: Answer) -> None:
        allowed = self.active.env.answer_fields
        for name in sorted(answer.model_fields_set):  # sorted: a set's order varies by process
            if name != "env" and getattr(answer, name) is not None and name not in allowed:
                raise InvalidAction(f"answer.{name} is not an answer field of the current request "
                                    f"({self.active.kind})")
        if answer.env is not None and answer.env not in (self.env_id, self.active.kind):
            raise InvalidAction(f"answer.env is {answer.env!r}, the current request is {self.active.kind!r}")
        require_answer(answer, allowed)

    def _react(self, message: str, turn: int, had_tools: bool) -> Utterance | None:
        return self._sync()._react(message, turn, had_tools)

    def _react_to_tools(self, turn: int) -> Utterance | None:
        return self._sync()._react_to_tools(turn)

    def _on_tool(self, name, args, result) -> None:
        sub = self._sync()
        if name in sub.tools:
            sub._on_tool(name, args, result)

    def _on_stockout(self, rows: list[int]) -> None:
        self._sync()._on_stockout(rows)

    def _answered(self, answer: Answer, turn: int) -> TaskScore | None:
        task = self.active
        self._sync()
        task.score = task.env._score(answer)
        return self._advance(self.shopper.choose(TRANSITIONS if self._agent_spoke() else TRANSITIONS_UNTHANKED))

    def _agent_spoke(self) -> bool:
        """Whether the agent wrote to the shopper since the shopper's last message."""
        for msg in reversed(self.messages):
            if msg["role"] == "user":
                return False
            if msg["role"] == "assistant" and msg.get("content"):
                return True
        return False

    def _advance(self, lead: str) -> TaskScore | None:
        """Move to the next sub-task (its opening becomes the next user message), or end."""
        if self.index + 1 < len(self.subtasks):
            self._user(self._activate(self.index + 1, lead))
            return None
        return self._score(None)

    def _next_turn(self):
        task = self.active
        if task.switch and not task.switched and self.turn >= task.start_turn:
            task.switched = True
            modified = None if task.drop else task.env._switch_goal(self.rand("switch"))
            if modified is not None:
                task.modified = True
                self._user(modified)
            elif not task.drop:  # the agent's progress made the change moot: nothing happens
                return super()._next_turn()
            else:
                task.dropped = True
                final = self._advance(self.shopper.choose(DROPS))
                if final is not None:
                    self._user(self.shopper.say(f"{self.shopper.choose(DROPS)} That's all for today.", "done"))
                    return self._finish(self._verdict(final, "answered"), terminated=True)
            self.caused_turns.add(self.turn)
        return super()._next_turn()

    def _minimal_turns(self) -> int:
        """The live sub-tasks' minimal plans, one after another (a dropped request's one turn
        is the shopper's)."""
        total = 0
        for t in self.subtasks:
            if t.dropped:
                continue
            # a modifying switch makes the sub-task's first turn the shopper's, unless its plan's was already
            switch_turn = t.switched and t.modified and 0 not in t.env.plan_caused
            total += t.env._minimal_turns() - int(switch_turn)
        return total

    def _score(self, answer: Answer | None) -> TaskScore:
        scores: list[TaskScore] = []
        for i, task in enumerate(self.subtasks):
            if task.dropped:
                continue
            if task.score is None:
                task.score = task.env._score(None) if i == self.index else TaskScore(-1.0, False, {"reached": False})
                if i == self.index:
                    task.score = TaskScore(task.score.r_task, False, task.score.details)
            scores.append(task.score)
        if not scores:  # generation keeps one request live; never score a journey on nothing
            return TaskScore(-1.0, False, {"subtasks": []})
        r_task = sum(s.r_task for s in scores) / len(scores)
        details = {"subtasks": [
            {"kind": t.kind, "dropped": t.dropped, "switched": t.switched,
             "r_task": t.score.r_task if t.score else None, "is_correct": t.score.is_correct if t.score else None}
            for t in self.subtasks
        ]}
        return TaskScore(r_task, all(s.is_correct for s in scores), details)


def _without_greeting(text: str, clean: str) -> tuple[str, str]:
    """A follow-up request without its own greeting ("Hi, I'd like..." -> "I'd like..."),
    in the clean text and in its noisy copy (typos keep the word count, so the same number
    of leading words goes)."""
    m = _GREETING.match(clean)
    if m is None:
        return text, clean
    n = len(m.group(0).split())
    rest_clean = clean[m.end():]
    rest_text = text.split(maxsplit=n)[n] if len(text.split(maxsplit=n)) > n else rest_clean
    return _capitalise(rest_text), _capitalise(rest_clean)


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]
