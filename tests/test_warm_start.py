"""Chat settings travel with a model directory (sft / train checkpoints write ``chat.json``;
eval, train and the PolicyEngine read it), and ``ecomrlve train`` trains: the default warm
start (SFT on oracle episodes) runs when the model writes no valid action, and a step whose
every group was dropped says why. The README recipe on SmolLM2 is the ``slow`` test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import need_llm, save_tiny_llama
from ecomrlve.policies.chat_settings import DEFAULT, ChatSettings


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A 2-layer random Llama with SmolLM2's tokenizer (writes no valid action)."""
    need_llm()
    from ecomrlve.policies.models import load_tokenizer

    return save_tiny_llama(tmp_path_factory.mktemp("tiny") / "model", load_tokenizer("smollm2"))


def _checksum(model_dir) -> str:
    from ecomrlve.policies.engines import weights_checksum
    from ecomrlve.policies.models import load_model

    model, _ = load_model(str(model_dir))
    return weights_checksum(model.state_dict())


# --------------------------------------------------------------------------- chat settings


def test_chat_settings_round_trip_and_precedence(tmp_path):
    assert DEFAULT == ChatSettings(prefill='{"', tool_format="auto", lenient=False)
    assert ChatSettings.load(tmp_path) is None
    assert ChatSettings.for_model(str(tmp_path)) == DEFAULT
    assert ChatSettings.for_model("smollm2", prefill="") == ChatSettings(prefill="")
    ChatSettings(prefill='{"tool', tool_format="none", lenient=True).save(tmp_path)
    assert json.loads((tmp_path / "chat.json").read_text()) == {
        "prefill": '{"tool', "tool_format": "none", "lenient": True, "chat_template_sha256": None}
    recorded = ChatSettings.for_model(str(tmp_path))
    assert recorded == ChatSettings(prefill='{"tool', tool_format="none", lenient=True)
    assert ChatSettings.for_model(str(tmp_path), prefill="", lenient=False) == ChatSettings(
        prefill="", tool_format="none", lenient=False)


def test_chat_settings_read_an_old_sft_json_and_name_bad_fields(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "sft.json").write_text(json.dumps({"prefill": "", "steps": 3}))
    assert ChatSettings.for_model(str(tmp_path / "model")) == ChatSettings(prefill="")
    (tmp_path / "model" / "chat.json").write_text(json.dumps({"prefill": "{", "tool_format": "xml"}))
    with pytest.raises(ValueError, match="tool_format"):
        ChatSettings.for_model(str(tmp_path / "model"))
    (tmp_path / "model" / "chat.json").write_text(json.dumps({"prefil": "{"}))
    with pytest.raises(ValueError, match="prefil"):
        ChatSettings.load(tmp_path / "model")


def test_sft_records_chat_settings_and_eval_and_engine_use_them(tiny_dir, tmp_path):
    """The issue's failure: sft trained with prefill '{"', eval used none. Now the model
    directory says what it was trained with and every reader uses it unless told otherwise."""
    from ecomrlve.actors.evaluate import PolicySpec
    from ecomrlve.actors.policy_engine import PolicyEngineImpl
    from ecomrlve.actors.sft import run_sft
    from ecomrlve.actors.warm_start import oracle_episodes
    from ecomrlve.catalog_service import Catalog
    from ecomrlve.policies.chat_settings import template_sha256
    from ecomrlve.policies.models import load_model

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = oracle_episodes(["E_CART"], Catalog.synthetic(n_products=2000, seed=0), 2)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "oracle.parquet")
    model, tok = load_model(tiny_dir, train=True)
    res = run_sft(tmp_path / "oracle.parquet", tiny_dir, steps=1, out=str(tmp_path / "sft"), batch_size=2,
                  tool_format="none", model_obj=model, tokenizer=tok, log=lambda s: None)
    model_dir = res["model_dir"]
    chat = json.loads((Path(model_dir) / "chat.json").read_text())
    assert chat == {"prefill": '{"', "tool_format": "none", "lenient": False,
                    "chat_template_sha256": template_sha256(tok)}
    policy = PolicySpec(f"hf:{model_dir}").llm_policy(0)  # no --prefill, no --tool-format
    assert policy.prefill == '{"' and policy.codec.prefill == '{"' and policy.codec.tool_format == "none"
    told = PolicySpec(f"hf:{model_dir}", {"prefill": ""}).llm_policy(0)
    assert told.codec.prefill == "" and told.codec.tool_format == "none"
    assert PolicySpec("openai:http://127.0.0.1:9/v1").chat_settings().prefill == ""
    engine = PolicyEngineImpl(model_dir, max_new_tokens=4)
    assert engine.policy.codec.prefill == '{"' and engine.policy.codec.tool_format == "none"
    assert PolicyEngineImpl(model_dir, max_new_tokens=4, tool_format="compact").policy.codec.tool_format == "compact"
    from ecomrlve.actors.train import TrainConfig

    cfg = TrainConfig(collection="E_CART", model=model_dir)
    assert (cfg.prefill, cfg.tool_format, cfg.lenient) == ('{"', "none", False)
    assert TrainConfig(collection="E_CART", model=model_dir, prefill="").prefill == ""


def test_a_swapped_chat_template_is_refused(tiny_dir, tmp_path):
    from ecomrlve.policies.models import load_tokenizer

    tok = load_tokenizer(tiny_dir)
    ChatSettings(chat_template_sha256="0" * 64).save(tmp_path)
    with pytest.raises(ValueError, match="chat_template_sha256"):
        ChatSettings.for_model(str(tmp_path)).codec(tok)
    assert ChatSettings().save(tmp_path, tok) and ChatSettings.for_model(str(tmp_path)).codec(tok).prefill == '{"'


# --------------------------------------------------------------------------- all groups dropped


def test_no_update_warning_names_the_reason():
    from ecomrlve.actors.train import no_update_warning

    assert no_update_warning({"step": 1, "stepped": True, "groups_dropped": 2, "invalid_rate": 1.0}) is None
    assert no_update_warning({"step": 1, "stepped": False, "groups_dropped": 0}) is None
    w = no_update_warning({"step": 3, "stepped": False, "groups_dropped": 2, "invalid_rate": 1.0})
    assert w.startswith("warning: step 3: no update, all 2 groups dropped: every action was invalid")
    w = no_update_warning({"step": 4, "stepped": False, "groups_dropped": 1, "invalid_rate": 0.5,
                           "stale_dropped": 3})
    assert w.startswith("warning: step 4: no update, all 1 groups dropped, 3 stale trajectories: "
                        "every group had equal rewards")


def test_train_config_checks_the_warm_start_fields():
    from ecomrlve.actors.train import TrainConfig

    with pytest.raises(ValueError, match="warm_start"):
        TrainConfig(warm_start="sometimes")
    with pytest.raises(ValueError, match="warm_start_steps"):
        TrainConfig(warm_start_steps=0)


# --------------------------------------------------------------------------- warm start


def test_train_warm_starts_a_model_without_valid_actions(tiny_dir, tmp_path):
    """The default (auto) probes the untrained model (0 valid actions), fine-tunes it on
    oracle episodes, trains from there, and the checkpoint records the chat settings. The tiny
    model still writes nothing valid after 2 SFT steps, so each step warns why it did not update."""
    from ecomrlve.actors.train import TrainConfig, Trainer

    lines: list[str] = []
    cfg = TrainConfig(collection="E_CART", model=tiny_dir, out=str(tmp_path / "run"), steps=1, group_size=2,
                      tasks_per_step=1, max_new_tokens=4, max_sampling_rounds=1, catalog_size=2000,
                      warm_start_episodes=2, warm_start_steps=2, ray=False)
    trainer = Trainer(cfg, log=lines.append)
    trainer.run()
    run = Path(trainer.run_dir)
    figures = json.loads((run / "warm_start" / "warm_start.json").read_text())
    assert figures["valid_before"] == 0 and figures["probe_turns"] == 4 and figures["steps"] == 2
    assert figures["episodes"] == figures["correct_episodes"] == 2
    ckpt = run / "checkpoints" / "step_000001" / "model"
    assert _checksum(ckpt) != _checksum(tiny_dir)  # the weights moved
    assert json.loads((ckpt / "chat.json").read_text())["prefill"] == '{"'
    assert any(s.startswith("warm start: 0/4 greedy probe turns are valid actions") for s in lines)
    assert "warning: step 1: no update, all 1 groups dropped: every action was invalid" in "\n".join(lines)


def test_warm_start_never_trains_the_model_as_given(tiny_dir, tmp_path):
    from ecomrlve.actors.train import TrainConfig
    from ecomrlve.actors.warm_start import warm_start

    cfg = TrainConfig(collection="E_CART", model=tiny_dir, warm_start="never")
    assert warm_start(cfg, tmp_path, print, lambda: None) == tiny_dir and not (tmp_path / "warm_start").exists()


# --------------------------------------------------------------------------- the README recipe


@pytest.mark.slow
def test_readme_training_recipe_trains_smollm2(tmp_path):
    """``ecomrlve train --collection C1 --model smollm2 --steps 2`` (in-process and with
    smaller groups so it fits CPU CI): the untrained model writes no valid action, the
    default warm start fixes that, and the two DAPO steps update the weights."""
    need_llm()
    from ecomrlve.actors.cli import main
    from ecomrlve.policies.models import local_dir

    out = tmp_path / "run"
    assert main(["train", "--collection", "C1", "--model", "smollm2", "--steps", "2", "--in-process", "-G", "4",
                 "--tasks-per-step", "2", "--max-new-tokens", "96", "--max-rounds", "1", "--out", str(out)]) == 0
    figures = json.loads((out / "warm_start" / "warm_start.json").read_text())
    assert figures["valid_before"] < figures["probe_turns"] / 2 <= figures["valid_after"]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2 and any(m["stepped"] for m in metrics)
    assert min(m["invalid_rate"] for m in metrics) < 1.0
    final = out / "checkpoints" / "step_000002" / "model"
    assert _checksum(final) != _checksum(figures["model_dir"]) != _checksum(local_dir("smollm2")[0])
