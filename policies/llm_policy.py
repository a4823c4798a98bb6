"""`LLMPolicy`: an LLM agent over observations, with token-in/token-out recording.

    engine = HFEngine(model, tokenizer)
    policy = LLMPolicy(engine, tokenizer, prefill='{"', max_new_tokens=128)
    action = policy.act(obs)                          # one episode (key 0)
    actions = policy.act_batch([obs_a, obs_b], keys=["ep1", "ep2"])   # one batched generate
    record = policy.pop_episode("ep1")                # EpisodeTokens for the learner

Each key is one live episode. A key's observation continues its episode when it extends
the recorded messages (the env appended our assistant message and the new tool/shopper
messages); an observation at ``turn == 0`` or one that does not extend them starts a new
record. The action is the codec's parse of ``prefill + reply``: a dict, or the raw string
when the reply encodes no action (the env then ends the episode as invalid).

Text-level engines (`OpenAIEngine`) get OpenAI-format messages and tools and record nothing.
A non-empty prefill is passed on (``engine.chat(..., prefill=...)``); the engine sends it as
a final assistant message the server continues, and the reply parsed is ``reply.prefill +
reply.text`` (``reply.prefill`` is "" when the engine did not send it).
"""

from __future__ import annotations

import json
from typing import Any, Hashable, Sequence

from .codec import ANSWER_TOOL_NAME, ChatCodec, EpisodeTokens, TurnTokens, _answer_tool, parse_reply

__all__ = ["LLMPolicy", "openai_messages"]


def openai_messages(messages: Sequence[dict]) -> list[dict]:
    """Env messages -> what an OpenAI chat server accepts (answers become an ``answer``
    tool call with an acknowledging tool message; arguments as JSON strings)."""
    out: list[dict] = []
    for m in messages:
        if m.get("role") != "assistant":
            out.append({k: v for k, v in m.items() if k in ("role", "content", "tool_call_id", "name")})
            continue
        msg: dict = {"role": "assistant", "content": m.get("content") or ""}
        calls = [dict(c) for c in m.get("tool_calls") or []]
        ack = None
        if m.get("answer") is not None:
            cid = f"answer_{len(out)}"
            calls.append({"id": cid, "type": "function",
                          "function": {"name": ANSWER_TOOL_NAME, "arguments": json.dumps(m["answer"])}})
            ack = {"role": "tool", "tool_call_id": cid, "name": ANSWER_TOOL_NAME, "content": '{"ok": true}'}
        if calls:
            msg["tool_calls"] = calls
        out.append(msg)
        if ack is not None:
            out.append(ack)
    return out


class LLMPolicy:
    def __init__(self, engine, tokenizer=None, codec: ChatCodec | None = None, temperature: float = 1.0,
                 max_new_tokens: int = 256, prefill: str = "", seed: int | None = None, record: bool = True,
                 tool_format: str = "auto", lenient: bool = False):
        self.engine = engine
        self.token_level = bool(getattr(engine, "token_level", True))
        if self.token_level:
            if codec is None:
                if tokenizer is None:
                    raise ValueError("LLMPolicy needs a tokenizer (or a codec) for a token-level engine")
                codec = ChatCodec(tokenizer, tool_format=tool_format, prefill=prefill, lenient=lenient)
            self.codec = codec
        else:
            self.codec = codec
        self.prefill = codec.prefill if codec is not None else prefill
        self.temperature = float(temperature)
        self.max_new_tokens = int(max_new_tokens)
        self.seed = seed
        self.record = record
        self.episodes: dict[Hashable, EpisodeTokens] = {}
        self.calls = 0
        self.last_texts: list[str] = []

    # ---- API
    def reset(self) -> None:
        self.episodes.clear()

    def act(self, obs: dict, key: Hashable = 0) -> Any:
        return self.act_batch([obs], [key])[0]

    def act_batch(self, observations: Sequence[dict], keys: Sequence[Hashable] | None = None) -> list[Any]:
        if keys is None:
            keys = list(range(len(observations)))
        if len(keys) != len(observations) or len(set(keys)) != len(keys):
            raise ValueError("act_batch needs one distinct key per observation")
        if not observations:
            return []
        seed = None if self.seed is None else self.seed + self.calls * 100_003
        self.calls += 1
        if not self.token_level:
            return self._act_text(observations, seed)
        prompts, eps = [], []
        for obs, key in zip(observations, keys):
            ep = self.episodes.get(key)
            if ep is not None and (obs.get("turn") == 0 and ep.turns or len(obs["messages"]) <= ep.n_messages):
                ep = None  # a new episode under an old key
            ids, extended = self.codec.next_prompt(ep, obs)
            if ep is None:
                ep = EpisodeTokens()
            elif not extended:
                ep.rebased += 1
            prompts.append(ids)
            eps.append(ep)
        outs = self.engine.generate(prompts, temperature=self.temperature, max_new_tokens=self.max_new_tokens,
                                    seed=seed, stop_ids=self.codec.stop_ids)
        actions, texts = [], []
        for obs, key, ids, ep, c in zip(observations, keys, prompts, eps, outs):
            text = self.codec.reply_text(c.ids)
            texts.append(text)
            if self.record:
                ep.turns.append(TurnTokens(ids, list(c.ids), list(c.logprobs), c.finish_reason,
                                           getattr(c, "version", getattr(self.engine, "version", 0)),
                                           n_messages=len(obs["messages"]), prefill_len=len(self.codec.prefill_ids),
                                           text=text))
                self.episodes[key] = ep
            actions.append(self.codec.parse(text))
        self.last_texts = texts
        return actions

    def pop_episode(self, key: Hashable) -> EpisodeTokens | None:
        return self.episodes.pop(key, None)

    # ---- text-level engines
    def _act_text(self, observations, seed):
        convs = []
        for obs in observations:
            tools = list(obs.get("tools") or [])
            if tools:
                tools.append(_answer_tool())
            convs.append((openai_messages(obs["messages"]), tools or None))
        kwargs = {"prefill": self.prefill} if self.prefill else {}  # engines without prefill keep working
        replies = self.engine.chat(convs, temperature=self.temperature, max_new_tokens=self.max_new_tokens, seed=seed,
                                   **kwargs)
        actions = []
        texts = [getattr(r, "prefill", "") + r.text if r.text else "" for r in replies]
        self.last_texts = texts
        for r, text in zip(replies, texts):
            parsed = parse_reply(text) if text.strip() else {}
            if isinstance(parsed, str):
                # plain prose from a chat server is a message to the shopper; a prefilled reply
                # that does not parse is no action (as on the token-level path)
                parsed = {} if getattr(r, "prefill", "") else {"assistant_message": parsed}
            if r.tool_calls:
                calls = list(parsed.get("tool_calls") or [])
                for c in r.tool_calls:
                    if c.get("name") == ANSWER_TOOL_NAME:
                        parsed["answer"] = c.get("args")
                    else:
                        calls.append(c)
                if calls:
                    parsed["tool_calls"] = calls
            actions.append(parsed if parsed else text)
        return actions


def describe(action: Any) -> str:
    """Short text of an action for logs."""
    if isinstance(action, str):
        return f"<raw {len(action)} chars>"
    return json.dumps(action)[:200]

