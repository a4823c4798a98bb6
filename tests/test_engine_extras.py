"""OpenAIEngine assistant prefill (continue_final_message) and the LoRA weight push.

No Ray, no network beyond 127.0.0.1; the LoRA tests skip without torch / transformers / peft.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

# --------------------------------------------------------------------------- OpenAI prefill

CONTINUATION = 'tool_calls": [{"name": "cart_view", "args": {}}]}'
FULL_ACTION = {"tool_calls": [{"name": "cart_view", "args": {}}]}


class _ContinuingChat(BaseHTTPRequestHandler):
    """Records request bodies; continues an assistant '{"' prefill, else answers the whole
    JSON action; answers 400 to continue_final_message when `reject_continue` is set."""

    bodies: list = []
    reject_continue = False

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        if type(self).reject_continue and "continue_final_message" in body:
            self._send(400, {"error": {"message": "Extra inputs are not permitted: continue_final_message"}})
            return
        last = body["messages"][-1]
        if last["role"] == "assistant" and last["content"] == '{"':
            content = CONTINUATION
        else:
            content = json.dumps(FULL_ACTION)
        self._send(200, {"id": "c", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]})

    def _send(self, code: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def chat_server():
    _ContinuingChat.bodies = []
    _ContinuingChat.reject_continue = False
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ContinuingChat)
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        th.join(timeout=5)


@pytest.fixture(scope="module")
def cart_obs():
    from ecomrlve.catalog_service import Catalog
    from ecomrlve.envs import make_env

    cat = Catalog.synthetic(n_products=2000, seed=0)
    env = make_env("E_CART", cat)
    obs, _ = env.reset(seed=1, options={"difficulty": 0})
    return obs


def _act(url: str, obs: dict, prefill: str, **engine_kwargs):
    from ecomrlve.policies.engines import OpenAIEngine
    from ecomrlve.policies.llm_policy import LLMPolicy

    eng = OpenAIEngine(url, "fake-model", timeout=10, retries=0, **engine_kwargs)
    try:
        return LLMPolicy(eng, temperature=0.0, prefill=prefill).act(obs)
    finally:
        eng.close()


def test_prefill_is_sent_as_a_continued_assistant_message(chat_server, cart_obs):
    action = _act(chat_server, cart_obs, '{"')
    assert action == FULL_ACTION
    (body,) = _ContinuingChat.bodies
    assert body["messages"][-1] == {"role": "assistant", "content": '{"'}
    assert body["messages"][-2]["role"] != "assistant"
    assert len(body["messages"]) == len(cart_obs["messages"]) + 1
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False


def test_no_prefill_sends_neither_key(chat_server, cart_obs):
    assert _act(chat_server, cart_obs, "") == FULL_ACTION
    (body,) = _ContinuingChat.bodies
    assert "continue_final_message" not in body and "add_generation_prompt" not in body
    assert body["messages"][-1]["role"] != "assistant"


def test_prefill_mode_none_never_sends_the_prefill(chat_server, cart_obs):
    # the server answers the whole action; it must not be parsed as '{"' + action
    assert _act(chat_server, cart_obs, '{"', prefill_mode="none") == FULL_ACTION
    (body,) = _ContinuingChat.bodies
    assert "continue_final_message" not in body and "add_generation_prompt" not in body
    assert all(m["role"] != "assistant" for m in body["messages"])


def test_server_rejecting_continue_names_the_option(chat_server, cart_obs):
    _ContinuingChat.reject_continue = True
    with pytest.raises(RuntimeError, match='prefill_mode="none"'):
        _act(chat_server, cart_obs, '{"')
    assert _act(chat_server, cart_obs, '{"', prefill_mode="none") == FULL_ACTION


def test_prefill_mode_is_validated():
    from ecomrlve.policies.engines import OpenAIEngine

    with pytest.raises(ValueError, match="prefill_mode"):
        OpenAIEngine("http://127.0.0.1:9/v1", "m", prefill_mode="echo")


def test_text_engine_without_prefill_argument_still_works(cart_obs):
    """A text-level engine whose chat() takes no prefill is called as before when there is none."""
    from ecomrlve.policies.engines import ChatReply
    from ecomrlve.policies.llm_policy import LLMPolicy

    class Plain:
        token_level = False

        def chat(self, convs, temperature=0.0, max_new_tokens=256, seed=None):
            return [ChatReply(json.dumps(FULL_ACTION)) for _ in convs]

    assert LLMPolicy(Plain(), temperature=0.0).act(cart_obs) == FULL_ACTION


# --------------------------------------------------------------------------- LoRA weight push

PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


@pytest.fixture()
def tiny_lora():
    """(peft model with perturbed lora_B, untouched plain copy of the base model)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("peft")
    import copy

    from ecomrlve.policies.dapo import DAPOConfig, maybe_lora

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1)
    base = transformers.LlamaForCausalLM(cfg).eval()
    plain = copy.deepcopy(base)
    peft_model, wrapped = maybe_lora(base, DAPOConfig(lora_r=4))
    assert wrapped
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:  # peft initialises B to 0: make the adapters change something
                p.normal_(0.0, 0.5)
    return peft_model.eval(), plain


def test_lora_export_sends_only_adapted_projections(tiny_lora):
    from ecomrlve.policies.engines import export_weights

    peft_model, plain = tiny_lora
    sd = export_weights(peft_model)
    expected = {f"model.layers.{i}.{proj}.weight" for i in range(2) for proj in PROJECTIONS}
    assert set(sd) == expected and len(sd) == 14
    params = dict(plain.named_parameters())
    assert all(tuple(sd[k].shape) == tuple(params[k].shape) for k in sd)
    assert not any("embed" in k or "norm" in k or "lm_head" in k for k in sd)
    # the merge changed the weights; the learner's own base weights are untouched
    assert any(not bool((sd[k] == params[k]).all()) for k in sd)
    base_w = dict(peft_model.named_parameters())["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"]
    assert bool((base_w == params["model.layers.0.self_attn.q_proj.weight"]).all())


def test_lora_export_with_names_and_dtype(tiny_lora):
    import torch

    from ecomrlve.policies.engines import export_weights

    peft_model, _ = tiny_lora
    names = ["model.embed_tokens.weight", "model.layers.1.mlp.down_proj.weight"]
    sd = export_weights(peft_model, dtype=torch.bfloat16, names=names)
    assert sorted(sd) == sorted(names) and all(t.dtype == torch.bfloat16 for t in sd.values())


def test_lora_push_loads_into_a_plain_engine_and_matches_peft_forward(tiny_lora):
    import torch

    from ecomrlve.policies.engines import HFEngine, export_weights, weights_checksum

    peft_model, plain = tiny_lora
    sd = export_weights(peft_model)
    engine = HFEngine(plain, tokenizer=None, pad_id=0, stop_ids=[1])
    checksum = weights_checksum(sd)
    assert engine.load_weights(sd, 1, checksum) == checksum and engine.version == 1
    ids = torch.tensor([[3, 17, 42, 5, 9, 60, 2, 11]])
    with torch.no_grad():
        want = peft_model(input_ids=ids).logits
        peft_model.merge_adapter()
        try:
            want_merged = peft_model(input_ids=ids).logits
        finally:
            peft_model.unmerge_adapter()
        got = engine.model(input_ids=ids).logits
    assert torch.allclose(got, want_merged, atol=1e-5)
    assert torch.allclose(got, want, atol=1e-5)


# --------------------------------------------------------------------------- decode paths


@pytest.fixture()
def tiny_llama():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512)
    return transformers.LlamaForCausalLM(cfg).eval()


PROMPTS = [[5, 9, 11, 3, 7, 20, 21], [8, 2], [30, 31, 32, 33]]


def test_static_cache_with_filler_rows_and_sparse_host_checks_matches_the_loop(tiny_llama):
    """The static-cache path with the batch padded to its bucket (filler rows, as CUDA
    graphs use) and the stop flags read every 4 steps gives the decode loop's ids,
    logprobs, lengths and finish reasons, greedy and seeded sampling alike; a row stops on
    its first stop token, which it keeps."""
    from ecomrlve.policies.engines import HFEngine

    loop = HFEngine(tiny_llama, pad_id=0, stop_ids=[])
    greedy = loop.generate(PROMPTS, temperature=0, max_new_tokens=12)
    stop = greedy[1].ids[3]  # row 1's 4th greedy token: every row's first occurrence ends it
    loop.stop_ids = [stop]
    static = HFEngine(tiny_llama, pad_id=0, stop_ids=[stop], static_cache=True, sync_every=4, cache_bucket=16)
    static.bucket_rows = True
    for kw in ({"temperature": 0}, {"temperature": 1.0, "seed": 7}):
        want = loop.generate(PROMPTS, max_new_tokens=12, **kw)
        got = static.generate(PROMPTS, max_new_tokens=12, **kw)
        assert [c.finish_reason for c in got] == [c.finish_reason for c in want]
        for a, b in zip(got, want):
            if kw["temperature"] == 0:
                assert a.ids == b.ids
                assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
            assert (a.finish_reason == "stop") == (stop in a.ids) and (stop not in a.ids[:-1])
    assert greedy[1].ids[:4] == static.generate(PROMPTS, temperature=0, max_new_tokens=12)[1].ids
    assert static._static and next(iter(static._static)) == (8, 32)  # 3 rows -> 8; 7 + 12 tokens -> 32 slots
    assert static.host_syncs < static.decode_steps


def test_a_failed_graph_capture_falls_back_to_the_eager_static_step(tiny_llama):
    """On CPU a CUDA graph cannot be captured: forcing graphs on gives the eager static
    step's result, with the reason kept, and the warm-up's state changes undone."""
    from ecomrlve.policies.engines import HFEngine

    want = HFEngine(tiny_llama, pad_id=0, stop_ids=[]).generate(PROMPTS, temperature=0, max_new_tokens=6)
    eng = HFEngine(tiny_llama, pad_id=0, stop_ids=[], static_cache=True, cache_bucket=16)
    eng.graphs = eng.bucket_rows = True
    got = eng.generate(PROMPTS, temperature=0, max_new_tokens=6)
    assert [c.ids for c in got] == [c.ids for c in want]
    assert not eng.graphs and eng.graph_error and eng.captures == 0


def test_engine_options_are_validated(tiny_llama):
    from ecomrlve.policies.engines import HFEngine

    for kw, field in (({"sync_every": 0}, "sync_every"), ({"max_batch": 0}, "max_batch"),
                      ({"cache_bucket": -1}, "cache_bucket"), ({"compile": 3}, "compile")):
        with pytest.raises(ValueError, match=field):
            HFEngine(tiny_llama, pad_id=0, **kw)
