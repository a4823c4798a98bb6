"""Render docs/examples.md: two oracle conversations per environment at d = 4, as a chat.

    PYTHONPATH=$PWD python docs/render_examples.py            # writes docs/examples.md

What the shopper sees is shown as the conversation (the agent's messages and its `ask_user`
questions); the agent's other tool calls are shown as short notes between the turns. The
first two seeds (from 0) whose conversation has a shopper follow-up are used, so the page is
the same on every run.
"""

from __future__ import annotations

import json
from pathlib import Path

from ecomrlve.catalog_service import Catalog
from ecomrlve.envs import ENV_IDS, make_env
from ecomrlve.policies import OraclePolicy

OUT = Path(__file__).resolve().parent / "examples.md"
DIFFICULTY = 4
PER_ENV = 2
NAMES = {
    "E_PD": "Product discovery", "E_SUB": "Substitution", "E_CART": "Cart building", "E_RETURN": "Returns",
    "E_STATUS": "Order status", "E_POLICY": "Store policy", "E_BUNDLE": "Bundles", "E_JOURNEY": "Journeys",
}


def _run(env, seed: int) -> None:
    env.reset(seed=seed, options={"difficulty": DIFFICULTY})
    oracle = OraclePolicy(env)
    obs = env._obs()
    for _ in range(200):
        obs, _, terminated, truncated, _ = env.step(oracle.act(obs))
        if terminated or truncated:
            return


def _note(call: dict) -> str:
    args = json.loads(call["function"]["arguments"])
    shown = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in args.items() if k != "filters")
    if "filters" in args:
        shown += (", " if shown else "") + "filters={...}"
    return f"`{call['function']['name']}({shown})`"


def render(env) -> list[str]:
    lines = []
    for m in env.messages[1:]:
        if m["role"] == "user":
            lines.append(f"**Shopper:** {m['content']}")
        elif m["role"] == "assistant":
            calls = m.get("tool_calls", [])
            asks = [json.loads(c["function"]["arguments"])["question"] for c in calls
                    if c["function"]["name"] == "ask_user"]
            notes = [_note(c) for c in calls if c["function"]["name"] != "ask_user"]
            if notes:
                lines.append(f"<sub>agent tools: {'; '.join(notes)}</sub>")
            text = " ".join(t for t in [m.get("content") or ""] + asks if t)
            if text:
                lines.append("**Agent:** " + text.replace("\n", "  \n"))
            if m.get("answer") is not None:
                lines.append(f"<sub>agent answer: `{json.dumps(m['answer'], ensure_ascii=False)}`</sub>")
    reward = env.reward_info
    lines.append(f"<sub>outcome: {reward.termination_reason}, correct = {reward.is_correct}, "
                 f"r_total = {reward.r_total:.3f}</sub>")
    return lines


def main() -> None:
    catalog = Catalog.synthetic(n_products=20_000, seed=0)
    out = [
        "# Example conversations",
        "",
        f"Two conversations per environment at difficulty d = {DIFFICULTY}, played by the oracle policy "
        "(`policies/oracle`) against the template shopper on the 20k synthetic catalog (seed 0). The "
        "shopper's typos are part of the difficulty (`p_noise`). The agent's tool calls are shown as "
        "small notes; `ask_user` questions are shown as what the agent says.",
        "",
        "Regenerate with `PYTHONPATH=$PWD python docs/render_examples.py`.",
        "",
    ]
    for env_id in ENV_IDS:
        env = make_env(env_id, catalog)
        out += [f"## {NAMES.get(env_id, env_id)} ({env_id})", ""]
        shown = 0
        for seed in range(50):
            _run(env, seed)
            users = sum(m["role"] == "user" for m in env.messages)
            if users < 2 or not env.reward_info.is_correct:
                continue
            out += [f"### {env_id}, seed {seed}", ""]
            for line in render(env):
                out += [line, ""]
            shown += 1
            if shown == PER_ENV:
                break
    OUT.write_text("\n".join(out).rstrip() + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
