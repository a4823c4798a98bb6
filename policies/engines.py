"""Generation engines behind one small interface.

Token-level engines (training and evaluation):

    completions = engine.generate(prompts, temperature=1.0, max_new_tokens=256, seed=0, stop_ids=[2])
    # prompts: list of token-id lists; each Completion has ids, logprobs, finish_reason
    engine.load_weights(state_dict, version=3, checksum="sha256...")   # in place, verified
    engine.version, engine.checksum

- `HFEngine`: transformers on CPU or GPU; one batched decode loop with left padding and a
  KV cache; pure sampling from softmax(logits / T) (no top-k/top-p, so the recorded
  logprobs are exactly the sampling distribution the learner's importance ratio needs);
  ``temperature=0`` is greedy. On GPU, ``static_cache=True`` uses ``model.generate`` with
  a static KV cache (and ``compile=True`` wraps the forward in ``torch.compile``).
- `VLLMEngine`: vLLM (imported only when installed); per-request seeds, weights updated
  in place through the model's ``load_weights``. Code path only; untested here.

Text-level engine (evaluation against any server):

- `OpenAIEngine`: any OpenAI-compatible ``/v1/chat/completions`` server over HTTP
  (stdlib urllib, no proxies). It takes messages + tools and returns text/tool calls; no
  token ids, so it cannot feed the learner. An assistant prefill is sent as a final
  assistant message with vLLM/SGLang's ``continue_final_message`` (``prefill_mode``).

Weights travel as a ``{name: tensor}`` dict (a subset of the model's parameters is fine;
a LoRA learner sends only the merged weights of its adapted modules).
`weights_checksum` is sha256 over the tensors in name order (name, dtype, shape, bytes);
the sender hashes what it sends in the engine's dtype, the engine hashes its own
parameters after loading and refuses the version when they differ.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

__all__ = ["Completion", "Engine", "HFEngine", "VLLMEngine", "OpenAIEngine", "ChatReply", "weights_checksum",
           "WeightSyncError", "export_weights"]


class WeightSyncError(RuntimeError):
    """Loaded weights do not match the checksum that came with them."""


@dataclass
class Completion:
    ids: list[int]
    logprobs: list[float]
    finish_reason: str = "stop"  # "stop" | "length"
    version: int = 0


class Engine(Protocol):
    token_level: bool
    version: int

    def generate(self, prompts: Sequence[Sequence[int]], temperature: float = 1.0, max_new_tokens: int = 256,
                 seed: int | None = None, stop_ids: Sequence[int] | None = None) -> list[Completion]: ...

    def load_weights(self, state_dict: Mapping[str, Any], version: int, checksum: str | None = None) -> str: ...


# --------------------------------------------------------------------------- weights


def weights_checksum(state_dict: Mapping[str, Any]) -> str:
    """sha256 over (name, dtype, shape, raw bytes) of every tensor, in name order."""
    import torch

    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        t = t.detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def export_weights(model, dtype=None, names: Sequence[str] | None = None) -> dict:
    """Detached CPU copies of the model's parameters (tied ones once), optionally cast to
    the engine's `dtype` and restricted to `names`.

    A peft LoRA model is exported under the base model's names with its adapters merged
    (``w + B A * scale``, computed on the side: the learner's weights are not touched). Only
    parameters LoRA can change are sent unless `names` is given: the merged weight of every
    module carrying an adapter (``model.layers.0.self_attn.q_proj.weight``, ...) plus any
    other trainable base parameter; embeddings, norms and the head stay as the engine has them."""
    import torch

    if hasattr(model, "peft_config") and hasattr(model, "merge_and_unload"):
        return _merged_lora_weights(model, dtype, names)
    out = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if names is not None and name not in names:
                continue
            t = p.detach().to("cpu")
            if dtype is not None:
                t = t.to(dtype)
            out[name] = t.clone() if t.data_ptr() == p.data_ptr() else t
    return out


def _peft_name(name: str) -> str:
    """peft parameter name -> the plain model's (``base_model.model.`` and ``.base_layer`` dropped)."""
    return name.replace("base_model.model.", "", 1).replace(".base_layer", "")


def _lora_modules(model) -> dict[int, Any]:
    """{id(base weight): LoRA layer} for every module of `model` that carries an adapter."""
    out = {}
    for _, m in model.named_modules():
        if hasattr(m, "lora_A") and hasattr(m, "get_base_layer") and len(m.lora_A):
            if any(getattr(m, "lora_variant", {}).values()) or any(getattr(m, "lora_bias", {}).values()):
                raise NotImplementedError("export_weights merges plain LoRA only (no DoRA / lora_bias)")
            out[id(m.get_base_layer().weight)] = m
    return out


def _merged_weight(layer, dtype):
    """The base weight of one LoRA layer with its active adapters added (float32 sum); a
    fresh CPU tensor in `dtype` (default: the weight's own)."""
    w = layer.get_base_layer().weight
    merged = w.detach().float().clone()
    if not (getattr(layer, "merged", False) or getattr(layer, "disable_adapters", False)):
        for a in layer.active_adapters:
            if a in layer.lora_A:
                merged += layer.get_delta_weight(a).float()
    return merged.to("cpu", dtype=dtype if dtype is not None else w.dtype).contiguous()


def _merged_lora_weights(model, dtype, names):
    import torch

    layers = _lora_modules(model)
    out = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                continue
            clean = _peft_name(name)
            if names is not None:
                if clean not in names:
                    continue
            elif id(p) not in layers and not p.requires_grad:
                continue  # frozen and not adapted: the engine already has it
            if id(p) in layers:
                out[clean] = _merged_weight(layers[id(p)], dtype)
            else:
                t = p.detach().to("cpu")
                out[clean] = (t.to(dtype) if dtype is not None else t).clone()
    return out


# --------------------------------------------------------------------------- HF


class HFEngine:
    """transformers generation, batched with left padding (see module docstring)."""

    token_level = True

    def __init__(self, model, tokenizer=None, device: str | None = None, pad_id: int | None = None,
                 stop_ids: Sequence[int] | None = None, max_batch: int = 64, static_cache: bool = False,
                 compile: bool = False):
        import torch

        self.model = model
        self.tokenizer = tokenizer
        self.device = torch.device(device) if device else next(model.parameters()).device
        if pad_id is None and tokenizer is not None:
            pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad_id if pad_id is not None else 0)
        eos = getattr(tokenizer, "eos_token_id", None) if tokenizer is not None else None
        self.stop_ids = list(stop_ids) if stop_ids is not None else ([int(eos)] if eos is not None else [])
        self.max_batch = max(1, int(max_batch))
        self.static_cache = static_cache
        self.version = 0
        self.checksum: str | None = None
        self.generated_tokens = 0
        self.generate_s = 0.0
        self._forward = model
        if compile:
            self._forward = torch.compile(model)
        self.model.eval()

    # ---- generation
    def generate(self, prompts, temperature: float = 1.0, max_new_tokens: int = 256, seed: int | None = None,
                 stop_ids=None) -> list[Completion]:
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        prompts = [list(map(int, p)) for p in prompts]
        if any(not p for p in prompts):
            raise ValueError("every prompt needs at least one token")
        stops = list(stop_ids) if stop_ids is not None else self.stop_ids
        t0 = time.perf_counter()
        out: list[Completion] = []
        for start in range(0, len(prompts), self.max_batch):
            chunk = prompts[start:start + self.max_batch]
            cseed = None if seed is None else int(seed) + start
            if self.static_cache:
                out += self._generate_hf(chunk, temperature, max_new_tokens, cseed, stops)
            else:
                out += self._generate_loop(chunk, temperature, max_new_tokens, cseed, stops)
        self.generate_s += time.perf_counter() - t0
        self.generated_tokens += sum(len(c.ids) for c in out)
        for c in out:
            c.version = self.version
        return out

    def _batch(self, prompts):
        import torch

        n = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), n), self.pad_id, dtype=torch.long)
        attn = torch.zeros((len(prompts), n), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, n - len(p):] = torch.tensor(p, dtype=torch.long)
            attn[i, n - len(p):] = 1
        return ids.to(self.device), attn.to(self.device)

    def _logits(self, **kwargs):
        try:
            return self._forward(**kwargs, logits_to_keep=1)
        except TypeError:
            return self._forward(**kwargs)

    def _generate_loop(self, prompts, temperature, max_new_tokens, seed, stops):
        import torch

        ids, attn = self._batch(prompts)
        B = ids.shape[0]
        gen = None
        if seed is not None:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(int(seed))
        stop_t = torch.tensor(stops or [-1], device=self.device)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        toks: list[list[int]] = [[] for _ in range(B)]
        lps: list[list[float]] = [[] for _ in range(B)]
        finish = ["length"] * B
        done = torch.zeros(B, dtype=torch.bool, device=self.device)
        with torch.inference_mode():
            out = self._logits(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True)
            past = out.past_key_values
            logits = out.logits[:, -1, :]
            last_pos = pos[:, -1:]
            for step in range(max_new_tokens):
                logits = logits.float()
                if temperature == 0:
                    logp = torch.log_softmax(logits, -1)
                    nxt = logp.argmax(-1)
                else:
                    logp = torch.log_softmax(logits / temperature, -1)
                    nxt = torch.multinomial(logp.exp(), 1, generator=gen).squeeze(-1)
                chosen = logp.gather(-1, nxt[:, None]).squeeze(-1)
                nxt_l, chosen_l, done_l = nxt.tolist(), chosen.tolist(), done.tolist()
                for i in range(B):
                    if not done_l[i]:
                        toks[i].append(nxt_l[i])
                        lps[i].append(chosen_l[i])
                hit = torch.isin(nxt, stop_t) & ~done
                for i in torch.nonzero(hit).flatten().tolist():
                    finish[i] = "stop"
                done = done | hit
                if bool(done.all()) or step == max_new_tokens - 1:
                    break
                feed = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
                attn = torch.cat([attn, torch.ones((B, 1), dtype=attn.dtype, device=self.device)], dim=1)
                last_pos = last_pos + 1
                out = self._logits(input_ids=feed[:, None], attention_mask=attn, position_ids=last_pos,
                                   past_key_values=past, use_cache=True)
                past = out.past_key_values
                logits = out.logits[:, -1, :]
        return [Completion(toks[i], lps[i], finish[i]) for i in range(B)]

    def _generate_hf(self, prompts, temperature, max_new_tokens, seed, stops):
        """``model.generate`` with a static KV cache (GPU); logprobs from the processed scores."""
        import torch

        ids, attn = self._batch(prompts)
        if seed is not None:
            torch.manual_seed(int(seed))
        kwargs = dict(do_sample=temperature > 0, max_new_tokens=max_new_tokens, eos_token_id=stops or None,
                      pad_token_id=self.pad_id, output_scores=True, return_dict_in_generate=True,
                      cache_implementation="static", top_k=0, top_p=1.0)
        if temperature > 0:
            kwargs["temperature"] = temperature
        with torch.inference_mode():
            res = self.model.generate(input_ids=ids, attention_mask=attn, **kwargs)
        seqs = res.sequences[:, ids.shape[1]:]
        out = []
        for i in range(len(prompts)):
            toks, lps, finish = [], [], "length"
            for s, score in enumerate(res.scores):
                t = int(seqs[i, s])
                toks.append(t)
                lps.append(float(torch.log_softmax(score[i].float(), -1)[t]))
                if t in stops:
                    finish = "stop"
                    break
            out.append(Completion(toks, lps, finish))
        return out

    # ---- weights
    def load_weights(self, state_dict: Mapping[str, Any], version: int, checksum: str | None = None) -> str:
        """Copy `state_dict` into the model in place, then verify `checksum` over the
        loaded parameters; the version advances only when they match."""
        import torch

        params = dict(self.model.named_parameters())
        unknown = sorted(set(state_dict) - set(params))
        if unknown:
            raise WeightSyncError(f"unknown parameter(s): {', '.join(unknown[:5])}")
        with torch.no_grad():
            for name, t in state_dict.items():
                p = params[name]
                if tuple(p.shape) != tuple(t.shape):
                    raise WeightSyncError(f"{name}: shape {tuple(t.shape)} != {tuple(p.shape)}")
                p.copy_(t.to(device=p.device, dtype=p.dtype))
        got = weights_checksum({k: params[k] for k in state_dict})
        if checksum is not None and got != checksum:
            raise WeightSyncError(f"checksum mismatch after loading version {version}: {got[:12]} != {checksum[:12]}")
        self.version = int(version)
        self.checksum = got
        return got

    def weights_checksum(self, names: Sequence[str] | None = None) -> str:
        params = dict(self.model.named_parameters())
        return weights_checksum({k: v for k, v in params.items() if names is None or k in names})

    @property
    def dtype(self):
        return next(self.model.parameters()).dtype

    def stats(self) -> dict:
        return {"version": self.version, "generated_tokens": self.generated_tokens, "generate_s": self.generate_s,
                "tokens_per_s": self.generated_tokens / self.generate_s if self.generate_s else 0.0}


# --------------------------------------------------------------------------- vLLM


class VLLMEngine:
    """vLLM engine (GPU). Code path only: not exercised by the CPU test suite."""

    token_level = True

    def __init__(self, model_path: str, dtype: str = "bfloat16", gpu_memory_utilization: float = 0.5,
                 stop_ids: Sequence[int] | None = None, **llm_kwargs):
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ImportError("VLLMEngine needs vllm: pip install vllm (on a CUDA machine)") from exc
        try:  # "smollm2" / a .gguf -> the converted safetensors directory
            from .models import ModelNotFound, local_dir

            model_path, _ = local_dir(model_path)
        except ModelNotFound:
            pass
        kwargs = dict(model=model_path, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                      enable_prefix_caching=True, **llm_kwargs)
        try:  # recent vLLM: logprobs after temperature, as the learner's ratio needs
            self.llm = LLM(logprobs_mode="processed_logprobs", **kwargs)
        except TypeError:
            self.llm = LLM(**kwargs)
        self.stop_ids = list(stop_ids or [])
        self.version = 0
        self.checksum: str | None = None

    def generate(self, prompts, temperature: float = 1.0, max_new_tokens: int = 256, seed: int | None = None,
                 stop_ids=None) -> list[Completion]:
        from vllm import SamplingParams

        try:
            from vllm.inputs import TokensPrompt
        except ImportError:  # older vLLM
            TokensPrompt = dict  # noqa: N806
        stops = list(stop_ids) if stop_ids is not None else self.stop_ids
        params = [SamplingParams(temperature=temperature, max_tokens=max_new_tokens,
                                 seed=None if seed is None else int(seed) + i, logprobs=0, stop_token_ids=stops,
                                 skip_special_tokens=False)
                  for i in range(len(prompts))]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params, use_tqdm=False)
        res = []
        for o in outs:
            c = o.outputs[0]
            ids = list(c.token_ids)
            lps = [float(c.logprobs[i][t].logprob) for i, t in enumerate(ids)] if c.logprobs else [0.0] * len(ids)
            res.append(Completion(ids, lps, "length" if c.finish_reason == "length" else "stop", self.version))
        return res

    def _model(self):
        engine = self.llm.llm_engine
        for path in ("model_executor.driver_worker.model_runner.model",
                     "model_executor.driver_worker.worker.model_runner.model"):
            obj = engine
            try:
                for part in path.split("."):
                    obj = getattr(obj, part)
                return obj
            except AttributeError:
                continue
        return None

    def load_weights(self, state_dict: Mapping[str, Any], version: int, checksum: str | None = None) -> str:
        """vLLM fuses weights (qkv, gate/up), so the check is over what arrived, before loading."""
        got = weights_checksum(state_dict)
        if checksum is not None and got != checksum:
            raise WeightSyncError(f"checksum mismatch for version {version}: {got[:12]} != {checksum[:12]}")
        items = list(state_dict.items())
        model = self._model()
        if model is not None:
            model.load_weights(items)
        elif hasattr(self.llm, "apply_model"):
            self.llm.apply_model(lambda m: m.load_weights(items))
        else:
            raise WeightSyncError("this vLLM version exposes no in-place weight loading")
        try:
            self.llm.reset_prefix_cache()
        except AttributeError:
            pass
        self.version = int(version)
        self.checksum = got
        return got


# --------------------------------------------------------------------------- OpenAI-compatible HTTP


@dataclass
class ChatReply:
    text: str
    tool_calls: list[dict] = field(default_factory=list)  # [{"name", "args"}]
    finish_reason: str = "stop"
    raw: dict | None = None
    prefill: str = ""  # the assistant text `text` continues ("" when none was sent)


class _ClientError(RuntimeError):
    """The server refused the request (HTTP 4xx); not retried."""


PREFILL_MODES = ("continue", "none")


class OpenAIEngine:
    """Any OpenAI-compatible chat server, for evaluation (`token_level = False`).

    Assistant prefill (``chat(..., prefill='{"')``): with ``prefill_mode="continue"`` (default)
    the request ends with ``{"role": "assistant", "content": prefill}`` and carries
    ``"continue_final_message": true, "add_generation_prompt": false`` (vLLM's and SGLang's
    extra chat parameters), so the reply text continues the prefill; the `ChatReply` says
    which prefill it continues (``reply.prefill``). A server that answers 4xx to that
    request raises a RuntimeError naming ``prefill_mode="none"``, which never sends a prefill
    (every ``reply.prefill`` is then "")."""

    token_level = False

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 120.0,
                 max_workers: int = 8, native_tools: bool = True, retries: int = 2, prefill_mode: str = "continue"):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if prefill_mode not in PREFILL_MODES:
            raise ValueError(f"prefill_mode must be one of {PREFILL_MODES}, got {prefill_mode!r}")
        self.prefill_mode = prefill_mode
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.native_tools = native_tools
        self.retries = max(0, int(retries))
        self.version = 0
        self._pool = ThreadPoolExecutor(max(1, int(max_workers)), thread_name_prefix="openai")
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _post(self, path: str, body: dict) -> dict:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(self.base_url + path, data=data, headers=headers, method="POST")
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read().decode())
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")[:500]
                if exc.code < 500:
                    raise _ClientError(f"{self.base_url}{path}: HTTP {exc.code}: {detail}") from None
                last = RuntimeError(f"{self.base_url}{path}: HTTP {exc.code}: {detail}")
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = exc
            time.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"{self.base_url}{path}: request failed: {last}")

    def chat_one(self, messages: list[dict], tools: list[dict] | None, temperature: float = 0.0,
                 max_new_tokens: int = 256, seed: int | None = None, prefill: str = "") -> ChatReply:
        """One chat completion; `prefill` is sent as described in the class docstring."""
        prefill = prefill if self.prefill_mode == "continue" else ""
        if prefill:
            messages = list(messages) + [{"role": "assistant", "content": prefill}]
        body: dict = {"model": self.model, "messages": messages, "temperature": temperature,
                      "max_tokens": max_new_tokens}
        if prefill:
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        if seed is not None:
            body["seed"] = int(seed)
        if tools and self.native_tools:
            body["tools"] = tools
        try:
            res = self._post("/chat/completions", body)
        except _ClientError as exc:
            if not prefill:
                raise
            raise RuntimeError(f"{exc}\n(the request carried an assistant prefill with continue_final_message; "
                               "for a server without it use OpenAIEngine(..., prefill_mode=\"none\"))") from None
        try:
            choice = res["choices"][0]
            msg = choice.get("message") or {}
        except (KeyError, IndexError, TypeError):
            raise RuntimeError(f"unexpected chat completion response: {str(res)[:300]}") from None
        calls = []
        for c in msg.get("tool_calls") or []:
            fn = c.get("function") or {}
            args = fn.get("arguments", {})
            if isinstance(args, str):
                try:
                    args = json.loads(args) if args.strip() else {}
                except json.JSONDecodeError:
                    pass
            calls.append({"name": fn.get("name"), "args": args})
        return ChatReply(msg.get("content") or "", calls, choice.get("finish_reason") or "stop", res, prefill)

    def chat(self, conversations: Sequence[tuple[list[dict], list[dict] | None]], temperature: float = 0.0,
             max_new_tokens: int = 256, seed: int | None = None, prefill: str = "") -> list[ChatReply]:
        """`chat_one` over the conversations in parallel (seed + i each), replies in order."""
        futs = [self._pool.submit(self.chat_one, m, t, temperature, max_new_tokens,
                                  None if seed is None else seed + i, prefill)
                for i, (m, t) in enumerate(conversations)]
        return [f.result() for f in futs]

    def generate(self, *args, **kwargs):
        raise NotImplementedError("OpenAIEngine is text-level (chat); use LLMPolicy, which calls chat()")

    def load_weights(self, *args, **kwargs):
        raise NotImplementedError("an OpenAI-compatible server manages its own weights")

    def close(self) -> None:
        self._pool.shutdown(wait=False)
