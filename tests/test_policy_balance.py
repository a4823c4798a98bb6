"""E_POLICY cannot be answered without reading the policy.

Chance, per question type (the question asked: "return_allowed", "shipping_fee", ...):
- yes/no: 1/2;
- options (warranty remedy, refund method): 1 / the number of options the question offers
  (4 for the warranty; 2 for the refund method);
- amounts and counts (money, days, business days, points): 1 / the number of distinct
  values the type's answers take in the sample (all difficulties pooled): a constant guess
  is right only for that share if the values were uniform.
Must hold at every d: for each question type no answer is more frequent than chance + 10
points, and the prior predictor (the most frequent answer per question template and d,
fitted on one block of seeds, scored on the next with the env's answer checker) is correct
at most chance + 10 points. The full measurement (1,000 + 1,000 seeds at each d) is slow;
the default run checks the pooled figures on fewer seeds.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import pytest

from ecomrlve.envs import make_env
from ecomrlve.envs.policy import check_answer

MARGIN = 0.10


def sample(env, d: int, seeds: range) -> list:
    out = []
    for seed in seeds:
        env.reset(seed=seed, options={"difficulty": d})
        out.append(env.goal)
    return out


def qtype(goal) -> str:
    return goal.question.context["question"]


def chances(goals: list) -> dict[str, float]:
    values: dict[str, set] = defaultdict(set)
    kinds = {}
    for g in goals:
        values[qtype(g)].add(json.dumps(g.answer))
        kinds[qtype(g)] = (g.kind, len(g.options))
    out = {}
    for t, (kind, n_options) in kinds.items():
        out[t] = 0.5 if kind == "yesno" else 1 / n_options if kind == "choice" else 1 / len(values[t])
    return out


def prior_predictor(train: list, test: list) -> list[bool]:
    """Per test question: is the most frequent training answer of its template right?"""
    fit: dict[str, Counter] = defaultdict(Counter)
    for g in train:
        fit[g.question_text][json.dumps(g.answer)] += 1
    hits = []
    for g in test:
        guess = json.loads(fit[g.question_text].most_common(1)[0][0]) if fit[g.question_text] else "no"
        given = guess / 100 if g.kind == "money" else guess
        hits.append(check_answer(g.kind, g.answer, given, g.options, g.synonyms))
    return hits


@pytest.fixture(scope="module")
def env(catalog):
    return make_env("E_POLICY", catalog)


def test_pooled_answers_are_not_predictable_from_wording_or_d(env):
    """Default run: 250 + 250 seeds at d in {0, 6, 12}: at each d the prior predictor is
    right at most the questions' mean chance + 10 points; pooled over those d, yes/no
    answers are balanced and no warranty remedy dominates."""
    per_d = {d: (sample(env, d, range(250)), sample(env, d, range(250, 500))) for d in (0, 6, 12)}
    goals = [g for tr, te in per_d.values() for g in tr + te]
    chance = chances(goals)
    for d, (train, test) in per_d.items():
        hits = prior_predictor(train, test)
        expected = sum(chance[qtype(g)] for g in test) / len(test)
        assert sum(hits) / len(hits) <= expected + MARGIN, (d, sum(hits) / len(hits), expected)
    yesno = [g.answer for g in goals if g.kind == "yesno"]
    assert abs(yesno.count("yes") / len(yesno) - 0.5) <= MARGIN, Counter(yesno)
    remedies = Counter(g.answer for g in goals if qtype(g) == "warranty_remedy")
    assert max(remedies.values()) / sum(remedies.values()) <= 0.25 + MARGIN, remedies


def test_an_answer_given_without_a_search_is_never_correct(env):
    """The constant-answer exploit: "no", "yes" or 0 at once scores nothing."""
    for seed in range(40):
        for given in ("no", "yes", 0):
            env.reset(seed=seed, options={"difficulty": seed % 13})
            *_, info = env.step({"answer": {"policy_answer": given}})
            assert not info["reward"]["is_correct"] and info["reward"]["r_hall"] == -1.0


@pytest.mark.slow
def test_no_answer_dominates_any_question_type_at_any_difficulty(env):
    """1,000 seeds to fit and 1,000 to test at every d in 0..12."""
    per_d = {d: (sample(env, d, range(1000)), sample(env, d, range(1000, 2000))) for d in range(13)}
    chance = chances([g for tr, te in per_d.values() for g in tr + te])
    for d, (train, test) in per_d.items():
        counts: dict[str, Counter] = defaultdict(Counter)
        for g in train + test:
            counts[qtype(g)][json.dumps(g.answer)] += 1
        for t, c in counts.items():
            top, k = c.most_common(1)[0]
            share = k / sum(c.values())
            assert share <= chance[t] + MARGIN, (d, t, top, share, chance[t])
        hits = prior_predictor(train, test)
        by_type: dict[str, list[bool]] = defaultdict(list)
        for g, hit in zip(test, hits):
            by_type[qtype(g)].append(hit)
        for t, h in by_type.items():
            assert sum(h) / len(h) <= chance[t] + MARGIN, (d, t, sum(h) / len(h), chance[t])
