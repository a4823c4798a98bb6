"""Gymnasium registration (ecomrlve.envs.gym_api) and the RLlib creators (ecomrlve.actors.rllib)."""

from __future__ import annotations

import json
import warnings

import pytest

gym = pytest.importorskip("gymnasium")

import ecomrlve.envs.gym_api as gym_api  # noqa: E402  (registers the ids)
from ecomrlve.envs import ENV_IDS, env_class, make_env  # noqa: E402


def _available(env_id: str) -> bool:
    try:
        env_class(env_id)
        return True
    except ImportError:
        return False


def _require(env_id: str) -> None:
    if not _available(env_id):
        pytest.skip(f"{env_id} is not implemented in this checkout yet")


def test_all_eight_ids_registered():
    assert set(gym_api.GYM_IDS) == set(ENV_IDS) and len(ENV_IDS) == 8
    for env_id in ENV_IDS:
        name = f"ecomrlve/{env_id}-v0"
        assert name in gym.registry
        assert gym.registry[name].kwargs == {"env_id": env_id}
    assert gym_api.register_envs() == [gym_api.GYM_IDS[e] for e in ENV_IDS]  # idempotent


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_env_checker_passes(env_id, catalog):
    from gymnasium.utils.env_checker import check_env

    _require(env_id)
    env = gym.make(f"ecomrlve/{env_id}-v0", catalog=catalog, difficulty=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    complaints = [str(w.message) for w in caught if "gymnasium" in str(w.filename) or "env_checker" in str(w.message)]
    assert not complaints, complaints
    env.close()


@pytest.mark.parametrize("env_id", ["E_CART", "E_RETURN"])
def test_same_transcript_as_make_env(env_id, catalog):
    from ecomrlve.policies import HeuristicPolicy

    _require(env_id)
    genv = gym.make(f"ecomrlve/{env_id}-v0", catalog=catalog, difficulty=4)
    direct = make_env(env_id, catalog, difficulty=4)
    obs_text, info = genv.reset(seed=11)
    obs, info_d = direct.reset(seed=11, options={"difficulty": 4})
    assert isinstance(obs_text, str) and obs_text in genv.observation_space
    assert gym_api.decode_observation(obs_text) == json.loads(json.dumps(obs))
    assert info == info_d
    pol = HeuristicPolicy()
    for _ in range(64):
        action = pol.act(gym_api.decode_observation(obs_text))
        text_action = json.dumps(action, ensure_ascii=True)
        assert text_action in genv.action_space
        obs_text, r, term, trunc, info = genv.step(text_action)
        obs, r_d, term_d, trunc_d, info_d = direct.step(action)
        assert (r, term, trunc) == (r_d, term_d, trunc_d)
        assert gym_api.decode_observation(obs_text) == json.loads(json.dumps(obs))
        if term or trunc:
            break
    assert info["reward"] == info_d["reward"]
    assert "shopper" not in (genv.render() or "")  # render_mode None renders nothing


def test_bad_action_is_a_normal_terminal_step(catalog):
    env = gym.make("ecomrlve/E_CART-v0", catalog=catalog)
    env.reset(seed=1)
    obs, reward, terminated, truncated, info = env.step("{not json")
    assert (reward, terminated, truncated) == (-1.0, True, False)
    assert info["reward"]["termination_reason"].startswith("invalid_action: malformed JSON")
    assert obs in env.observation_space


def test_unseeded_resets_follow_the_gymnasium_rng(catalog):
    a = gym.make("ecomrlve/E_CART-v0", catalog=catalog)
    b = gym.make("ecomrlve/E_CART-v0", catalog=catalog)
    a.reset(seed=5)
    b.reset(seed=5)
    assert [a.reset()[0] for _ in range(3)] == [b.reset()[0] for _ in range(3)]
    assert a.unwrapped.shop_env.seed != 5


def test_sampled_actions_are_valid_and_render_ansi(catalog):
    env = gym.make("ecomrlve/E_CART-v0", catalog=catalog, render_mode="ansi")
    env.reset(seed=2)
    env.action_space.seed(0)
    action = env.action_space.sample()
    assert action in env.action_space and set(json.loads(action)) == {"assistant_message"}
    _, reward, terminated, _, info = env.step(action)
    assert not info.get("reward", {}).get("termination_reason", "").startswith("invalid")
    text = env.render()
    assert text.startswith("system:") and "\nuser: " in text and "\nassistant: " in text


def test_default_catalog_is_lazy_and_shared():
    kwargs = {"catalog_kwargs": {"n_products": 1500, "seed": 3}}
    e1 = gym.make("ecomrlve/E_CART-v0", **kwargs)
    e2 = gym.make("ecomrlve.envs.gym_api:ecomrlve/E_STATUS-v0", **kwargs) if _available("E_STATUS") else e1
    assert e1.unwrapped.shop_env.catalog is e2.unwrapped.shop_env.catalog
    assert len(e1.unwrapped.shop_env.catalog) == 1500
    obs, _ = e1.reset(seed=0)
    assert json.loads(obs)["env_id"] == "E_CART"
    with pytest.raises(ValueError, match="catalog_factory"):
        gym.make("ecomrlve/E_CART-v0", catalog_factory="no_colon_here")
    with pytest.raises(ValueError, match="difficulty"):
        gym.make("ecomrlve/E_CART-v0", catalog_kwargs={"n_products": 1500, "seed": 3}, difficulty=-1)


# --------------------------------------------------------------------------- RLlib


def test_rllib_register_env_creators_build_working_envs():
    pytest.importorskip("ray.tune", exc_type=ImportError)
    from ray.tune.registry import ENV_CREATOR, _global_registry

    from ecomrlve.actors.rllib import EnvCreator, register_rllib_envs

    names = register_rllib_envs()
    assert names == [f"ecomrlve/{e}-v0" for e in ENV_IDS]
    creator = _global_registry.get(ENV_CREATOR, "ecomrlve/E_CART-v0")
    assert isinstance(creator, EnvCreator) and creator.env_id == "E_CART"
    env = creator({"difficulty": 2, "catalog_size": 1500, "catalog_seed": 3})
    obs, info = env.reset(seed=4)
    assert info["difficulty"] == 2 and json.loads(obs)["env_id"] == "E_CART"
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs in env.observation_space and isinstance(reward, float)
    with pytest.raises(ValueError, match="unknown env_config key"):
        creator({"difficulty": 1, "catalgo_size": 10})


def test_rllib_creator_pickles():
    import pickle

    from ecomrlve.actors.rllib import EnvCreator

    creator = pickle.loads(pickle.dumps(EnvCreator("E_CART")))
    env = creator({"catalog_size": 1500, "catalog_seed": 3})
    assert env.reset(seed=1)[0] == creator({"catalog_size": 1500, "catalog_seed": 3}).reset(seed=1)[0]
