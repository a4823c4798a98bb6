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
    """transformers generation, batched with left padding (see module docstring).

    Both paths keep the sampled ids, their logprobs and the finished flags in device
    tensors and look at the flags on the host once every `sync_every` decode steps (one
    ``done.all()`` check); the ids and logprobs come back in one transfer at the end. So a
    batch runs at most ``sync_every - 1`` decode steps past its last stop token, and no
    decode step waits for the host.

    - default: a decode loop over transformers' dynamic KV cache (``compile=True`` wraps the
      forward in ``torch.compile``).
    - ``static_cache=True``: a `transformers.StaticCache` of ``bucket(prompt + max_new_tokens)``
      slots and an explicit boolean attention mask over them; on CUDA the decode step (forward,
      cache write, mask and position update) is captured once per (batch bucket, cache bucket)
      as a CUDA graph and replayed (``graphs=False`` turns that off; a capture that fails turns
      it off too and says why in ``graph_error``), or, with ``compile=True``
      (or a mode string), compiled by ``torch.compile(mode="reduce-overhead")`` instead. The
      batch is padded to a power of two (at least 8) and the cache to a multiple of
      ``cache_bucket`` tokens so that few graphs serve every call; at most ``max_graphs`` are
      kept (least recently used dropped).
    """

    token_level = True

    def __init__(self, model, tokenizer=None, device: str | None = None, pad_id: int | None = None,
                 stop_ids: Sequence[int] | None = None, max_batch: int = 64, static_cache: bool = False,
                 compile: bool | str = False, graphs: bool | None = None, sync_every: int | None = None,
                 cache_bucket: int = 512, max_graphs: int = 8):
        import torch

        self.model = model
        self.tokenizer = tokenizer
        self.device = torch.device(device) if device else next(model.parameters()).device
        if pad_id is None and tokenizer is not None:
            pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad_id if pad_id is not None else 0)
        eos = getattr(tokenizer, "eos_token_id", None) if tokenizer is not None else None
        self.stop_ids = list(stop_ids) if stop_ids is not None else ([int(eos)] if eos is not None else [])
        on_cuda = self.device.type == "cuda"
        if sync_every is None:
            sync_every = 8 if on_cuda else 1  # a host check costs nothing on CPU
        for name, v in (("max_batch", max_batch), ("sync_every", sync_every), ("cache_bucket", cache_bucket),
                        ("max_graphs", max_graphs)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(compile, (bool, str)):
            raise ValueError(f"compile must be true, false or a torch.compile mode, got {compile!r}")
        self.max_batch = max_batch
        self.static_cache = bool(static_cache)
        self.sync_every = sync_every
        self.cache_bucket = cache_bucket
        self.max_graphs = max_graphs
        self.compile_mode = (compile if isinstance(compile, str) else "reduce-overhead") if compile else None
        self.graphs = bool(on_cuda if graphs is None else graphs) and on_cuda and self.static_cache \
            and self.compile_mode is None
        self.bucket_rows = self.graphs or bool(self.compile_mode and self.static_cache)  # pad batches to a bucket
        self.version = 0
        self.checksum: str | None = None
        self.generated_tokens = 0
        self.generate_s = 0.0
        self.decode_steps = 0
        self.host_syncs = 0
        self.captures = 0
        self.graph_error: str | None = None  # why CUDA graphs were turned off, if a capture failed
        self._static: dict = {}  # (batch bucket, cache length) -> _StaticDecoder, least recently used first
        self._forward = model
        if compile and not self.static_cache:
            self._forward = torch.compile(model) if compile is True else torch.compile(model, mode=compile)
        self._cache_kw = _cache_keyword(model)
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
                out += self._generate_static(chunk, temperature, max_new_tokens, cseed, stops)
            else:
                out += self._generate_loop(chunk, temperature, max_new_tokens, cseed, stops)
        self.generate_s += time.perf_counter() - t0
        self.generated_tokens += sum(len(c.ids) for c in out)
        for c in out:
            c.version = self.version
        return out

    def _batch(self, prompts, rows: int | None = None):
        """Left-padded (ids, attention) on the device; `rows` > len(prompts) adds filler
        rows of one real token (their results are dropped)."""
        import torch

        n = max(len(p) for p in prompts)
        rows = rows or len(prompts)
        ids = torch.full((rows, n), self.pad_id, dtype=torch.long)
        attn = torch.zeros((rows, n), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, n - len(p):] = torch.tensor(p, dtype=torch.long)
            attn[i, n - len(p):] = 1
        attn[len(prompts):, -1] = 1
        return ids.to(self.device), attn.to(self.device)

    def _logits(self, **kwargs):
        try:
            return self._forward(**kwargs, logits_to_keep=1)
        except TypeError:
            return self._forward(**kwargs)

    def _generator(self, seed):
        import torch

        if seed is None:
            return None
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(seed))
        return gen

    def _completions(self, state, n_rows: int) -> list[Completion]:
        """One device -> host transfer of the whole decode state."""
        toks, lps, length, done = (t[:n_rows].cpu() for t in (state.toks, state.lps, state.length, state.done))
        toks, lps, length, done = toks.tolist(), lps.tolist(), length.tolist(), done.tolist()
        return [Completion(toks[i][:length[i]], lps[i][:length[i]], "stop" if done[i] else "length")
                for i in range(n_rows)]

    def _finished(self, state, step: int, max_new_tokens: int) -> bool:
        """True when the loop should stop after `step`: the last step, or (checked on the
        host only every `sync_every` steps) every row has stopped."""
        if step == max_new_tokens - 1:
            return True
        if (step + 1) % self.sync_every:
            return False
        self.host_syncs += 1
        return bool(state.done.all())

    def _generate_loop(self, prompts, temperature, max_new_tokens, seed, stops):
        import torch

        ids, attn = self._batch(prompts)
        B = ids.shape[0]
        gen = self._generator(seed)
        state = _DecodeState(B, max_new_tokens, stops, self.device)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self._logits(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True)
            past = out.past_key_values
            logits = out.logits[:, -1, :]
            last_pos = pos[:, -1:]
            for step in range(max_new_tokens):
                nxt = state.record(step, logits, temperature, gen)
                self.decode_steps += 1
                if self._finished(state, step, max_new_tokens):
                    break
                feed = torch.where(state.done, torch.full_like(nxt, self.pad_id), nxt)
                attn = torch.cat([attn, torch.ones((B, 1), dtype=attn.dtype, device=self.device)], dim=1)
                last_pos = last_pos + 1
                out = self._logits(input_ids=feed[:, None], attention_mask=attn, position_ids=last_pos,
                                   use_cache=True, **{self._cache_kw: past})
                past = out.past_key_values
                logits = out.logits[:, -1, :]
        return self._completions(state, B)

    def _decoder(self, rows: int, cache_len: int) -> "_StaticDecoder":
        key = (rows, cache_len)
        dec = self._static.pop(key, None)
        if dec is None:
            while len(self._static) >= self.max_graphs:
                self._static.pop(next(iter(self._static)))  # least recently used
            dec = _StaticDecoder(self, rows, cache_len)
        self._static[key] = dec  # most recently used last
        return dec

    def _generate_static(self, prompts, temperature, max_new_tokens, seed, stops):
        """The static-KV-cache path (see the class docstring)."""
        import torch

        B = len(prompts)
        rows = _bucket_rows(B) if self.bucket_rows else B
        P = max(len(p) for p in prompts)
        cache_len = -(-(P + max_new_tokens) // self.cache_bucket) * self.cache_bucket
        ids, attn = self._batch(prompts, rows)
        gen = self._generator(seed)
        state = _DecodeState(rows, max_new_tokens, stops, self.device)
        state.done[B:] = True  # filler rows never hold the batch back
        dec = self._decoder(rows, cache_len)
        with torch.inference_mode():
            logits = dec.prefill(ids, attn)
            for step in range(max_new_tokens):
                nxt = state.record(step, logits, temperature, gen)
                self.decode_steps += 1
                if self._finished(state, step, max_new_tokens):
                    break
                logits = dec.step(torch.where(state.done, torch.full_like(nxt, self.pad_id), nxt))
        return self._completions(state, B)

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


def _bucket_rows(n: int) -> int:
    """Batch rows for a captured decode step: the next power of two, at least 8."""
    return max(8, 1 << (int(n) - 1).bit_length())


def _cache_keyword(model) -> str:
    """The forward's KV-cache argument: ``cache`` (transformers >= 5.2x) or ``past_key_values``."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


class _DecodeState:
    """Device tensors of one batched decode: sampled ids and logprobs per step, each row's
    length (its stop token included) and whether it stopped."""

    def __init__(self, rows: int, max_new_tokens: int, stops, device):
        import torch

        self.toks = torch.zeros((rows, max_new_tokens), dtype=torch.long, device=device)
        self.lps = torch.zeros((rows, max_new_tokens), dtype=torch.float32, device=device)
        self.length = torch.zeros(rows, dtype=torch.long, device=device)
        self.done = torch.zeros(rows, dtype=torch.bool, device=device)
        self.stop_t = torch.tensor(list(stops) or [-1], device=device)

    def record(self, step: int, logits, temperature: float, gen):
        """Sample from softmax(logits / T) (argmax at T = 0), store the token and its
        logprob, update lengths and stop flags; returns the sampled ids. No host sync."""
        import torch

        logits = logits.float()
        if temperature == 0:
            logp = torch.log_softmax(logits, -1)
            nxt = logp.argmax(-1)
        else:
            logp = torch.log_softmax(logits / temperature, -1)
            nxt = torch.multinomial(logp.exp(), 1, generator=gen).squeeze(-1)
        self.toks[:, step] = nxt
        self.lps[:, step] = logp.gather(-1, nxt[:, None]).squeeze(-1)
        live = ~self.done
        self.length += live.long()
        self.done |= torch.isin(nxt, self.stop_t) & live
        return nxt


class _StaticDecoder:
    """A `StaticCache` of `rows` x `cache_len` slots with its decode step: the new token
    attends to every valid prompt slot and every generated one (a boolean [rows, 1, 1,
    cache_len] mask). On CUDA with `engine.graphs` the step is one captured CUDA graph;
    with `engine.compile_mode` it is compiled by torch.compile."""

    def __init__(self, engine: "HFEngine", rows: int, cache_len: int):
        import torch
        from transformers import StaticCache

        self.engine = engine
        self.model = engine.model
        self.rows, self.cache_len = rows, cache_len
        dev = engine.device
        self.cache = StaticCache(config=self.model.config, max_cache_len=cache_len)
        self.kv_valid = torch.zeros((rows, cache_len), dtype=torch.bool, device=dev)
        self.tok = torch.zeros((rows, 1), dtype=torch.long, device=dev)
        self.pos = torch.zeros((rows, 1), dtype=torch.long, device=dev)
        self.slot = torch.zeros(1, dtype=torch.long, device=dev)  # the cache slot the next token goes to
        self.graph = None
        self.out = None
        self._run = self._step_eager
        if engine.compile_mode:
            for t in (self.kv_valid, self.tok, self.pos, self.slot):
                torch._dynamo.mark_static_address(t)
            self._run = torch.compile(self._step_eager, mode=engine.compile_mode, dynamic=False)

    def _forward(self, ids, mask, pos):
        kw = {self.engine._cache_kw: self.cache}
        return self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                          **kw).logits[:, -1, :]

    def _step_eager(self):
        self.kv_valid.index_fill_(1, self.slot, True)
        logits = self._forward(self.tok, self.kv_valid[:, None, None, :], self.pos)
        self.slot += 1
        self.pos += 1
        return logits

    def prefill(self, ids, attn):
        """Reset the cache, run the prompt (eager), leave the state at the first decode
        slot; returns the last position's logits."""
        import torch

        P = ids.shape[1]
        self.cache.reset()
        self.kv_valid.zero_()
        self.kv_valid[:, :P] = attn.bool()
        causal = torch.ones((P, self.cache_len), dtype=torch.bool, device=ids.device).tril()
        eye = torch.eye(P, self.cache_len, dtype=torch.bool, device=ids.device)
        # a pad query attends to itself, so no row of the mask is empty (an empty row gives NaN)
        mask = (causal[None] & self.kv_valid[:, None, :]) | eye[None]
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        logits = self._forward(ids, mask[:, None], pos)
        self.pos.copy_(pos[:, -1:] + 1)
        self.slot.fill_(P)
        return logits

    def step(self, feed):
        """Write `feed` (the sampled ids, pad for finished rows) at the next slot and return
        the next logits (a view that the following step overwrites)."""
        self.tok.copy_(feed[:, None])
        if self.engine.graphs and self.graph is None:
            try:
                self._capture()
            except Exception as exc:  # noqa: BLE001 - a model whose step cannot be captured runs eagerly
                self.engine.graphs = False
                self.engine.graph_error = f"{type(exc).__name__}: {exc}"[:500]
                self.graph = None
        if self.graph is not None:
            self.graph.replay()
            return self.out
        out = self._run()
        return out.clone() if self.engine.compile_mode else out

    def _capture(self):
        """Warm up on a side stream, capture the step, then restore the state the warm-up
        advanced (the cache position, slot, positions and mask)."""
        import torch

        saved = [t.clone() for t in (self.kv_valid, self.pos, self.slot)]
        lengths = [layer.cumulative_length.clone() for layer in self.cache.layers]
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._step_eager()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.out = self._step_eager()
            self.graph = graph
            self.engine.captures += 1
        finally:  # the warm-up (and a failed capture) advanced the state: put it back
            for t, s in zip((self.kv_valid, self.pos, self.slot), saved):
                t.copy_(s)
            for layer, n in zip(self.cache.layers, lengths):
                layer.cumulative_length.copy_(n)


# --------------------------------------------------------------------------- vLLM


class VLLMEngine:
    """vLLM engine (GPU). Code path only: not exercised by the CPU test suite."""

    token_level = True

    def __init__(self, model_path: str, dtype: str = "bfloat16", gpu_memory_utilization: float = 0.5,
                 stop_ids: Sequence[int] | None = None, **llm_kwargs):
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ImportError("VLLMEngine needs vllm: pip install 'ecomrlve[vllm]' (on a CUDA machine)") from exc
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
