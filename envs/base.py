"""`ShopEnv`: the episode engine every environment shares (Gymnasium semantics).

    obs, info = env.reset(seed=7, options={"difficulty": 6})
    obs, reward, terminated, truncated, info = env.step(action)

An environment subclass supplies four things: its tool allow-list and answer fields,
`_generate()` (build the hidden goal and world, return the shopper's opening), `_score()`
(the verifier: r_task from the hidden goal and the final world or answer) and, optionally,
`_react()` / `_react_to_tools()` (shopper reactions to the agent's messages and to what its
tools showed the shopper) and `_on_tool()` (world events).
Everything else lives here: action parsing, tool dispatch with the per-turn budget, the
transcript, hallucination and efficiency accounting, termination and the reward.

Contract: the same (env_id, difficulty, seed, actions) gives a byte-identical transcript
and reward in any process. Invalid actions end the episode with r_total = -1 and a named
reason; no exception escapes `step` for bad agent input. As a last line of defence, an
unexpected exception inside env code also ends the episode (r_total = -1, reason
`env_error: <ExcType>: <message>`) and is logged: a bug, never a crashed worker.
"""

from __future__ import annotations

import dataclasses

import json
import logging
import re
import reprlib
from typing import Any, ClassVar

from .actions import Action, Answer, InvalidAction, check_shape, parse_action
from .catalog import CatalogLike
from .claims import sentence_verdicts
from .difficulty import Axes, axes_for
from .reward import RewardBreakdown, TaskScore, combine, efficiency, invalid
from .rng import EpisodeRandom
from .store_policy import generate_policy
from .shopper import QUIT, TEMPLATE_PHRASER, PhraseContext, Phraser, TemplateShopper, Utterance, merge_utterances
from .tools import TOOLS, Args, ToolContext, tool_schemas, validate_call
from .world import SimClock, World

ID_KEYS = ("product_id", "order_id", "line_id", "variant_id", "new_product_id", "new_variant_id", "return_id")
ANSWER_ID_FIELDS = ("recommended_product_ids", "selected_order_id", "selected_line_id")
_SENTENCE = re.compile(r"[^.!?\n]+(?:\.\d+[^.!?\n]*)*")
log = logging.getLogger(__name__)


def collect_ids(obj: Any, out: set[str]) -> None:
    """Add every id-valued field (see ID_KEYS) found anywhere in `obj` to `out`."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ID_KEYS and isinstance(value, str):
                out.add(value)
            else:
                collect_ids(value, out)
    elif isinstance(obj, list):
        for value in obj:
            collect_ids(value, out)


def dumps(obj: Any) -> str:
    """Canonical JSON for transcripts (insertion order, no whitespace variance)."""
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "), default=str)


class ShopEnv:
    """Base class of every environment (see `ecomrlve.envs.registry` for registering one)."""

    env_id: ClassVar[str]
    tools: ClassVar[tuple[str, ...]]
    answer_fields: ClassVar[tuple[str, ...]]
    task_brief: ClassVar[str]
    uses_policy: ClassVar[bool] = False  # generate the store policy at reset
    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, catalog: CatalogLike, difficulty: int = 0):
        self.catalog = catalog
        self.default_difficulty = difficulty
        self._next_seed = 0
        self._tool_schemas = tool_schemas(self.tools)
        self.done = True
        self.seen_ids: set[str] = set()
        self.phraser: Phraser = TEMPLATE_PHRASER  # how the shopper words its messages (see `_user`)

    # ------------------------------------------------------------------ hooks
    def _generate(self) -> Utterance:
        """Build `self.goal` and the world; return the shopper's opening message."""
        raise NotImplementedError

    def _score(self, answer: Answer | None) -> TaskScore:
        """The verifier. `answer` is None when the episode ended without one."""
        raise NotImplementedError

    def _react(self, message: str, turn: int, had_tools: bool) -> Utterance | None:
        """The shopper's reaction to an assistant message, or None to stay silent."""
        return None

    def _minimal_turns(self) -> int:
        """T_min: the effective turns of the oracle's minimal plan for this episode, read at
        scoring time: `plan_turns` (set by `_generate` from the hidden goal) plus
        `replan_turns` (added when the goal changed mid-episode and the plan needs more
        turns), less the plan's own shopper-caused turns (`plan_caused`: the plan's turn
        indices that ask about omitted slots or tell of a stock-out). An agent with
        T_eff <= T_min earns the maximum r_eff; the oracle's T_eff equals it."""
        return self.plan_turns + self.replan_turns - len(self.plan_caused)
    def _react_to_tools(self, turn: int) -> Utterance | None:
        """The shopper's reaction to what this turn's tools showed it when the agent wrote no
        message (e.g. a cart presented with `cart_view`), or None."""
        return None

    def _on_tool(self, name: str, args: Args, result: dict) -> None:
        """Called after each executed tool (e.g. to note a stock-out the agent hit)."""

    def _switch_goal(self, rng) -> Utterance | None:
        """(E_JOURNEY) The shopper changes its mind mid-task: update the goal and return what
        the shopper says, or None when the change no longer applies. An environment that
        does not override this cannot be modified, so a journey drops it instead."""
        return None

    def _on_stockout(self, rows: list[int]) -> None:
        """Called when scheduled stock-outs take effect at the start of a turn."""

    def _patience(self) -> int:
        return 3

    def _episode_axes(self, axes: Axes) -> Axes:
        """The axes this episode runs under, given those of its difficulty (and overrides);
        set before the system prompt is written. E_JOURNEY gives each request its own turn
        budget here."""
        return axes

    # ------------------------------------------------------------------ API
    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        options = dict(options or {})
        unknown = set(options) - {"difficulty", "axes"}
        if unknown:
            raise ValueError(f"unknown reset option(s): {', '.join(sorted(unknown))}")
        if seed is None:
            seed = self._next_seed
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self._next_seed = seed + 1
        self.seed = seed
        self.difficulty = options.get("difficulty", self.default_difficulty)
        self.axes: Axes = self._episode_axes(axes_for(self.difficulty, options.get("axes")))
        self.rand = EpisodeRandom(seed, self.env_id, self.difficulty)
        self.world = World(self.catalog, SimClock.from_rng(self.rand("clock")))
        if self.uses_policy:
            self.world.policy = generate_policy(self.rand("policy"))
        self.shopper = TemplateShopper(self.rand, self.axes.p_noise, patience=self._patience())
        self.turn = 0
        self.done = False
        self.seen_ids = set()
        self.used_ids: dict[str, bool] = {}  # id -> was it hallucinated when first used
        self.claims_checked = 0
        self.claims_false = 0
        self.ungrounded: list[str] = []  # answers not grounded in retrieved facts: each one hallucinated
        self.stockouts_unseen: frozenset[int] = frozenset()
        self.reward_info: RewardBreakdown | None = None
        self.plan_turns = self.replan_turns = 0  # `_generate` sets the plan (see `_minimal_turns`)
        self.plan_caused: set[int] = set()
        self.utterances: list[Utterance] = []  # the shopper's messages, clean text kept
        self.messages: list[dict] = [{"role": "system", "content": self._system_prompt()}]
        opening = self._generate()
        self._user(opening)
        return self._obs(), self._info()

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if self.done:
            raise RuntimeError("episode is over; call reset()")
        try:
            return self._step(action)
        except Exception as exc:  # noqa: BLE001 - the last line of defence (see the module doc)
            log.exception("%s seed %s d %s: env error on turn %s", self.env_id, self.seed, self.difficulty, self.turn)
            reason = f"env_error: {type(exc).__name__}: {_safe_text(exc)[:300]}"
            return self._finish(RewardBreakdown(-1.0, 0.0, 0.0, -1.0, False, reason, {}), terminated=True)

    def _step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        turn = self.turn
        self.world.clock.turn = turn
        due = self.world.apply_scheduled_stockouts(turn)
        self.stockouts_unseen = frozenset(due)  # this turn's stock-outs: the agent cannot know them yet
        if due:
            self._on_stockout(due)
        try:
            act = parse_action(action)
            calls = [(c.name, validate_call(c.name, c.args, self.tools)) for c in act.tool_calls]
            if act.answer is not None:
                self._check_answer_fields(act.answer)
        except InvalidAction as exc:
            self.messages.append({"role": "assistant", "content": _raw_text(action)[:2000]})
            return self._finish(invalid(str(exc)), terminated=True)

        self._assistant(act, calls)
        asks: list[str] = []
        for i, (name, args) in enumerate(calls):
            call_id = f"call_{turn}_{i}"
            if i >= self.axes.B_tool:
                result = {"error": f"tool budget exceeded: at most {self.axes.B_tool} tool calls per turn"}
            else:
                self._use_ids(_write_ids(name, args))
                result = TOOLS[name].fn(ToolContext(self.world, self.axes, self.rand, turn), args)
                collect_ids(result, self.seen_ids)
                self._on_tool(name, args, result)
                if name == "ask_user":
                    asks.append(args.question)
            self.messages.append({"role": "tool", "tool_call_id": call_id, "name": name, "content": dumps(result)})

        if act.answer is not None:
            self._use_ids(_answer_ids(act.answer))
            final = self._answered(act.answer, turn)
            if final is not None:
                return self._finish(self._verdict(final, "answered"), terminated=True)
            return self._next_turn()

        replies = [self.shopper.answer(q, turn) for q in asks]
        if act.assistant_message:
            reaction = self._react(act.assistant_message, turn, had_tools=bool(calls))
            if reaction is not None:
                replies.append(reaction)
            elif not calls:
                replies.append(self.shopper.nudge())
        else:
            reaction = self._react_to_tools(turn)
            if reaction is not None:
                replies.append(reaction)
        if self.shopper.quit or self.shopper.out_of_patience():
            self._user(self.shopper.say(self.shopper.choose(QUIT), "quit"))
            return self._finish(self._verdict(self._score(None), "user_quit"), terminated=True)
        if replies:
            self._user(merge_utterances(replies))
        return self._next_turn()

    def _answered(self, answer: Answer, turn: int) -> TaskScore | None:
        """Score an answer. Returns the final verdict, or None when the episode goes on
        (a multi-intent journey moves to its next sub-task)."""
        return self._score(answer)

    def _next_turn(self):
        self.turn += 1
        if self.turn >= self.axes.T_max:
            return self._finish(self._verdict(self._score(None), "turn_budget_exhausted"), truncated=True)
        return self._obs(), 0.0, False, False, self._info()

    # ------------------------------------------------------------------ internals
    def _system_prompt(self) -> str:
        fields = ", ".join(self.answer_fields)
        return (
            f"You are a shopping assistant for an online store. Task ({self.env_id}): {self.task_brief}\n"
            "Reply with ONE JSON object per turn: "
            '{"assistant_message": "text for the shopper", '
            '"tool_calls": [{"name": "<tool>", "args": {...}}], '
            '"answer": {...}}. All keys are optional, but give at least one. '
            f"Tool results come back as tool messages. The answer ends the episode; its fields here: {fields}. "
            "Use only ids that tools or the shopper showed you. "
            f"Budget: at most {self.axes.B_tool} tool calls per turn and {self.axes.T_max} turns."
        )

    def _obs(self) -> dict:
        """The observation: the transcript (`messages`), the tool schemas (`tools`), the turn
        index (`turn`, from 0), `env_id`, and the budgets the system prompt states, as data:
        `turn_budget` (turns in the episode), `tool_budget` (tool calls per turn; each turn
        starts with all of them) and `turns_left` (turn_budget - turn, at least 0)."""
        return {
            "messages": list(self.messages),
            "tools": self._tool_schemas,
            "turn": self.turn,
            "env_id": self.env_id,
            "turn_budget": self.axes.T_max,
            "tool_budget": self.axes.B_tool,
            "turns_left": max(0, self.axes.T_max - self.turn),
        }

    def _info(self) -> dict:
        info = {"env_id": self.env_id, "difficulty": self.difficulty, "seed": self.seed, "turn": self.turn}
        if self.reward_info is not None:
            info["reward"] = self.reward_info.as_dict()
        return info

    def _user(self, utt: Utterance) -> None:
        """The shopper says `utt`, worded by `self.phraser`: the transcript and the recorded
        utterance hold the worded text (the clean text is kept)."""
        context = PhraseContext(self.env_id, self.seed, self.difficulty, self.turn + (len(self.messages) > 1),
                                self.shopper.p_noise, self.shopper.slots)
        text = self.phraser.phrase(utt, context)
        if text != utt.text:
            utt = dataclasses.replace(utt, text=text)
        self.utterances.append(utt)
        self.seen_ids.update(utt.mentioned_ids)
        self.messages.append({"role": "user", "content": utt.text})

    def _assistant(self, act: Action, calls: list[tuple[str, Args]]) -> None:
        msg: dict[str, Any] = {"role": "assistant", "content": act.assistant_message or ""}
        if calls:
            msg["tool_calls"] = [
                {
                    "id": f"call_{self.turn}_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": dumps(args.model_dump(exclude_none=True))},
                }
                for i, (name, args) in enumerate(calls)
            ]
        if act.answer is not None:
            msg["answer"] = act.answer.model_dump(exclude_none=True)
        self.messages.append(msg)
        if act.assistant_message:
            self._check_claims(act.assistant_message)

    def _check_answer_fields(self, answer: Answer) -> None:
        """An answer must give at least one of this request's answer fields, non-empty (an
        empty answer is giving up, and giving up never pays: it is invalid), and no other."""
        for name in sorted(answer.model_fields_set):  # sorted: a set's order varies by process
            if name == "env" or getattr(answer, name) is None:
                continue
            if name not in self.answer_fields:
                raise InvalidAction(f"answer.{name} is not an answer field of {self.env_id}")
        if answer.env is not None and answer.env not in self._answer_env_ids():
            raise InvalidAction(f"answer.env is {answer.env!r}, expected {self.env_id!r}")
        require_answer(answer, self.answer_fields)

    def _answer_env_ids(self) -> tuple[str, ...]:
        return (self.env_id,)

    def _use_ids(self, ids: list[str]) -> None:
        for i in ids:
            if i not in self.used_ids:
                self.used_ids[i] = i not in self.seen_ids

    def _check_claims(self, text: str) -> None:
        """Count the checkable factual claims in the agent's text, and the false ones (price,
        stock and order-status statements about one id; see `ecomrlve.envs.claims`: a sentence it
        cannot read unambiguously is not scored either way)."""
        for _, verdicts in sentence_verdicts(text, self.world, self.seen_ids, self.stockouts_unseen):
            for true in verdicts:
                self._claim(true)

    def _claim(self, true: bool) -> None:
        self.claims_checked += 1
        self.claims_false += 0 if true else 1

    def _hallucination(self) -> float:
        """r_hall = -min(1, hallucinated ids / max(1, ids used) + false claims / 2 + ungrounded
        answers) (see `ecomrlve.envs.reward`): nothing true enters it, so true sentences cannot dilute
        it, and an answer no retrieved fact supports is a whole hallucination."""
        ids_used = len(self.used_ids)
        bad_ids = sum(self.used_ids.values())
        if not (bad_ids or self.claims_false or self.ungrounded):
            return 0.0
        return -min(1.0, bad_ids / max(1, ids_used) + self.claims_false / 2 + len(self.ungrounded))

    def _verdict(self, task: TaskScore, reason: str) -> RewardBreakdown:
        if reason != "answered" and task.is_correct:
            task = TaskScore(task.r_task, False, task.details)
        turns = self.turn + 1
        t_eff = turns - sum(1 for t in self.shopper.caused_turns if t < turns)
        r_eff = efficiency(t_eff, self._minimal_turns(), self.axes.T_max) if task.is_correct else 0.0
        return combine(task, r_eff, self._hallucination(), reason)

    def _finish(self, breakdown: RewardBreakdown, terminated: bool = False, truncated: bool = False):
        self.done = True
        self.reward_info = breakdown
        if not truncated:
            self.turn += 1
        return self._obs(), breakdown.r_total, terminated, truncated, self._info()

    # ------------------------------------------------------------------ transcript
    def transcript(self) -> str:
        """The canonical serialisation of the episode (messages + reward)."""
        return dumps({"messages": self.messages, "reward": self.reward_info.as_dict() if self.reward_info else None})


def _safe_text(obj: Any) -> str:
    try:
        return str(obj)
    except Exception:  # noqa: BLE001 - a str() that raises (a 4,301-digit int) is still named
        return f"<unprintable {type(obj).__name__}>"


def _raw_text(action: Any) -> str:
    """An invalid action as transcript text (at most 2,000 characters): the text itself,
    canonical JSON when its shape is bounded (`check_shape`), else a depth-limited repr;
    never raises and never walks a 1,100-deep nest or prints a 4,301-digit int in full."""
    if isinstance(action, str):
        return action[:2000]
    if isinstance(action, bytes):
        return action[:2000].decode("utf-8", "replace")
    try:
        check_shape(action)
        return dumps(action)[:2000]
    except Exception:  # noqa: BLE001 - InvalidAction, or an object json cannot encode
        try:
            return _REPR.repr(action)[:2000]
        except Exception:  # noqa: BLE001
            return f"<unprintable {type(action).__name__}>"


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 6, 2000, 200, 200


def require_answer(answer: Answer, fields: tuple[str, ...]) -> None:
    if not any(getattr(answer, f, None) not in (None, "", []) for f in fields if f != "env"):
        raise InvalidAction(f"answer is empty: give {' / '.join(fields)}")


def _write_ids(name: str, args: Args) -> list[str]:
    return [v for k in TOOLS[name].writes if isinstance(v := getattr(args, k, None), str)]


def _answer_ids(answer: Answer) -> list[str]:
    """Every id the answer gives (every field of ANSWER_ID_FIELDS, lists flattened)."""
    ids: list[str] = []
    for name in ANSWER_ID_FIELDS:
        value = getattr(answer, name, None)
        ids += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str) and v]
    return ids
