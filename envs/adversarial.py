"""Adversarial inputs for the environments' robustness contract: a seeded action fuzzer.

`ShopEnv.step` promises that no agent input escapes it: an action is executed, or it ends the
episode with r_total = -1 and a named `invalid_action: ...` reason. `fuzz_action` draws the
inputs that break that promise in practice: random JSON (as text and as Python objects),
nesting 1,100 levels deep, integers of 4,301 digits (past Python's int/str conversion limit),
1e308, inf and nan, unicode (lone surrogates, zero-width and right-to-left marks), long
strings, wrong types in every tool argument and answer field, non-JSON Python objects, and
assistant messages making price, stock and status claims with pathological numbers (a price
with 110 comma groups). `fuzz_text` draws raw model replies for the LLM codec's parser, and
`fuzz_axes` draws `reset` axis overrides.

`fuzz_episodes` drives all of it through real environments and returns what escaped, the
invalid-action contract violations and the step-time distribution; the robustness tests and
`benchmarks/exploits_robust.py` share it. The module imports only the standard library and
numpy at import time (the benchmark loads it next to older checkouts of `envs`).
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

DEEP = 1_100  # nesting depth past CPython's default recursion limit
HUGE_DIGITS = 4_301  # one digit past sys.get_int_max_str_digits()'s default
COMMA_GROUPS = 110

_WEIRD_STRINGS = (
    "", " ", "\u200b", "\u202eevil", "\ud800", "\x00\x01\x02", "🙂" * 40, "Ω≈ç√∫", "ＡＢＣ", "null", "NaN",
    "Infinity", "-0", "1e308", "1" * HUGE_DIGITS, "$" + "1," * COMMA_GROUPS + "000", "<tool_call>", "```json",
    "{}", "[]", '{"a": ', "\\u0000", "../../etc/passwd", "' OR 1=1 --", "%s%n%x", "\n" * 50,
)
_CLAIM_TEMPLATES = (
    "{id} is in stock.", "{id} is not in stock.", "{id} is out of stock.", "{id} is sold out.",
    "{id} costs {price}.", "{id} is under {price}.", "{id} is between {price} and {price2}.",
    "{id} costs at most {price}.", "{id} is more than {price}.", "Order {id} is {status}.",
    "Order {id} has not been delivered yet.", "{id} and {id2} are in stock at {price} and {price2}.",
    "{id} is {status} and {status2}.", "{id} is {price}, {price2}, {price}.",
)
_STATUSES = ("placed", "shipped", "in transit", "in_transit", "delivered", "cancelled", "returned", "lost")


def _deep_list(depth: int = DEEP) -> Any:
    out: Any = []
    for _ in range(depth):
        out = [out]
    return out


def _deep_dict(depth: int = DEEP) -> Any:
    out: Any = {}
    for _ in range(depth):
        out = {"a": out}
    return out


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


@dataclass
class Fuzzer:
    """Draws adversarial actions from one numpy Generator (same seed, same actions)."""

    rng: np.random.Generator

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    # ---------------------------------------------------------------- scalars
    def number(self) -> Any:
        return self.pick((
            lambda: 10 ** (HUGE_DIGITS - 1) + int(self.rng.integers(1000)),  # 4,301 digits
            lambda: -(10 ** 400), lambda: 2 ** 63, lambda: -(2 ** 63) - 1, lambda: 10 ** 20,
            lambda: 0, lambda: -1, lambda: int(self.rng.integers(-5, 200)),
            lambda: 1e308, lambda: -1e308, lambda: float("inf"), lambda: float("-inf"), lambda: float("nan"),
            lambda: 5e-324, lambda: -0.0, lambda: 1.7976931348623157e308, lambda: float(self.rng.normal() * 100),
            lambda: True, lambda: False,
        ))()

    def price(self) -> str:
        return self.pick((
            lambda: "$" + "1," * COMMA_GROUPS + "000",
            lambda: "$" + "9" * HUGE_DIGITS,
            lambda: "$" + "9" * 400 + ".99",
            lambda: "$1e308", lambda: "$inf", lambda: "$nan", lambda: "$-5", lambda: "$0.001",
            lambda: f"${self.rng.integers(1, 500)}.{self.rng.integers(0, 100):02d}",
            lambda: f"${self.rng.integers(1, 9)},{self.rng.integers(0, 1000):03d}.00",
            lambda: "$ 12", lambda: "$$$", lambda: "$1,00,0",
        ))()

    def string(self, ids: list[str]) -> str:
        r = int(self.rng.integers(8))
        if r == 0 and ids:
            return self.pick(ids)
        if r == 1:
            return self.pick(_WEIRD_STRINGS)
        if r == 2:
            return "x" * int(self.rng.choice([65, 81, 501, 1001, 8001, 70_000]))
        if r == 3:
            return "".join(chr(int(c)) for c in self.rng.integers(0x20, 0x10FFFF, size=int(self.rng.integers(1, 40)))
                           if not 0xD800 <= int(c) <= 0xDFFF)
        if r == 4 and ids:
            return self.pick(ids) + self.pick(("", " ", "\u200b", "-v1", "0", "🙂"))
        if r == 5:
            return self.pick(("refund", "exchange", "defective", "changed_mind", "mail", "drop_off", "yes", "no",
                              "delivered", "2026-03-13", "standard", "gift card"))
        return "".join(self.pick("abcdefghij klmnop$.,0123456789") for _ in range(int(self.rng.integers(1, 30))))

    def value(self, ids: list[str], depth: int = 0) -> Any:
        r = int(self.rng.integers(12))
        if r <= 2:
            return self.number()
        if r <= 5:
            return self.string(ids)
        if r == 6:
            return None
        if r == 7:
            return self.pick((_deep_list, _deep_dict))()
        if r == 8 and depth < 3:
            return [self.value(ids, depth + 1) for _ in range(int(self.rng.integers(0, 5)))]
        if r == 9 and depth < 3:
            return {self.string(ids)[:20]: self.value(ids, depth + 1) for _ in range(int(self.rng.integers(0, 4)))}
        if r == 10:
            return self.pick((lambda: {1, 2}, lambda: b"\xff\xfe", lambda: _Opaque(), lambda: (1, 2),
                              lambda: complex(1, 2), lambda: [0] * 100_000))()
        return [self.string(ids) for _ in range(int(self.rng.integers(1, 60)))]

    # ---------------------------------------------------------------- action parts
    def tool_call(self, tools: list[dict], ids: list[str]) -> Any:
        if not tools or self.chance(0.1):
            return self.pick((
                lambda: {"name": self.string(ids)[:64] or "x", "args": {}},
                lambda: {"name": "catalog.search", "args": {"query": "x"}},
                lambda: {"args": {}}, lambda: "catalog_search", lambda: None, lambda: [],
                lambda: {"name": "ask_user", "args": "not an object"},
                lambda: {"name": "ask_user", "args": {"question": "hi"}, "extra": 1},
            ))()
        fn = self.pick(tools).get("function", {})
        props = dict(fn.get("parameters", {}).get("properties", {}))
        args: dict = {}
        for key, schema in props.items():
            if self.chance(0.25):
                continue
            args[key] = self.plausible(schema, ids) if self.chance(0.5) else self.value(ids)
        if self.chance(0.1):
            args[self.string(ids)[:20] or "extra"] = self.value(ids)
        return {"name": fn.get("name", "?"), "args": args}

    def plausible(self, schema: dict, ids: list[str]) -> Any:
        kinds = {s.get("type") for s in schema.get("anyOf", [schema])}
        if "enum" in schema:
            return self.pick(schema["enum"])
        if "integer" in kinds:
            return int(self.rng.integers(0, 12))
        if "number" in kinds:
            return float(self.rng.integers(0, 300))
        if "array" in kinds:
            return [self.pick(ids) for _ in range(int(self.rng.integers(0, 12)))] if ids else []
        if "object" in kinds or "$ref" in str(schema):
            return {}
        return self.pick(ids) if ids and self.chance(0.6) else self.string(ids)

    def answer(self, fields: tuple[str, ...], ids: list[str]) -> Any:
        if self.chance(0.05):
            return self.value(ids)
        names = list(fields) + ["recommended_product_ids", "selected_order_id", "selected_line_id", "order_status",
                                "eta", "eligible", "policy_answer", "done", "env", "bogus"]
        out: dict = {}
        for _ in range(int(self.rng.integers(1, 4))):
            name = self.pick(names)
            if name == "recommended_product_ids" and self.chance(0.5):
                out[name] = [self.string(ids) for _ in range(int(self.rng.integers(0, 60)))]
            elif name in ("eligible", "done") and self.chance(0.5):
                out[name] = self.chance(0.5)
            else:
                out[name] = self.value(ids)
        return out

    def message(self, ids: list[str]) -> Any:
        if self.chance(0.15):
            return self.value(ids)
        if self.chance(0.2):
            return self.string(ids)
        pool = ids or ["p0000000", "W1234567", "OL1"]
        sentences = []
        for _ in range(int(self.rng.integers(1, 6))):
            sentences.append(self.pick(_CLAIM_TEMPLATES).format(
                id=self.pick(pool), id2=self.pick(pool), price=self.price(), price2=self.price(),
                status=self.pick(_STATUSES), status2=self.pick(_STATUSES)))
        return " ".join(sentences)

    # ---------------------------------------------------------------- whole actions
    def text(self, ids: list[str] | None = None) -> str:
        """A raw reply string: broken, huge, deep or plain JSON, possibly wrapped."""
        ids = ids or []
        r = int(self.rng.integers(10))
        if r == 0:
            return "[" * DEEP + "]" * DEEP
        if r == 1:
            return '{"a": ' * DEEP + "1" + "}" * DEEP
        if r == 2:
            return '{"tool_calls": [{"name": "order_list", "args": {"days": ' + "1" * HUGE_DIGITS + "}}]}"
        if r == 3:
            return '{"answer": {"policy_answer": ' + self.pick(("1e308", "1e999", "-1e999", "NaN", "Infinity")) + "}}"
        if r == 4:
            return "x" * int(self.rng.choice([70_000, 1000]))
        if r == 5:
            body = _safe_dumps(self.action_object(ids))
            return self.pick((body, body[: max(1, len(body) // 2)], f"```json\n{body}\n```",
                              f"<tool_call>{body}</tool_call>", f"<tool_call>{body}", body + " and more text",
                              "<tool_call>" + "[" * DEEP + "</tool_call>", "```json\n" + "[" * DEEP + "\n```"))
        if r == 6:
            return '{"tool_calls": [{"function": {"name": "ask_user", "arguments": "' + "[" * DEEP + '"}}]}'
        if r == 7:
            return self.pick(_WEIRD_STRINGS)
        if r == 8:
            return '{"assistant_message": "' + self.pick(ids or ["p0000000"]) + " costs " + self.price() + '."}'
        return self.string(ids)

    def action_object(self, ids: list[str], tools: list[dict] | None = None,
                      fields: tuple[str, ...] = ()) -> Any:
        act: dict = {}
        if self.chance(0.5):
            act["tool_calls"] = [self.tool_call(tools or [], ids) for _ in range(int(self.rng.integers(1, 4)))]
            if self.chance(0.05):
                act["tool_calls"] = self.value(ids)
        if self.chance(0.5):
            act["assistant_message"] = self.message(ids)
        if self.chance(0.3):
            act["answer"] = self.answer(fields, ids)
        if self.chance(0.05):
            act[self.string(ids)[:20] or "extra"] = self.value(ids)
        return act

    def action(self, obs: dict, fields: tuple[str, ...], ids: list[str]) -> Any:
        """One adversarial action for the env whose observation is `obs`."""
        r = int(self.rng.integers(10))
        if r == 0:
            return self.text(ids)
        if r == 1:
            return self.pick((lambda: self.value(ids), lambda: b"\xff{", lambda: None, lambda: 7,
                              lambda: float("nan"), lambda: [{"tool_calls": []}], lambda: _deep_dict()))()
        return self.action_object(ids, obs.get("tools") or [], fields)

    def axes(self, axis_names: tuple[str, ...]) -> dict:
        """Reset axis overrides: mostly out of bounds or of the wrong type."""
        out = {}
        for _ in range(int(self.rng.integers(1, 3))):
            name = self.pick(axis_names + ("bogus_axis",))
            out[name] = self.pick((
                lambda: self.number(), lambda: int(self.rng.integers(0, 20)), lambda: float(self.rng.random()),
                lambda: 500, lambda: 1_000_000, lambda: -3, lambda: "5", lambda: None, lambda: [3],
            ))()
        return out


def _safe_dumps(obj: Any) -> str:
    try:
        return json.dumps(obj, ensure_ascii=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        return "{}"


_ENCODER = json.JSONEncoder(ensure_ascii=False, default=repr)


def _describe(action: Any, limit: int = 300) -> str:
    """A short text of any action (lazy: a 1,100-deep list or a 4,301-digit int is fine)."""
    if isinstance(action, str):
        return action[:limit]
    out = ""
    try:
        for chunk in _ENCODER.iterencode(action):
            out += chunk
            if len(out) >= limit:
                break
    except (ValueError, RecursionError):
        out += f"...<{type(action).__name__}>"
    return out[:limit]


@dataclass
class FuzzReport:
    """What `fuzz_episodes` observed."""

    actions: int = 0  # adversarial actions stepped
    well_behaved: int = 0  # policy actions stepped between them
    policy_errors: dict[str, int] = field(default_factory=dict)  # the well-behaved policy raised (not the env)
    resets: int = 0
    escapes: list[dict] = field(default_factory=list)  # exceptions out of reset/step
    violations: list[dict] = field(default_factory=list)  # invalid action without r_total -1, env_error...
    step_ms: list[float] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    slowest: list[tuple[float, str, str]] = field(default_factory=list)  # (ms, env, action), top 5

    def timed(self, ms: float, env_id: str, action: Any) -> None:
        self.step_ms.append(ms)
        if len(self.slowest) < 5 or ms > self.slowest[-1][0]:
            self.slowest = sorted(self.slowest + [(round(ms, 3), env_id, _describe(action)[:160])], reverse=True)[:5]

    def summary(self) -> dict:
        ms = sorted(self.step_ms) or [0.0]
        return {
            "actions": self.actions, "well_behaved_actions": self.well_behaved, "policy_errors": self.policy_errors,
            "resets": self.resets, "escapes": len(self.escapes),
            "violations": len(self.violations),
            "step_ms_max": round(ms[-1], 3), "step_ms_p99": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 3),
            "step_ms_p50": round(ms[len(ms) // 2], 3),
            "escape_types": _count(e["type"] for e in self.escapes),
            "reasons": dict(sorted(self.reasons.items(), key=lambda kv: -kv[1])[:20]),
            "slowest": [list(x) for x in self.slowest],
        }


def _count(items) -> dict:
    out: dict = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


def fuzz_episodes(catalog, n_actions: int, seed: int = 0, env_ids: tuple[str, ...] | None = None,
                  difficulties: tuple[int, ...] = (0, 3, 6, 9, 12), p_fuzz: float = 0.5,
                  well_behaved: Callable[[Any], Any] | None = None) -> FuzzReport:
    """Step `n_actions` adversarial actions over the envs round-robin. With `well_behaved`
    (a policy factory, e.g. `lambda env: HeuristicPolicy()`), each step is the policy's
    action with probability 1 - `p_fuzz`, so episodes get deep before the fuzz hits them;
    those steps are extra. Every escape from `reset`/`step` and every contract violation is
    recorded with its action; step times cover every step."""
    from ecomrlve.envs import ENV_IDS, make_env

    env_ids = tuple(env_ids or ENV_IDS)
    fz = Fuzzer(np.random.default_rng(seed))
    envs = {e: make_env(e, catalog) for e in env_ids}
    policies = {e: well_behaved(envs[e]) for e in env_ids} if well_behaved else {}
    rep = FuzzReport()
    for env_id, env in envs.items():  # warm-up, untimed: first searches compile the numba kernels
        env.reset(seed=10**6, options={"difficulty": 6})
        env.world.catalog.search("warm up", None, top_k=5)
        if env_id in policies:
            _play(env, policies[env_id])
    live: dict[str, Any] = {}
    i = 0
    while rep.actions < n_actions:
        env_id = env_ids[i % len(env_ids)]
        i += 1
        env = envs[env_id]
        if env_id not in live:
            d = int(fz.pick(difficulties))
            try:
                obs, _ = env.reset(seed=int(fz.rng.integers(10**6)), options={"difficulty": d})
            except Exception as exc:  # noqa: BLE001 - recording escapes is the point
                rep.escapes.append({"where": "reset", "type": type(exc).__name__, "msg": str(exc)[:200]})
                continue
            rep.resets += 1
            live[env_id] = obs
            if env_id in policies and hasattr(policies[env_id], "reset"):
                policies[env_id].reset()
        obs = live[env_id]
        ids = sorted(getattr(env, "seen_ids", set()))
        action = _NO_ACTION
        if env_id in policies and not fz.chance(p_fuzz):
            try:  # the policy may be confused by the fuzzed history: then the fuzzer plays
                action = policies[env_id].act(obs)
                rep.well_behaved += 1
            except Exception as exc:  # noqa: BLE001
                rep.policy_errors[type(exc).__name__] = rep.policy_errors.get(type(exc).__name__, 0) + 1
        if action is _NO_ACTION:
            action = fz.action(obs, tuple(getattr(env, "answer_fields", ())), ids)
            rep.actions += 1
        t0 = time.perf_counter()
        try:
            obs, reward, term, trunc, info = env.step(action)
        except Exception as exc:  # noqa: BLE001
            rep.timed((time.perf_counter() - t0) * 1000, env_id, action)
            rep.escapes.append({"where": "step", "env": env_id, "type": type(exc).__name__, "msg": str(exc)[:200],
                                "action": _describe(action), "trace": traceback.format_exc(limit=-3)[-600:]})
            live.pop(env_id, None)
            continue
        rep.timed((time.perf_counter() - t0) * 1000, env_id, action)
        live[env_id] = obs
        if term or trunc:
            live.pop(env_id, None)
            r = info.get("reward", {})
            reason = str(r.get("termination_reason", ""))
            head = reason.split(":")[0]
            rep.reasons[head] = rep.reasons.get(head, 0) + 1
            bad = None
            if not reason:
                bad = "no termination reason"
            elif head == "invalid_action" and (r.get("r_total") != -1.0 or not term or not reason[16:].strip()):
                bad = "invalid action without r_total -1, terminated and a named reason"
            elif head == "env_error":
                bad = "env_error: an exception inside env code"
            elif not -1.0 <= float(r.get("r_total", 0.0)) <= 1.0:
                bad = "r_total out of [-1, 1]"
            if bad:
                rep.violations.append({"env": env_id, "problem": bad, "reason": reason[:300],
                                       "action": _describe(action)})
    return rep


_NO_ACTION = object()


def _play(env, policy, max_steps: int = 64) -> None:
    obs, _ = env.reset(seed=10**6 + 1, options={"difficulty": 6})
    if hasattr(policy, "reset"):
        policy.reset()
    for _ in range(max_steps):
        obs, _, term, trunc, _ = env.step(policy.act(obs))
        if term or trunc:
            return


def fuzz_reset(catalog, n: int, seed: int = 0) -> dict:
    """`n` resets with adversarial axis overrides and difficulties: each must succeed or
    raise ValueError naming the axis. Returns counts, the slowest reset and the failures."""
    from ecomrlve.envs import ENV_IDS, make_env
    from ecomrlve.envs.difficulty import AXIS_NAMES

    fz = Fuzzer(np.random.default_rng(seed))
    envs = {e: make_env(e, catalog) for e in ENV_IDS}
    out = {"resets": 0, "ok": 0, "value_errors": 0, "unnamed": [], "escapes": [], "reset_ms_max": 0.0}
    for k in range(n):
        env = envs[ENV_IDS[k % len(ENV_IDS)]]
        axes = fz.axes(AXIS_NAMES)
        d = fz.pick((0, 6, 12, 30, 31, -1, "3", 2.5, None))
        opts = {"axes": axes} if d is None else {"difficulty": d, "axes": axes}
        out["resets"] += 1
        t0 = time.perf_counter()
        try:
            env.reset(seed=k, options=opts)
            out["ok"] += 1
        except ValueError as exc:
            out["value_errors"] += 1
            named = [a for a in list(axes) + ["difficulty"] if a in str(exc)]
            if not named:
                out["unnamed"].append({"axes": _describe(axes), "msg": str(exc)[:200]})
        except Exception as exc:  # noqa: BLE001
            out["escapes"].append({"axes": _describe(axes), "d": _describe(d), "type": type(exc).__name__,
                                   "msg": str(exc)[:200]})
        out["reset_ms_max"] = max(out["reset_ms_max"], (time.perf_counter() - t0) * 1000)
    return out


# --------------------------------------------------------------------------- claim battery

# (sentence template, expected verdict: "true" | "false" | "unscored"). Placeholders:
# {IN} an in-stock product, {IN2} another, {OUT} a sold-out one; {P} the true price of {IN},
# {WRONG} = P + $3, {BELOW} = P - $1, {ABOVE} = P + $10, {ABOVE2} = P + $20; orders {DEL}
# delivered, {TRANSIT} in transit, {PLACED} placed, {CANC} cancelled.
CLAIM_BATTERY: tuple[tuple[str, str], ...] = (
    ("{IN} is in stock.", "true"),
    ("{OUT} is out of stock.", "true"),
    ("{OUT} is sold out.", "true"),
    ("{OUT} is not in stock.", "true"),
    ("{OUT} isn't currently in stock.", "true"),
    ("{OUT} is no longer in stock.", "true"),
    ("{IN} is not out of stock.", "true"),
    ("{IN} costs {P}.", "true"),
    ("{IN} is under {ABOVE}.", "true"),
    ("{IN} costs at most {P}.", "true"),
    ("{IN} is less than {ABOVE}.", "true"),
    ("{IN} is over {BELOW}.", "true"),
    ("{IN} costs more than {BELOW}.", "true"),
    ("{IN} is between {BELOW} and {ABOVE}.", "true"),
    ("{IN} is in stock at {P}.", "true"),
    ("{IN} is {P} or less.", "true"),
    ("Order {DEL} has been delivered.", "true"),
    ("Order {TRANSIT} has not been delivered yet.", "true"),
    ("Order {TRANSIT} is in transit.", "true"),
    ("Order {CANC} was cancelled.", "true"),
    ("Order {PLACED} hasn't shipped yet.", "true"),
    ("Order {TRANSIT} has shipped and should arrive soon.", "true"),
    ("{IN} is not in stock.", "false"),
    ("{IN} is out of stock.", "false"),
    ("{OUT} is in stock.", "false"),
    ("{OUT} is not sold out.", "false"),
    ("{IN} costs {WRONG}.", "false"),
    ("{IN} is under {BELOW}.", "false"),
    ("{IN} is over {ABOVE}.", "false"),
    ("{IN} costs at least {ABOVE}.", "false"),
    ("{IN} is between {ABOVE} and {ABOVE2}.", "false"),
    ("Order {DEL} has not been delivered yet.", "false"),
    ("Order {TRANSIT} has been delivered.", "false"),
    ("Order {PLACED} has shipped.", "false"),
    ("Order {DEL} was cancelled.", "false"),
    ("Order {DEL} has been returned.", "false"),
    ("{IN} and {IN2} are in stock.", "unscored"),
    ("{IN} and {OUT} are both in stock.", "unscored"),
    ("{IN} costs {P}, down from {WRONG}.", "unscored"),
    ("{IN} is in stock for {P} or {WRONG}.", "unscored"),
    ("Is {IN} in stock?", "unscored"),
    ("If {OUT} is in stock, I will add it.", "unscored"),
    ("{IN} costs $" + "1," * COMMA_GROUPS + "000.", "unscored"),
    ("{IN} costs $" + "9" * HUGE_DIGITS + ".", "unscored"),
    ("{IN} is not under {ABOVE}.", "unscored"),
    ("Order {TRANSIT} should be delivered by Friday.", "unscored"),
    ("Order {DEL} shipped and was delivered.", "unscored"),
    ("{IN} fits your {ABOVE} budget.", "unscored"),
    ("{IN} plus shipping is {WRONG}.", "unscored"),
    ("{IN} has 0 units in stock.", "unscored"),
    ("Order {PLACED} was placed on Monday.", "unscored"),
    ("{IN} is in stock in black but sold out in red.", "unscored"),
    ("Order {DEL} and order {TRANSIT} have shipped.", "unscored"),
    ("{IN} is around {P}.", "unscored"),
    ("I can't find {IN} in stock.", "unscored"),
    ("{IN}: {P}, in stock.", "true"),
    ("{IN} is in stock and will ship tomorrow.", "true"),
    ("Order {TRANSIT} isn't delivered yet but should arrive Friday.", "true"),
    ("Order {DEL} is not cancelled.", "true"),
    ("{OUT} is in stock and will ship tomorrow.", "false"),
    ("{IN} retails for {WRONG}.", "false"),
    ("{IN} is {WRONG} or more.", "false"),
    ("Order {CANC} is not cancelled.", "false"),
    ("Order {DEL} hasn't arrived.", "false"),
    ("{OUT} was in stock yesterday.", "unscored"),
    ("{IN} costs {P} per pack.", "unscored"),
    ("{IN} normally costs {WRONG}.", "unscored"),
    ("{IN} costs US{WRONG}.", "unscored"),
    ("{IN} is not only in stock but also {P}.", "unscored"),
    ("Order {DEL} was delivered and {IN} is in stock.", "unscored"),
    ("Order {DEL} is eligible to be returned.", "unscored"),
)


def _dollars(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"


def claim_battery_env(catalog, seed: int = 0):
    """An E_STATUS episode prepared for `CLAIM_BATTERY`: two in-stock products and one sold
    out (none with variants), four orders with the statuses the battery names, every id
    shown to the agent. Returns (env, placeholder values)."""
    from ecomrlve.envs import make_env

    env = make_env("E_STATUS", catalog)
    for s in range(seed, seed + 200):
        env.reset(seed=s, options={"difficulty": 12})
        if len(env.world.orders) >= 4:
            break
    world = env.world
    prices = world.catalog.numeric("price")
    rows: list[int] = []
    for r in range(len(world.catalog)):
        if 5 <= float(prices[r]) < 900:
            world.variants[world.catalog.product_id(r)] = []  # this episode sells it without variants
            rows.append(r)
            if len(rows) == 3:
                break
    world.set_stock(rows[0], 7)
    world.set_stock(rows[1], 3)
    world.set_stock(rows[2], 0)
    orders = world.orders[:4]
    for order, status in zip(orders, ("delivered", "in_transit", "placed", "cancelled")):
        order.status = status
    cents = round(float(prices[rows[0]]) * 100)
    values = {
        "IN": world.catalog.product_id(rows[0]), "IN2": world.catalog.product_id(rows[1]),
        "OUT": world.catalog.product_id(rows[2]), "P": _dollars(cents), "WRONG": _dollars(cents + 300),
        "BELOW": _dollars(cents - 100), "ABOVE": _dollars(cents + 1000), "ABOVE2": _dollars(cents + 2000),
        "DEL": orders[0].order_id, "TRANSIT": orders[1].order_id, "PLACED": orders[2].order_id,
        "CANC": orders[3].order_id,
    }
    env.seen_ids.update(v for k, v in values.items() if k in ("IN", "IN2", "OUT", "DEL", "TRANSIT", "PLACED", "CANC"))
    return env, values


def claim_verdict(env, sentence: str) -> str:
    """How the env's claim checker scores one sentence: "true", "false", "unscored", or
    "error: <ExcType>" (read from its claims_checked / claims_false counters)."""
    checked, false = env.claims_checked, env.claims_false
    try:
        env._check_claims(sentence)
    except Exception as exc:  # noqa: BLE001 - an older checker may raise; that is a finding
        return f"error: {type(exc).__name__}"
    if env.claims_checked == checked:
        return "unscored"
    return "false" if env.claims_false > false else "true"


def run_claim_battery(catalog) -> dict:
    """Every battery sentence through the checker: verdicts, and the counts of sentences
    scored the wrong way (true <-> false), scored when they should not be, missed (a
    checkable sentence left unscored) and errors."""
    env, values = claim_battery_env(catalog)
    rows = []
    for template, expected in CLAIM_BATTERY:
        got = claim_verdict(env, template.format(**values))
        rows.append({"sentence": template, "expected": expected, "got": got})
    wrong_way = sum(r["expected"] in ("true", "false") and r["got"] in ("true", "false") and r["got"] != r["expected"]
                    for r in rows)
    return {
        "sentences": len(rows),
        "as_expected": sum(r["got"] == r["expected"] for r in rows),
        "wrong_way": wrong_way,
        "scored_but_should_not": sum(r["expected"] == "unscored" and r["got"] in ("true", "false") for r in rows),
        "missed": sum(r["expected"] != "unscored" and r["got"] == "unscored" for r in rows),
        "errors": sum(r["got"].startswith("error") for r in rows),
        "rows": rows,
    }
