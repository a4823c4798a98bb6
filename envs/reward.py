"""Reward: r_total = clip(0.75 r_task + 0.15 r_eff + 0.10 r_hall, -1, 1); invalid action => -1.

`r_task` comes from each environment's verifier; this module owns what every environment
shares: efficiency from turns, hallucination from ids and claims, and the total.

The reward is built so that no policy earns more by not doing the task:

* **Correct beats incorrect.** Verifiers grade r_task in [-1, 1]; the reward then places a
  correct episode's r_task in [0.8, 1] (`CORRECT_TASK_MIN`; a perfect one stays 1) and an
  incorrect one's in [-1, 0.5] (`INCORRECT_TASK_MAX`), both linearly, so partial credit
  still orders attempts. Any correct episode scores at least 0.75 * 0.8 - 0.15 - 0.10 = 0.35
  and any incorrect one at most 0.75 * 0.5 - 0.15 = 0.225.
* **Efficiency is never earned by failing.** An incorrect episode gets r_eff = -1, so giving
  up early pays nothing, and an answer with no content (`{}`, empty lists) is an invalid
  action (-1): doing nothing scores no more than any honest attempt that fails (an honest failure, with
  no hallucination, scores at least -0.90).
* **The same ceiling everywhere.** r_eff is measured against the oracle's minimal plan for
  this episode, `T_min` effective turns (each environment computes it from its hidden goal):

      T_eff = agent turns - turns the shopper caused
      r_eff = 1                                          if T_eff <= T_min
            = 1 - 2 (T_eff - T_min) / (T_max - T_min)    otherwise, clipped to [-1, 1]

  so an agent that needs no more turns than the minimal plan earns r_eff = 1 at every d in
  every environment, and each extra turn it causes lowers it. Turns the shopper causes never
  count: the turn of a question that named a slot the shopper had omitted, the turn after a
  confirmation it volunteered, the turn it reacted to a stock-out in, and the turn it switched
  intent in. A correct, hallucination-free episode within the plan scores exactly 0.90.

  Worked example (E_CART at d = 0: T_max = 4, T_min = 3, the oracle reading the visit
  history, then the item's variants, then adding it and answering done): an agent reads the
  history (turn 0) and the variants (turn 1), adds the item and says so (turn 2); the shopper
  volunteers "That looks right, thanks!"; the agent answers done (turn 3). Four agent turns,
  one caused by the shopper's confirmation, so T_eff = 3 = T_min: r_eff = 1 and r_total =
  0.75 + 0.15 = 0.90. Had the fourth turn been the agent's own (nothing to answer), T_eff = 4:
  r_eff = 1 - 2 * (4 - 3) / (4 - 3) = -1 and r_total = 0.60. The shopper volunteers a
  confirmation once per cart: the same cart confirmed again is the agent's turn.
* **Hallucination** (r_hall <= 0), computed by `ShopEnv._hallucination`:

      r_hall = -min(1, H / max(1, N) + F / 2 + U)

  H = distinct ids the agent used (in an answer field or a write tool's id arguments) that no
  tool output or shopper message had shown it; N = distinct ids it used; F = false claims in
  its text (prices, stock, order status: `ecomrlve.envs.claims`); U = answers not grounded in retrieved
  facts (`ShopEnv.ungrounded`, e.g. an E_POLICY answer without its rule: a whole answer made
  up scores -1). Only bad things enter the numerator and only ids the agent
  acted on enter the denominator, so no true sentence can move r_hall: padding a message with
  true statements changes nothing, and an honest agent (no unseen id, no false claim) scores 0.
  Example: an E_PD answer of 4 ids, 1 never shown, with one false price claim and 150 true
  "X is in stock." sentences: r_hall = -min(1, 1/4 + 1/2) = -0.75, the same as without the 150
  sentences (under the old shared denominator, bad / (ids + claims), the padding moved it from
  -2/5 to -2/155). Sentences the checker cannot read unambiguously are not scored either way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction

W_TASK, W_EFF, W_HALL = 0.75, 0.15, 0.10
INCORRECT_TASK_MAX = 0.5  # an incorrect episode's r_task is scaled into [-1, INCORRECT_TASK_MAX]
CORRECT_TASK_MIN = 0.8  # a correct episode's r_task is scaled into [CORRECT_TASK_MIN, 1]
FAILED_EFFICIENCY = -1.0  # r_eff of an incorrect episode: efficiency is never earned by failing


def clip(x: float, lo: float = -1.0, hi: float = 1.0) -> float:
    return max(lo, min(hi, x))


def efficiency(t_eff: int, t_min: int, t_max: int) -> float:
    """r_eff of a correct episode: 1 when T_eff <= T_min (the oracle's minimal plan), then
    1 - 2 (T_eff - T_min) / (T_max - T_min), clipped to [-1, 1]."""
    if t_eff <= t_min:
        return 1.0
    return clip(1.0 - 2.0 * (t_eff - t_min) / max(1, t_max - t_min))


def graded_task(r_task: float, is_correct: bool) -> float:
    """The verifier's r_task in [-1, 1] placed in its band: [CORRECT_TASK_MIN, 1] for a
    correct episode, [-1, INCORRECT_TASK_MAX] for an incorrect one (linear, order kept)."""
    unit = (clip(r_task) + 1.0) / 2.0
    if is_correct:
        return 1.0 - (1.0 - CORRECT_TASK_MIN) * (1.0 - unit)
    return -1.0 + (INCORRECT_TASK_MAX + 1.0) * unit


def f1_score(n_true_positive: int, n_predicted: int, n_gold: int) -> Fraction:
    """F1 as an exact fraction (2 TP / (|pred| + |gold|)); 1 when both are empty."""
    if n_predicted + n_gold == 0:
        return Fraction(1)
    return Fraction(2 * n_true_positive, n_predicted + n_gold)


@dataclass(frozen=True)
class TaskScore:
    """An environment verifier's verdict."""

    r_task: float
    is_correct: bool
    details: dict


@dataclass(frozen=True)
class RewardBreakdown:
    r_task: float
    r_eff: float
    r_hall: float
    r_total: float
    is_correct: bool
    termination_reason: str
    details: dict

    def as_dict(self) -> dict:
        return asdict(self)


def total_reward(r_task: float, r_eff: float, r_hall: float) -> float:
    return clip(W_TASK * r_task + W_EFF * r_eff + W_HALL * r_hall)


def combine(task: TaskScore, r_eff: float, r_hall: float, reason: str) -> RewardBreakdown:
    """The episode's reward: r_task in its band (`graded_task`); for an incorrect task `r_eff`
    is replaced by FAILED_EFFICIENCY, whatever the turns were."""
    r_task = graded_task(task.r_task, task.is_correct)
    if not task.is_correct:
        r_eff = FAILED_EFFICIENCY
    return RewardBreakdown(
        r_task=r_task,
        r_eff=float(r_eff),
        r_hall=float(r_hall),
        r_total=total_reward(r_task, r_eff, r_hall),
        is_correct=bool(task.is_correct),
        termination_reason=reason,
        details=task.details | {"verifier_r_task": float(task.r_task)},
    )


def invalid(reason: str) -> RewardBreakdown:
    """An invalid action: r_total = -1 whatever else happened."""
    return RewardBreakdown(-1.0, 0.0, 0.0, -1.0, False, f"invalid_action: {reason}", {})
