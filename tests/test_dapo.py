"""DAPO pieces on hand-made numbers: advantages, dynamic sampling, overlong penalty, the
clipped token-level loss and its gradient, micro-batch equivalence, the learner core."""

from __future__ import annotations

import math

import pytest

from ecomrlve.policies.dapo import Trajectory, filter_groups, group_advantages, overlong_penalty


def test_group_advantages_by_hand():
    rewards = [1.0, 0.0, 0.5, 0.5, 0.5, 2.0, 0.0, 1.0, 7.0]
    groups = ["a", "a", "b", "b", "b", "c", "c", "c", "d"]
    adv = group_advantages(rewards, groups, std="unbiased", eps=0.0)
    # a: mean .5, unbiased std sqrt((.25 + .25) / 1) = 1/sqrt(2) -> +-1/sqrt(2)
    assert adv[0] == pytest.approx(1 / math.sqrt(2)) and adv[1] == pytest.approx(-1 / math.sqrt(2))
    # b: all equal -> 0 (std 0, eps 0 would divide 0 by 0: the numerator is exactly 0)
    assert adv[2:5] == [0.0, 0.0, 0.0]
    # c: mean 1, unbiased std sqrt((1 + 1 + 0) / 2) = 1 -> [1, -1, 0]
    assert adv[5:8] == pytest.approx([1.0, -1.0, 0.0])
    # d: a group of one carries no signal
    assert adv[8] == 0.0
    biased = group_advantages(rewards, groups, std="biased", eps=0.0)
    assert biased[5:8] == pytest.approx([1 / math.sqrt(2 / 3), -1 / math.sqrt(2 / 3), 0.0])
    centred = group_advantages(rewards, groups, std="none")
    assert centred[:2] == [0.5, -0.5]
    with_eps = group_advantages([1.0, 0.0], ["a", "a"])  # default eps 1e-6
    assert with_eps[0] == pytest.approx(0.5 / (1 / math.sqrt(2) + 1e-6), rel=1e-12)


def _traj(reward, group):
    return Trajectory([([1, 2, 3], [0, 1, 1], [0.0, -1.0, -1.0])], reward, group)


def test_dynamic_sampling_drops_uniform_groups():
    ts = [_traj(1.0, "a"), _traj(0.0, "a"), _traj(0.5, "b"), _traj(0.5, "b"), _traj(1.0, "c"), _traj(-1.0, "d"),
          _traj(-1.0, "d"), _traj(0.7, "d")]
    kept, dropped = filter_groups(ts)
    assert dropped == 2  # b (all equal) and c (one member)
    assert [t.group for t in kept] == ["a", "a", "d", "d", "d"]


def test_overlong_penalty_by_hand():
    # max 20 tokens, buffer 5: free up to 15, then -1/5 per token, cut replies -1
    assert overlong_penalty(15, 20, 5) == 0.0
    assert overlong_penalty(16, 20, 5) == pytest.approx(-0.2)
    assert overlong_penalty(18, 20, 5, factor=0.5) == pytest.approx(-0.3)
    assert overlong_penalty(20, 20, 5) == pytest.approx(-1.0)
    assert overlong_penalty(12, 20, 5, truncated=True) == -1.0
    assert overlong_penalty(20, 20, 0, truncated=True) == 0.0  # off


def _loss_inputs():
    torch = pytest.importorskip("torch")
    ratios = torch.tensor([[1.0, 1.5, 0.5], [1.0, 1.5, 0.5]])
    old = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -1.2, -2.0]])
    logp = (old + torch.log(ratios)).requires_grad_(True)
    adv = torch.tensor([1.0, -2.0])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    return torch, logp, old, adv, mask


def test_dapo_loss_exact_values_and_gradient():
    from ecomrlve.policies.dapo import dapo_loss

    torch, logp, old, adv, mask = _loss_inputs()
    loss, st = dapo_loss(logp, old, adv, mask, eps_low=0.2, eps_high=0.28)
    # per token -min(r A, clip(r, .8, 1.28) A):
    #  row 0 (A=+1): r=1 -> -1; r=1.5 -> -1.28 (clipped high); r=.5 -> -.5 (min keeps r A)
    #  row 1 (A=-2): r=1 -> 2; r=1.5 -> 3 (min keeps r A = -3); r=.5 masked out
    # token-level mean over the 5 policy tokens: (-1 - 1.28 - .5 + 2 + 3) / 5 = .444
    assert float(loss.detach()) == pytest.approx(0.444, abs=1e-6)
    # a per-sequence mean would differ: ((-2.78 / 3) + (5 / 2)) / 2
    assert float(loss.detach()) != pytest.approx(((-2.78 / 3) + 2.5) / 2, abs=1e-3)
    assert st["clip_high_frac"] == pytest.approx(0.2)  # 1 of 5 tokens
    assert st["clip_low_frac"] == 0.0  # the only r < .8 with A < 0 is masked
    loss.backward()
    # d/dlogp of -r A / N is -r A / N where the unclipped term is selected, 0 where clipped
    expected = torch.tensor([[-1.0 / 5, 0.0, -0.5 / 5], [2.0 / 5, 3.0 / 5, 0.0]])
    assert torch.allclose(logp.grad, expected, atol=1e-6)
    # normalising by the whole batch's token count (micro-batching) halves it for N = 10
    loss10, _ = dapo_loss(logp.detach(), old, adv, mask, num_tokens=10)
    assert float(loss10) == pytest.approx(0.222, abs=1e-6)


def test_dapo_loss_clip_low():
    from ecomrlve.policies.dapo import dapo_loss

    torch = pytest.importorskip("torch")
    old = torch.zeros(1, 2)
    logp = torch.log(torch.tensor([[0.5, 2.0]]))
    adv = torch.tensor([-1.0])
    mask = torch.ones(1, 2)
    loss, st = dapo_loss(logp, old, adv, mask)
    # A=-1: r=.5 -> -min(-.5, -.8) = .8 (clipped low); r=2 -> -min(-2, -1.28) = 2 ; mean 1.4
    assert float(loss) == pytest.approx(1.4)
    assert st["clip_low_frac"] == pytest.approx(0.5) and st["clip_high_frac"] == 0.0


def _tiny_model(vocab=64):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                                   tie_word_embeddings=True)
    return transformers.LlamaForCausalLM(cfg).eval()


def test_token_logprobs_with_mask_matches_full_projection():
    from ecomrlve.policies.dapo import make_batch, token_logprobs

    torch = pytest.importorskip("torch")
    model = _tiny_model()
    rows = [([5, 6, 7, 8, 9, 10], [0, 0, 1, 1, 0, 1], [0.0] * 6, 1.0), ([3, 4, 5], [0, 1, 1], [0.0] * 3, -1.0)]
    ids, attn, mask, _, _ = make_batch(rows, pad_id=0)
    with torch.no_grad():
        full = token_logprobs(model, ids, attn)
        part = token_logprobs(model, ids, attn, mask=mask)
    assert torch.allclose(full * mask, part * mask, atol=1e-6)
    # reference: log_softmax of the plain forward
    with torch.no_grad():
        logits = model(input_ids=ids[:1], attention_mask=attn[:1]).logits[0]
    ref = torch.log_softmax(logits[2], -1)[ids[0, 3]]
    assert float(full[0, 3]) == pytest.approx(float(ref), abs=1e-5)


def test_dapo_update_micro_batches_equal_one_batch():
    """Token-level normalisation by the whole batch: splitting into micro-batches gives the
    same gradient as one forward pass."""
    import copy

    from ecomrlve.policies.dapo import DAPOConfig, dapo_update, make_optimizer

    torch = pytest.importorskip("torch")
    model = _tiny_model()
    trajs = [Trajectory([([1, 2, 3, 4, 5], [0, 0, 1, 1, 1], [0.0, 0.0, -4.0, -4.1, -4.2])], 1.0, "g"),
             Trajectory([([1, 2, 6], [0, 0, 1], [0.0, 0.0, -4.0])], 0.0, "g"),
             Trajectory([([7, 8, 9, 10, 11, 12, 13], [0, 1, 1, 0, 0, 1, 1], [0.0, -4.0, -4.0, 0, 0, -4.0, -4.0])],
                        0.5, "h"),
             Trajectory([([7, 8, 1], [0, 1, 1], [0.0, -4.0, -4.0])], -0.5, "h")]
    grads = []
    for mbt in (10_000, 8):
        m = copy.deepcopy(model)
        cfg = DAPOConfig(lr=0.0, micro_batch_tokens=mbt, max_grad_norm=1e9)
        opt = make_optimizer(m, cfg)
        st = dapo_update(m, opt, trajs, cfg, pad_id=0)
        assert st["stepped"] and st["policy_tokens"] == 3 + 1 + 4 + 2
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    assert grads[0].abs().sum() > 0


def test_learner_core_staleness_and_versions():
    from ecomrlve.actors.learner import LearnerCore
    from ecomrlve.policies.dapo import DAPOConfig
    from ecomrlve.policies.engines import weights_checksum

    model = _tiny_model()

    class Tok:
        pad_token_id = 0
        eos_token_id = 1

    core = LearnerCore(model, Tok(), DAPOConfig(lr=1e-2), max_staleness=1, version=5)
    fresh = [Trajectory([([1, 2, 3], [0, 1, 1], [0.0, -4.0, -4.0])], r, "g", version=4) for r in (1.0, 0.0)]
    stale = [Trajectory([([1, 2, 3], [0, 1, 1], [0.0, -4.0, -4.0])], r, "s", version=3) for r in (1.0, 0.0)]
    uniform = [Trajectory([([1, 2, 3], [0, 1, 1], [0.0, -4.0, -4.0])], 0.3, "u", version=5) for _ in range(2)]
    before = weights_checksum(core.weights()[0])
    st = core.update(fresh + stale + uniform)
    assert st["stale_dropped"] == 2 and st["groups_dropped"] == 1 and st["groups_kept"] == 1
    assert st["stepped"] and core.version == 6
    sd, version, checksum = core.weights()
    assert version == 6 and checksum == weights_checksum(sd) != before
    st = core.update(uniform)
    assert not st["stepped"] and core.version == 6


def test_lora_update_pushes_merged_weights():
    """With peft installed, the learner trains LoRA adapters and the engine receives merged
    base-model weights under the base names (checksum verified); outputs then agree."""
    pytest.importorskip("peft")
    import copy

    torch = pytest.importorskip("torch")
    from ecomrlve.actors.learner import LearnerCore
    from ecomrlve.policies.dapo import DAPOConfig
    from ecomrlve.policies.engines import HFEngine

    base = _tiny_model()
    engine = HFEngine(copy.deepcopy(base), None, pad_id=0)

    class Tok:
        pad_token_id = 0
        eos_token_id = 1

    core = LearnerCore(base, Tok(), DAPOConfig(lr=1e-2, lora_r=4))
    assert core.lora
    st = core.update([Trajectory([([1, 2, 3, 4], [0, 0, 1, 1], [0.0, 0.0, -4.0, -4.0])], r, "g") for r in (1.0, 0.0)])
    assert st["stepped"]
    sd, version, checksum = core.weights()
    assert not any("lora" in k or "base_layer" in k for k in sd)
    assert engine.load_weights(sd, version, checksum) == checksum
    x = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.allclose(engine.model(x).logits, core.model(x).logits, atol=1e-5)


def test_lora_without_peft_names_the_extra(monkeypatch):
    """LoRA asked for without peft is an error naming the extra, never full fine-tuning."""
    import sys

    from ecomrlve.policies.dapo import DAPOConfig, maybe_lora

    monkeypatch.setitem(sys.modules, "peft", None)  # import peft -> ImportError
    model = object()
    assert maybe_lora(model, DAPOConfig(lora_r=0)) == (model, False)
    with pytest.raises(ImportError, match=r"ecomrlve\[lora\]"):
        maybe_lora(model, DAPOConfig(lora_r=4))
