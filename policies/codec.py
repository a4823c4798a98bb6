"""Prompt / tool-call codec: observations -> token ids with the model's own chat template,
replies -> the agent action of docs/architecture.md, and token-in/token-out episode records.

Rendering (`ChatCodec.render`):

- The observation's OpenAI-format messages go through ``tokenizer.apply_chat_template``
  with the generation prompt appended (plus an optional assistant *prefill* such as
  ``{"`` that is fed as prompt tokens and prepended to the reply before parsing).
- Tools: when the template has a tool format (its source mentions ``tools``, e.g. Qwen2.5,
  Llama 3.1, Hermes), the schemas go in through ``apply_chat_template(tools=...)``, plus an
  ``answer`` pseudo-tool whose arguments are the answer object; the model may then reply
  with native ``<tool_call>`` blocks. Otherwise (SmolLM2's template has no tool format) the
  tools are listed in the system message: ``compact`` (default; one line per tool,
  ``name(arg: type, opt?: type): description``), ``json`` (the raw schemas) or ``none``
  (no listing: for a model fine-tuned on the tools; the env's system prompt still states the
  action format), and the model replies with the env's JSON action object.
- History: an assistant message is rendered as the canonical JSON action it carried
  (native mode: content + ``tool_calls`` with dict arguments). Tool results keep role
  ``tool`` when the template accepts it, else become ``user`` messages; in non-native mode
  their content is prefixed with ``<tool name> result:``.

Parsing (`parse_reply`): a plain JSON object; Qwen/Hermes ``<tool_call>{...}</tool_call>``
blocks (``name`` + ``arguments`` become ``tool_calls``; a call named ``answer`` becomes the
answer; text outside the blocks becomes ``assistant_message``); or one code-fenced JSON
object (``lenient=True`` also accepts a reply that starts with a JSON object and then
rambles on). OpenAI-shaped calls (``{"function": {"name", "arguments": "<json>"}}``) and
``arguments``/``parameters`` keys are normalised to ``{"name", "args"}``. Anything else is
returned unchanged as the raw string: the environment owns invalidity and ends the episode
with a named reason.

Token-in/token-out (`EpisodeTokens`): per agent turn it keeps the prompt ids actually fed
and the sampled ids with their logprobs. Turn t+1's prompt is turn t's prompt + sampled ids
+ the template's turn-closing text (the part after the stop token, e.g. ``"\\n"`` after
``<|im_end|>``; the whole closing when generation hit the length limit) + the *template
delta* of the new messages (tool results, shopper replies) + the prefill. The delta is
rendered as ``render(BASE + new) - render(BASE)`` where BASE is a fixed system/user/
assistant triple, so the model's own template decides every separator. The training
sequence of an episode is therefore exactly what the engine saw and sampled, and the loss
mask covers only the sampled ids (never prefill, tool, shopper or template tokens).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from ecomrlve.envs.actions import InvalidAction, loads_bounded

__all__ = [
    "ChatCodec", "CodecError", "EpisodeTokens", "TurnTokens", "parse_reply", "action_to_text",
    "assistant_action", "compact_tool_listing", "ANSWER_TOOL_NAME", "replay_prompts",
]

ANSWER_TOOL_NAME = "answer"
_ANSWER_ALIASES = ("answer", "submit_answer", "final_answer")
_MARK = "\u2063ECOMRLVE_ASSISTANT\u2063"
_BASE = [
    {"role": "system", "content": "S"},
    {"role": "user", "content": "U"},
    {"role": "assistant", "content": _MARK},
]
_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)
_ACTION_KEYS = {"assistant_message", "tool_calls", "answer"}
MAX_REPLY_CHARS = 256 * 1024  # a reply longer than this is never parsed (the env caps actions at 64 KiB)


class CodecError(ValueError):
    """The chat template cannot be used the way the codec needs (named reason)."""


# --------------------------------------------------------------------------- parsing


def _norm_call(call: Any) -> Any:
    """{"name", "arguments"|"parameters"|"args"} or OpenAI {"function": {...}} -> {"name", "args"}.
    Returns the input unchanged when it is not call-shaped (the env then names the problem)."""
    if not isinstance(call, dict):
        return call
    if isinstance(call.get("function"), dict) and "name" not in call:
        call = call["function"]
    if "name" not in call:
        return call
    out = {"name": call["name"]}
    for key in ("args", "arguments", "parameters"):
        if key in call:
            args = call[key]
            if isinstance(args, str):
                parsed = _loads(args) if args.strip() else {}
                if parsed is not None:  # else left as a string: the env rejects it with the field name
                    args = parsed
            out["args"] = args
            break
    extra = set(call) - {"name", "args", "arguments", "parameters", "id", "type"}
    for k in extra:  # unknown keys are kept so the env reports them
        out[k] = call[k]
    return out


def _norm_action(obj: dict) -> dict:
    """Normalise call shapes inside an action object; a bare call object becomes an action."""
    if not (set(obj) & _ACTION_KEYS) and "name" in obj and ({"arguments", "parameters", "args"} & set(obj)):
        obj = {"tool_calls": [obj]}
    if isinstance(obj.get("tool_calls"), list):
        obj = dict(obj)
        calls = []
        for c in obj["tool_calls"]:
            c = _norm_call(c)
            if isinstance(c, dict) and c.get("name") in _ANSWER_ALIASES and "answer" not in obj:
                obj["answer"] = c.get("args", {})
                continue
            calls.append(c)
        obj["tool_calls"] = calls
        if not calls:
            del obj["tool_calls"]
    return obj


def _loads(text: str, leading: bool = False) -> Any:
    """The JSON value of `text` (bounded: no deep nesting, huge ints or inf), or None."""
    try:
        return loads_bounded(text, max_bytes=MAX_REPLY_CHARS, leading=leading)
    except InvalidAction:
        return None


def _loads_object(text: str) -> dict | None:
    obj = _loads(text)
    return obj if isinstance(obj, dict) else None


def _leading_object(s: str) -> dict | None:
    if not s.startswith("{"):
        return None
    obj = _loads(s, leading=True)
    return obj if isinstance(obj, dict) else None


def parse_reply(text: str, lenient: bool = False) -> dict | str:
    """The action a model reply encodes, or `text` itself when it encodes none.
    `lenient`: also accept a reply that starts with a JSON object and goes on with other
    text (the rest is ignored)."""
    if not isinstance(text, str):
        return text
    s = text.strip()
    obj = _loads_object(s)
    if obj is not None:
        return _norm_action(obj)
    if "<tool_call>" in s:
        calls = []
        for block in _TOOL_CALL.findall(s):
            c = _loads_object(block)
            if c is None:
                return text
            calls.append(c)
        rest = _TOOL_CALL.sub("", s).strip()
        action: dict = {}
        if rest:
            inner = _loads_object(rest)
            if inner is not None:
                action.update(inner)
            else:
                action["assistant_message"] = rest
        action["tool_calls"] = list(action.get("tool_calls") or []) + calls
        return _norm_action(action)
    fences = _FENCE.findall(s)
    if len(fences) == 1:
        obj = _loads_object(fences[0].strip())
        if obj is not None:
            return _norm_action(obj)
    if lenient:
        obj = _leading_object(s)
        if obj is not None:
            return _norm_action(obj)
    return text


# --------------------------------------------------------------------------- actions as text


def action_to_text(action: Any) -> str:
    """The canonical reply text of an action (what SFT trains on and the history shows)."""
    if isinstance(action, str):
        return action
    obj = {k: v for k, v in dict(action).items() if v is not None and v != []}
    return json.dumps(obj, ensure_ascii=False)


def assistant_action(msg: dict) -> dict | str:
    """Rebuild the action an env assistant message records (content, tool_calls, answer).
    A message with content only is a plain ``assistant_message`` action."""
    calls = []
    for c in msg.get("tool_calls") or []:
        fn = c.get("function", c)
        args = fn.get("arguments", fn.get("args", {}))
        if isinstance(args, str):
            parsed = _loads(args)
            if parsed is not None:
                args = parsed
        calls.append({"name": fn.get("name"), "args": args})
    action: dict = {}
    if msg.get("content"):
        action["assistant_message"] = msg["content"]
    if calls:
        action["tool_calls"] = calls
    if msg.get("answer") is not None:
        action["answer"] = msg["answer"]
    return action


# --------------------------------------------------------------------------- tool listing


def _type_of(schema: dict, defs: dict) -> str:
    if "$ref" in schema:
        ref = defs.get(schema["$ref"].split("/")[-1], {})
        return _type_of(ref, defs)
    if "anyOf" in schema:
        parts = [_type_of(s, defs) for s in schema["anyOf"] if s.get("type") != "null"]
        return " | ".join(parts) if parts else "null"
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    t = schema.get("type", "any")
    if t == "object" and "properties" in schema:
        req = set(schema.get("required", []))
        inner = ", ".join(f"{k}{'' if k in req else '?'}: {_type_of(v, defs)}" for k, v in schema["properties"].items())
        return "{" + inner + "}"
    if t == "array":
        return f"list[{_type_of(schema.get('items', {}), defs)}]"
    return str(t)


def compact_tool_listing(tools: Sequence[dict]) -> str:
    """One line per tool: ``- name(arg: type, opt?: type): description``."""
    lines = []
    for t in tools:
        fn = t.get("function", t)
        params = fn.get("parameters") or {}
        defs = params.get("$defs", {})
        req = set(params.get("required", []))
        args = ", ".join(f"{k}{'' if k in req else '?'}: {_type_of(v, defs)}"
                         for k, v in (params.get("properties") or {}).items())
        desc = (fn.get("description") or "").strip().split("\n")[0]
        lines.append(f"- {fn['name']}({args}){': ' + desc if desc else ''}")
    return "\n".join(lines)


def _answer_tool() -> dict:
    from ecomrlve.envs.actions import answer_model

    return {"type": "function", "function": {
        "name": ANSWER_TOOL_NAME,
        "description": "Give the final answer; it ends the episode. Set only this task's answer fields.",
        "parameters": answer_model().model_json_schema(),
    }}


# --------------------------------------------------------------------------- episode records


@dataclass
class TurnTokens:
    prompt_ids: list[int]  # everything fed to the engine for this turn (prefill included)
    completion_ids: list[int]  # the sampled ids
    logprobs: list[float]  # log pi(sampled id) under the sampling temperature
    finish_reason: str = "stop"  # "stop" | "length"
    version: int = 0  # engine weight version that sampled it
    n_messages: int = 0  # len(obs["messages"]) when this turn was prompted
    prefill_len: int = 0
    text: str = ""  # prefill + decoded completion (what was parsed)


@dataclass
class EpisodeTokens:
    """Token-in/token-out record of one episode (see module docstring)."""

    turns: list[TurnTokens] = field(default_factory=list)
    rebased: int = 0  # turns whose prompt had to be fully re-rendered (not an extension)

    @property
    def n_messages(self) -> int:
        return self.turns[-1].n_messages if self.turns else 0

    def segments(self) -> list[tuple[list[int], list[int], list[float]]]:
        """Training sequences (ids, loss mask, old logprobs), one per maximal run of turns
        whose prompts extend each other (normally the whole episode is one segment)."""
        out: list[tuple[list[int], list[int], list[float]]] = []
        ids: list[int] = []
        mask: list[int] = []
        lps: list[float] = []
        for t in self.turns:
            if ids and t.prompt_ids[: len(ids)] != ids:
                out.append((ids, mask, lps))
                ids, mask, lps = [], [], []
            new = t.prompt_ids[len(ids):]
            ids = ids + new + list(t.completion_ids)
            mask = mask + [0] * len(new) + [1] * len(t.completion_ids)
            lps = lps + [0.0] * len(new) + [float(x) for x in t.logprobs]
        if ids:
            out.append((ids, mask, lps))
        return out

    def min_version(self) -> int:
        return min((t.version for t in self.turns), default=0)

    def n_policy_tokens(self) -> int:
        return sum(len(t.completion_ids) for t in self.turns)

    def to_dict(self) -> dict:
        return {"turns": [t.__dict__.copy() for t in self.turns], "rebased": self.rebased}

    @classmethod
    def from_dict(cls, d: dict) -> "EpisodeTokens":
        return cls([TurnTokens(**t) for t in d["turns"]], d.get("rebased", 0))


# --------------------------------------------------------------------------- the codec


class ChatCodec:
    """Renders observations with `tokenizer`'s chat template and parses replies."""

    def __init__(self, tokenizer, tool_format: str = "auto", prefill: str = "", tool_role: str = "auto",
                 lenient: bool = False):
        if tool_format not in ("auto", "native", "compact", "json", "none"):
            raise ValueError(f"tool_format must be auto, native, compact, json or none, got {tool_format!r}")
        if getattr(tokenizer, "chat_template", None) is None:
            raise CodecError("the tokenizer has no chat template")
        self.tok = tokenizer
        template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else json.dumps(
            tokenizer.chat_template)
        has_tools = "tools" in template
        if tool_format == "auto":
            tool_format = "native" if has_tools else "compact"
        self.tool_format = tool_format
        self.lenient = lenient
        self.native = tool_format == "native"
        self.prefill = prefill or ""
        self.prefill_ids = self.encode(self.prefill) if self.prefill else []
        self.tool_role = self._probe_tool_role() if tool_role == "auto" else tool_role
        base = self._apply(_BASE, add_generation_prompt=False)
        if _MARK not in base:
            raise CodecError("the chat template does not render assistant content verbatim")
        self._base_text = base
        self.turn_suffix = base[base.rindex(_MARK) + len(_MARK):]
        eos = tokenizer.eos_token or ""
        self.eos_text = eos
        self._close_after_eos = self.turn_suffix[len(eos):] if eos and self.turn_suffix.startswith(eos) else None
        self.stop_ids = self._stop_ids()

    # ---- tokenizer helpers
    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def _stop_ids(self) -> list[int]:
        ids = []
        if self.tok.eos_token_id is not None:
            ids.append(int(self.tok.eos_token_id))
        first = self.encode(self.turn_suffix)[:1]
        if first and first[0] in set(getattr(self.tok, "all_special_ids", [])) and first[0] not in ids:
            ids.append(first[0])
        return ids

    def _apply(self, messages, add_generation_prompt: bool, tools=None) -> str:
        kwargs = {"tools": tools} if tools else {}
        return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                            **kwargs)

    def _probe_tool_role(self) -> str:
        probe = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                 {"role": "assistant", "content": "A"},
                 {"role": "tool", "content": "TOOL\u2063RESULT", "tool_call_id": "call_0", "name": "t"}]
        try:
            text = self._apply(probe, add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - templates raise on unknown roles
            return "user"
        return "tool" if "TOOL\u2063RESULT" in text else "user"

    # ---- messages -> template messages
    def system_suffix(self, tools: Sequence[dict] | None) -> str:
        if not tools or self.native or self.tool_format == "none":
            return ""
        if self.tool_format == "json":
            listing = json.dumps([t.get("function", t) for t in tools], ensure_ascii=False)
        else:
            listing = compact_tool_listing(tools)
        return ("\n\nTools (call them in \"tool_calls\" as {\"name\": \"<tool>\", \"args\": {...}}):\n" + listing)

    def template_messages(self, messages: Sequence[dict], tools: Sequence[dict] | None = None) -> list[dict]:
        out: list[dict] = []
        suffix = self.system_suffix(tools)
        for i, m in enumerate(messages):
            role = m.get("role")
            if role == "system":
                out.append({"role": "system", "content": (m.get("content") or "") + (suffix if i == 0 else "")})
            elif role == "assistant":
                out.append(self._assistant_message(m))
            elif role == "tool":
                if self.native and self.tool_role == "tool":
                    out.append({"role": "tool", "content": m.get("content") or "",
                                "tool_call_id": m.get("tool_call_id"), "name": m.get("name")})
                else:
                    content = f"{m.get('name') or 'tool'} result: {m.get('content') or ''}"
                    out.append({"role": self.tool_role, "content": content})
            else:
                out.append({"role": role, "content": m.get("content") or ""})
        if suffix and (not messages or messages[0].get("role") != "system"):
            out.insert(0, {"role": "system", "content": suffix.lstrip("\n")})
        return out

    def _assistant_message(self, m: dict) -> dict:
        if "raw_text" in m:  # a reply kept verbatim (replay / tests)
            return {"role": "assistant", "content": m["raw_text"]}
        action = assistant_action(m)
        if not self.native:
            return {"role": "assistant", "content": action_to_text(action) if action else (m.get("content") or "")}
        calls = [{"type": "function", "function": {"name": c["name"], "arguments": c["args"]}}
                 for c in action.get("tool_calls", [])]
        if action.get("answer") is not None:
            calls.append({"type": "function", "function": {"name": ANSWER_TOOL_NAME, "arguments": action["answer"]}})
        msg: dict = {"role": "assistant", "content": action.get("assistant_message") or ""}
        if calls:
            msg["tool_calls"] = calls
        return msg

    def render(self, messages: Sequence[dict], tools: Sequence[dict] | None = None,
               add_generation_prompt: bool = True) -> str:
        """The whole conversation as the template renders it (tools included)."""
        native_tools = (list(tools) + [_answer_tool()]) if (self.native and tools) else None
        return self._apply(self.template_messages(messages, tools), add_generation_prompt, native_tools)

    def delta_text(self, new_messages: Sequence[dict]) -> str:
        """The template text of `new_messages` appended after a finished assistant turn,
        generation prompt included."""
        conv = self.template_messages(new_messages)
        after = self._apply(_BASE + conv, add_generation_prompt=True)
        if not after.startswith(self._base_text):
            raise CodecError("the chat template re-renders earlier turns; incremental rendering is not exact")
        return after[len(self._base_text):]

    def close_text(self, completion_ids: Sequence[int], finish_reason: str) -> str:
        """What the template puts after the assistant's content, minus the stop token the
        model already sampled."""
        if (finish_reason == "stop" and completion_ids and self._close_after_eos is not None
                and self.decode(completion_ids[-1:], skip_special_tokens=False) == self.eos_text):
            return self._close_after_eos
        return self.turn_suffix

    # ---- prompts
    def initial_prompt(self, obs: dict) -> list[int]:
        return self.encode(self.render(obs["messages"], obs.get("tools"))) + self.prefill_ids

    def next_prompt(self, episode: EpisodeTokens | None, obs: dict) -> tuple[list[int], bool]:
        """(prompt ids for `obs`, extended): the incremental prompt when `obs` continues
        `episode`, else a full render (extended=False)."""
        msgs = obs["messages"]
        if episode is None or not episode.turns:
            return self.initial_prompt(obs), False
        last = episode.turns[-1]
        n = last.n_messages
        if len(msgs) <= n or msgs[n].get("role") != "assistant":
            return self.initial_prompt(obs), False
        try:
            delta = self.delta_text(msgs[n + 1:])
        except CodecError:
            return self.initial_prompt(obs), False
        ids = (list(last.prompt_ids) + list(last.completion_ids)
               + self.encode(self.close_text(last.completion_ids, last.finish_reason))
               + self.encode(delta) + self.prefill_ids)
        return ids, True

    def reply_text(self, completion_ids: Sequence[int]) -> str:
        return self.prefill + self.decode(completion_ids, skip_special_tokens=True)

    def parse(self, text: str) -> dict | str:
        return parse_reply(text, self.lenient)


def replay_prompts(codec: ChatCodec, messages: Sequence[dict], tools: Sequence[dict] | None,
                   turns: Sequence[TurnTokens]) -> list[list[int]]:
    """Re-derive every turn's prompt ids from a finished transcript and the sampled ids
    alone (the check that the recorded token stream is reproducible)."""
    assistant_at = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    if len(assistant_at) < len(turns):
        raise ValueError(f"transcript has {len(assistant_at)} assistant messages for {len(turns)} turns")
    prompts: list[list[int]] = []
    ep = EpisodeTokens()
    for k, t in enumerate(turns):
        upto = assistant_at[k]
        obs = {"messages": list(messages[:upto]), "tools": tools}
        ids, _ = codec.next_prompt(ep, obs)
        prompts.append(ids)
        ep.turns.append(TurnTokens(ids, list(t.completion_ids), list(t.logprobs), t.finish_reason, t.version,
                                   n_messages=upto, prefill_len=len(codec.prefill_ids)))
    return prompts
