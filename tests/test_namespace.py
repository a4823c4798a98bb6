"""One import namespace: the package installs as `ecomrlve` and nothing else at the top level."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = ("envs", "actors", "policies", "scheduler", "catalog_service")


def test_public_api_and_gymnasium_ids_come_with_import_ecomrlve():
    import gymnasium as gym

    import ecomrlve
    from ecomrlve import ENV_IDS, Catalog, make_env

    env = make_env("E_STATUS", Catalog.synthetic(n_products=500, seed=0))
    obs, _ = env.reset(seed=0)
    assert obs["env_id"] == "E_STATUS"
    assert {f"ecomrlve/{e}-v0" for e in ENV_IDS} <= set(gym.registry)
    assert ecomrlve.envs.__name__ == "ecomrlve.envs"


def test_source_folders_are_not_importable_as_top_level_names(tmp_path):
    """From outside the checkout, `envs`, `actors`, ... are not ours (PyPI has projects by
    those names); `ecomrlve.<folder>` resolves to the source folder."""
    code = (
        "import importlib.util, json\n"
        f"names = {list(SOURCE_FOLDERS)!r}\n"
        "top = {n: getattr(importlib.util.find_spec(n), 'origin', None) for n in names}\n"
        "ours = {n: importlib.util.find_spec('ecomrlve.' + n).origin for n in names}\n"
        "print(json.dumps([top, ours]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    top, ours = json.loads(out.stdout)
    for name in SOURCE_FOLDERS:
        assert top[name] is None or not top[name].startswith(str(ROOT)), name
        assert ours[name] == str(ROOT / name / "__init__.py")
