"""The curriculum rule of docs/architecture.md, exactly (no Ray)."""

from __future__ import annotations

import json
import sys

import pytest

from ecomrlve.scheduler import Curriculum, CurriculumConfig, Outcome, Task


def feed(cur: Curriculum, env_id: str, difficulty: int, correct: int, total: int) -> int:
    outs = [Outcome(env_id, difficulty, i < correct) for i in range(total)]
    return cur.report(outs)


def test_curriculum_module_imports_no_ray():
    import subprocess

    code = "import sys, scheduler, ecomrlve.scheduler.curriculum; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_starts_at_zero_and_samples_zero():
    cur = Curriculum(["E_CART", "E_SUB"], seed=0)
    assert cur.windows() == {"E_CART": (0, 0), "E_SUB": (0, 0)}
    assert {t.difficulty for t in cur.lease(50)} == {0}


def test_32_correct_at_h_raises_h():
    cur = Curriculum(["E_CART"])
    feed(cur, "E_CART", 0, 32, 32)
    assert cur.window("E_CART") == (0, 1)
    assert (cur.levels["E_CART"].n, cur.levels["E_CART"].correct) == (0, 0)


def test_31_outcomes_change_nothing_and_keep_counting():
    cur = Curriculum(["E_CART"])
    feed(cur, "E_CART", 0, 31, 31)
    assert cur.window("E_CART") == (0, 0)
    assert (cur.levels["E_CART"].n, cur.levels["E_CART"].correct) == (31, 31)
    feed(cur, "E_CART", 0, 1, 1)  # the 32nd
    assert cur.window("E_CART") == (0, 1)


def test_28_of_32_resets_counters_without_change():
    cur = Curriculum(["E_CART"])
    feed(cur, "E_CART", 0, 28, 32)
    assert cur.window("E_CART") == (0, 0)
    assert (cur.levels["E_CART"].n, cur.levels["E_CART"].correct, cur.levels["E_CART"].checks) == (0, 0, 1)
    # the failed block is forgotten: 32 fresh correct outcomes raise h
    feed(cur, "E_CART", 0, 32, 32)
    assert cur.window("E_CART") == (0, 1)


def test_threshold_is_exact():
    # 0.9 * 32 = 28.8: 29 correct (0.906) passes, 28 (0.875) does not
    cur = Curriculum(["E_CART"])
    feed(cur, "E_CART", 0, 29, 32)
    assert cur.window("E_CART") == (0, 1)
    # tau_acc = 0.9 with tau_num = 10: exactly 9 of 10 passes (no float rounding)
    cur = Curriculum(["E_CART"], CurriculumConfig(tau_num=10))
    feed(cur, "E_CART", 0, 9, 10)
    assert cur.window("E_CART") == (0, 1)


def test_only_outcomes_at_h_count():
    cur = Curriculum(["E_CART"])
    feed(cur, "E_CART", 0, 32, 32)
    assert cur.window("E_CART") == (0, 1)
    feed(cur, "E_CART", 0, 100, 100)  # below h: ignored by the rule
    feed(cur, "E_CART", 5, 100, 100)  # above h: ignored too
    assert cur.window("E_CART") == (0, 1)
    assert cur.levels["E_CART"].n == 0
    assert cur.levels["E_CART"].episodes == 232


def test_window_lower_bound_follows_h_minus_4():
    cur = Curriculum(["E_CART"])
    seen = []
    for h in range(8):
        feed(cur, "E_CART", h, 32, 32)
        seen.append(cur.window("E_CART"))
    assert seen == [(0, 1), (0, 2), (0, 3), (0, 4), (1, 5), (2, 6), (3, 7), (4, 8)]
    # sampled difficulties cover the whole window and nothing outside it
    ds = {t.difficulty for t in cur.lease(400)}
    assert ds == {4, 5, 6, 7, 8}


def test_envs_are_independent():
    cur = Curriculum(["E_CART", "E_SUB"])
    feed(cur, "E_CART", 0, 32, 32)
    assert cur.windows() == {"E_CART": (0, 1), "E_SUB": (0, 0)}


def test_down_mode_off_by_default_and_lowers_h_when_on():
    cur = Curriculum(["E_CART"])
    feed(cur, "E_CART", 0, 32, 32)
    feed(cur, "E_CART", 1, 0, 32)
    assert cur.window("E_CART") == (0, 1)  # off: a bad block never lowers h

    cur = Curriculum(["E_CART"], CurriculumConfig(down=True, down_floor=0.5))
    for h in range(6):
        feed(cur, "E_CART", h, 32, 32)
    assert cur.window("E_CART") == (2, 6)
    feed(cur, "E_CART", 6, 16, 32)  # exactly the floor: no change
    assert cur.window("E_CART") == (2, 6)
    feed(cur, "E_CART", 6, 15, 32)  # below the floor: h - 1
    assert cur.window("E_CART") == (2, 5)
    for h in (5, 4, 3, 2):
        feed(cur, "E_CART", h, 0, 32)
    assert cur.window("E_CART") == (1, 1)  # l follows h down
    feed(cur, "E_CART", 1, 0, 32)
    feed(cur, "E_CART", 0, 0, 32)
    assert cur.window("E_CART") == (0, 0)  # never below 0


def test_max_difficulty_caps_h():
    cur = Curriculum(["E_CART"], CurriculumConfig(max_difficulty=1))
    for _ in range(3):
        feed(cur, "E_CART", cur.window("E_CART")[1], 32, 32)
    assert cur.window("E_CART") == (0, 1)


def test_lease_gives_unique_seeds_and_ids():
    cur = Curriculum(["E_CART", "E_SUB", "E_PD"], CurriculumConfig(first_seed=1000), seed=3)
    tasks = cur.lease(100) + cur.lease(7) + cur.lease(0)
    assert len(tasks) == 107
    assert [t.task_id for t in tasks] == list(range(107))
    assert [t.seed for t in tasks] == list(range(1000, 1107))
    assert {t.env_id for t in tasks} == {"E_CART", "E_SUB", "E_PD"}
    with pytest.raises(ValueError, match="non-negative"):
        cur.lease(-1)


def test_reports_by_task_id_count_once():
    cur = Curriculum(["E_CART"], CurriculumConfig(tau_num=4))
    tasks = cur.lease(4)
    outs = [Outcome(t.env_id, t.difficulty, True, t.task_id) for t in tasks]
    assert cur.report(outs[:2]) == 2
    assert cur.report(outs[:2]) == 0  # duplicates (a retried task) are ignored
    assert cur.report([Outcome("E_CART", 0, True, 999)]) == 0  # never leased
    assert cur.window("E_CART") == (0, 0)
    assert cur.report(outs[2:]) == 2
    assert cur.window("E_CART") == (0, 1)
    assert cur.ignored == 3 and cur.pending == {}
    # dicts and tuples are accepted too
    t = cur.lease(1)[0]
    assert cur.report([{"env_id": t.env_id, "difficulty": t.difficulty, "is_correct": False, "task_id": t.task_id}]) == 1
    with pytest.raises(ValueError, match="is_correct"):
        cur.report([{"env_id": "E_CART", "difficulty": 0}])


def test_outcome_must_match_its_task():
    cur = Curriculum(["E_CART"])
    t = cur.lease(1)[0]
    with pytest.raises(ValueError, match="task 0"):
        cur.report([Outcome("E_CART", t.difficulty + 1, True, t.task_id)])


def test_state_round_trip_is_exact_including_rng():
    cur = Curriculum(["E_CART", "E_SUB", "E_RETURN"], CurriculumConfig(tau_num=8, first_seed=5), seed=11)
    for _ in range(20):
        tasks = cur.lease(13)
        cur.report([Outcome(t.env_id, t.difficulty, (t.seed % 7) != 0, t.task_id) for t in tasks[:10]])
    state = cur.state()
    text = json.dumps(state)
    clone = Curriculum.from_state(json.loads(text))
    assert clone.state() == state
    assert json.dumps(clone.state()) == text
    assert Curriculum.from_json(cur.to_json()).state() == state
    # both continue identically
    for _ in range(10):
        a, b = cur.lease(9), clone.lease(9)
        assert a == b
        outs = [Outcome(t.env_id, t.difficulty, t.seed % 3 != 0, t.task_id) for t in a]
        cur.report(outs)
        clone.report(outs)
    assert clone.state() == cur.state()
    assert cur.pending_tasks() and all(isinstance(t, Task) for t in cur.pending_tasks())


def test_bad_state_and_config_are_named():
    with pytest.raises(ValueError, match="version"):
        Curriculum.from_state({"version": 99})
    state = Curriculum(["E_CART"]).state()
    del state["levels"]
    with pytest.raises(ValueError, match="levels"):
        Curriculum.from_state(state)
    with pytest.raises(ValueError, match="tau_num"):
        CurriculumConfig(tau_num=0)
    with pytest.raises(ValueError, match="bogus"):
        CurriculumConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="duplicate"):
        Curriculum(["E_CART", "E_CART"])


def test_fixed_task_list_serves_exactly_its_tasks_and_never_adapts():
    """Evaluation mode: the scheduler hands out exactly the given tasks, in order, then
    nothing; outcomes are counted but no window moves; the state round-trips."""
    from ecomrlve.scheduler import Curriculum, CurriculumConfig

    tasks = [{"env_id": "E_CART", "difficulty": 6, "seed": 100 + i} for i in range(5)]
    cur = Curriculum(["E_CART", "E_PD"], CurriculumConfig(tau_num=1, tau_acc=0.0), tasks=tasks)
    first = cur.lease(3)
    assert [tuple(t) for t in first] == [("E_CART", 6, 100, 0), ("E_CART", 6, 101, 1), ("E_CART", 6, 102, 2)]
    again = Curriculum.from_json(cur.to_json())
    assert [tuple(t) for t in again.lease(10)] == [("E_CART", 6, 103, 3), ("E_CART", 6, 104, 4)]
    assert again.lease(4) == []
    assert cur.report([{"env_id": "E_CART", "difficulty": 6, "is_correct": True, "task_id": 0}]) == 1
    assert cur.windows() == {"E_CART": (0, 0), "E_PD": (0, 0)} and cur.events == []
    assert cur.summary()["E_CART"]["successes"] == 1
    with pytest.raises(ValueError, match=r"tasks\[0\]\.env_id"):
        Curriculum(["E_PD"], tasks=tasks)
    with pytest.raises(ValueError, match=r"tasks\[1\]"):
        Curriculum(["E_CART"], tasks=[tasks[0], {"env_id": "E_CART"}])
