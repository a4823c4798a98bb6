"""The Serve shopper batches LLM phrasing and never blocks its event loop.

`LLMShopperBackend.phrase_batch` answers a batch with one engine call (no Ray). Through Ray
Serve (`ray_env`: loopback-only namespace): requests that arrive while a backend call is in
flight reach the backend together in the next call, a trivial request is answered while a
slow call is in flight, a bad request fails alone, and the template backend is answered
inline (no backend call at all). The throughput figure is in benchmarks/shopper_batching.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ecomrlve.policies.shopper_llm import LLMShopperBackend, ShopperPhraser

SLOT_PHRASES = {"item": "trail running shoes", "color": "forest green"}


class _Reply:
    def __init__(self, text):
        self.text = text


class _CountingEngine:
    """Text-level engine: replies "Could I get <the clean text>" and counts its calls."""

    token_level = False

    def __init__(self):
        self.calls: list[int] = []

    def chat(self, convs, temperature=0.0, max_new_tokens=96, seed=None):
        self.calls.append(len(convs))
        return [_Reply("Could I get " + c[0][-1]["content"].split("Message: ", 1)[1]) for c in convs]


def _request(i: int, **extra) -> dict:
    clean = f"I want trail running shoes in forest green, {i} pairs."
    return {"text": clean, "clean_text": clean, "slots": ["item", "color"], "slot_phrases": SLOT_PHRASES,
            "mentioned_ids": [], "env_id": "E_PD", "episode_id": i, "turn": 0, **extra}


def _backend(engine) -> LLMShopperBackend:
    b = LLMShopperBackend.__new__(LLMShopperBackend)  # skip model loading
    b.phraser = ShopperPhraser(engine)
    return b


def test_llm_backend_phrases_a_batch_with_one_engine_call():
    engine = _CountingEngine()
    backend = _backend(engine)
    bare = {"text": "just this", "episode_id": 9}  # no check context: template text, not sent
    requests = [_request(1), bare, _request(2), _request(3, noise=0.2)]
    out = backend.phrase_batch(requests)
    assert engine.calls == [3]  # one engine call for the three requests with context
    assert out[1] == "just this"
    assert out[0] == "Could I get I want trail running shoes in forest green, 1 pairs."
    assert out[2] == "Could I get I want trail running shoes in forest green, 2 pairs."
    # each answer is what a call of its own gives (noise included), one engine call each
    single = _backend(_CountingEngine())
    assert [single.phrase(r) for r in requests] == out
    assert single.phraser.engine.calls == [1, 1, 1]
    assert backend.stats()["llm"] == 3 and backend.stats()["calls"] == 3
    assert backend.phrase_batch([]) == []


class GatedBackend:
    """A slow backend for the Serve test: every call blocks (in the replica's backend thread)
    until the file `gate` exists, then answers the texts upper-cased."""

    name = "gated"

    def __init__(self, gate: str, **_):
        self.gate = Path(gate)

    def phrase_batch(self, requests: list[dict]) -> list[str]:
        deadline = time.monotonic() + 120
        while not self.gate.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return [r["text"].upper() for r in requests]

    def phrase(self, request: dict) -> str:
        return self.phrase_batch([request])[0]


def _stats_until(handle, done, timeout: float = 60.0) -> dict:
    """Poll the replica's stats (each poll is itself a request its event loop must answer)."""
    deadline = time.monotonic() + timeout
    while True:
        st = handle.stats.remote().result(timeout_s=30)
        if done(st) or time.monotonic() > deadline:
            return st
        time.sleep(0.05)


def test_serve_shopper_batches_concurrent_requests_without_blocking(ray_env, tmp_path):
    import ray

    from ecomrlve.actors.ray_session import init_ray
    from ecomrlve.actors.shopper_service import deploy_shopper, shutdown_shopper

    init_ray(num_cpus=2, include_dashboard=False)
    try:
        gate = tmp_path / "gate"
        handle = deploy_shopper("tests.test_shopper_batching:GatedBackend", {"gate": str(gate)},
                                max_ongoing_requests=64, max_batch_size=16)
        first = handle.phrase.remote({"text": "first"})
        st = _stats_until(handle, lambda s: s["backend_calls"] == 1)
        assert st["batch_sizes"] == {1: 1}  # the first request's call is in flight, blocked at the gate
        # the event loop is free: trivial requests are answered while the slow call runs
        assert handle.backend_name.remote().result(timeout_s=30) == "gated"
        with pytest.raises(TimeoutError):
            first.result(timeout_s=0.2)
        rest = [handle.phrase.remote({"text": f"message {i}"}) for i in range(20)]
        bad = handle.phrase.remote({"txt": "no text"})
        st = _stats_until(handle, lambda s: s["requests"] == 21)
        assert st["requests"] == 21 and st["backend_calls"] == 1  # they wait for the call in flight
        with pytest.raises(Exception, match="'text' must be a string"):  # fails alone, at once
            bad.result(timeout_s=30)

        gate.touch()
        assert first.result(timeout_s=60) == "FIRST"
        assert [r.result(timeout_s=60) for r in rest] == [f"MESSAGE {i}" for i in range(20)]
        st = handle.stats.remote().result(timeout_s=30)
        sizes = {int(k): v for k, v in st["batch_sizes"].items()}
        assert sum(k * v for k, v in sizes.items()) == 21
        assert max(sizes) > 1 and max(sizes) <= 16  # batched, never above max_batch_size
        assert st["backend_calls"] <= 1 + 3  # 20 waiting requests in at most 3 calls of <= 16
        shutdown_shopper()

        # the template backend is answered inline: no batch queue, no backend call
        handle = deploy_shopper("template")
        assert [handle.phrase.remote({"text": t}).result(timeout_s=30) for t in ("a", "b c")] == ["a", "b c"]
        st = handle.stats.remote().result(timeout_s=30)
        assert (st["inline"], st["requests"], st["backend_calls"]) == (True, 2, 0)
        shutdown_shopper()
    finally:
        ray.shutdown()
