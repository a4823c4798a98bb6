"""cluster.yaml comes up as written: Ray's own launcher validator (schema only), then our
checks of what the schema cannot see: pinned Ray images with Python >= 3.11 (CPU and GPU),
the project installed with the right extras per node type inside the image's environment
(no PEP 668), token auth on with the head's token reaching workers, and the catalog on
every node. No Ray cluster is started."""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGE = re.compile(r"^rayproject/ray:(\d+)\.(\d+)\.(\d+)-py3(\d+)-(cpu|gpu|cu\d+)$")


@pytest.fixture(scope="module")
def raw():
    import yaml

    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


@pytest.fixture(scope="module")
def config(raw):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)  # Ray's launcher schema
    return config


def node_setup(config: dict, node_type: str) -> list[str]:
    """The setup commands the launcher runs on `node_type`, in order (Ray's rule: a node
    type's own worker_setup_commands replace the global setup and worker setup lists)."""
    if node_type == config["head_node_type"]:
        return list(config["setup_commands"]) + list(config["head_setup_commands"])
    own = config["available_node_types"][node_type].get("worker_setup_commands")
    if own is not None:
        return list(own)
    return list(config["setup_commands"]) + list(config["worker_setup_commands"])


def node_image(config: dict, node_type: str) -> str:
    docker = config["docker"]
    if node_type == config["head_node_type"]:
        return docker.get("head_image") or docker["image"]
    own = config["available_node_types"][node_type].get("docker", {})
    return own.get("worker_image") or docker.get("worker_image") or docker["image"]


def pip_extras(commands: list[str]) -> set[str] | None:
    """Extras of the `pip install -e <checkout>[...]` among `commands` (None: no such install)."""
    for cmd in commands:
        if "pip install" in cmd and "-e" in shlex.split(cmd):
            target = shlex.split(cmd)[shlex.split(cmd).index("-e") + 1]
            if "ecomrlve" in target:
                m = re.search(r"\[([^\]]*)\]", target)
                return set(m.group(1).split(",")) if m else set()
    return None


def catalog_build(commands: list[str]) -> tuple[str, str, str] | None:
    for cmd in commands:
        m = re.search(r"ecomrlve catalog build --n (\d+) --seed (\d+) --out (\S+)", cmd)
        if m:
            return m.groups()
    return None


def test_ray_validator_passes_and_node_types_carry_their_resources(config):
    types = config["available_node_types"]
    assert config["head_node_type"] in types and config["provider"]["type"] == "aws"
    assert types["cpu_env"]["resources"]["ecomrlve_env"] > 0
    assert types["gpu"]["resources"]["ecomrlve_gpu"] > 0


def test_every_node_runs_a_pinned_ray_image_with_python_311(config):
    import ray

    major, minor = ray.__version__.split(".")[:2]
    kinds = {}
    for node_type in config["available_node_types"]:
        image = node_image(config, node_type)
        m = IMAGE.match(image)
        assert m, f"{node_type}: {image!r} is not a pinned rayproject/ray:X.Y.Z-py3NN-<platform> tag"
        assert (m.group(1), m.group(2)) == (major, minor), f"{node_type}: {image} is not Ray {ray.__version__}"
        assert int(m.group(4)) >= 11, f"{node_type}: {image} has Python below 3.11"
        kinds[node_type] = m.group(5)
    assert kinds == {"head": "cpu", "cpu_env": "cpu", "gpu": "gpu"}


def test_setup_installs_the_right_extras_per_node_type_without_pep668(config):
    extras = {t: pip_extras(node_setup(config, t)) for t in config["available_node_types"]}
    assert extras["head"] == set() and extras["cpu_env"] == set()  # CPU nodes: the project, no GPU stacks
    assert {"llm", "vllm"} <= extras["gpu"]
    import tomllib

    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    assert extras["gpu"] <= declared
    for node_type in config["available_node_types"]:
        for cmd in node_setup(config, node_type):
            # the image's own Python (conda): no system pip upgrade, no PEP 668 override
            assert "--break-system-packages" not in cmd and "python3 -m pip install -q -U pip" not in cmd
            assert "sudo pip" not in cmd


def test_token_auth_is_on_and_the_heads_token_reaches_workers_and_clients(config):
    head_setup = " && ".join(config["head_setup_commands"])
    assert "ray get-auth-token --generate" in head_setup
    mounts = {Path(k).as_posix(): v for k, v in config["file_mounts"].items()}
    auth_mount = next(k for k in mounts if k.endswith("ecomrlve_auth"))
    assert (ROOT / mounts[auth_mount]).is_dir()  # the source `ray up` syncs exists in the checkout
    mount_dir = auth_mount.replace("~", "$HOME")
    assert f"cp $HOME/.ray/auth_token {mount_dir}/auth_token" in head_setup  # the head's token goes to the mount
    head_start = " ".join(config["head_start_ray_commands"])
    worker_start = " ".join(config["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in head_start and "ray start --head" in head_start
    assert "RAY_AUTH_MODE=token" in worker_start
    assert f"RAY_AUTH_TOKEN_PATH={mount_dir}/auth_token" in worker_start
    text = (ROOT / "cluster.yaml").read_text()
    assert "RAY_AUTH_MODE=disabled" not in text and "--dashboard-host=0.0.0.0" not in text
    assert "--dashboard-host=127.0.0.1" in head_start


def test_the_same_catalog_is_built_on_every_node_and_the_readme_job_uses_it(config):
    builds = {t: catalog_build(node_setup(config, t)) for t in config["available_node_types"]}
    assert None not in builds.values(), builds
    assert len(set(builds.values())) == 1, builds  # same size, seed and path on every node
    _, _, out = next(iter(builds.values()))
    out = out.replace("$HOME", "/home/ray")  # the rayproject/ray image's user
    readme = (ROOT / "README.md").read_text()
    submit = next(line for line in readme.splitlines() if line.startswith("ray job submit"))
    assert f"--catalog {out}" in submit
