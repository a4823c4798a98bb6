"""The README's "On a cluster" section, step by step, against a local `ray start --head` with
token authentication, and the outputs of a job submitted without --out read after the job
has ended.

The test parses the README's code block and runs its commands in order, so it follows the
docs. The cloud-only steps are mapped to their local equivalents on this machine:

- ``ray up cluster.yaml``: cluster.yaml's own head setup (the token command and the catalog
  build, with a 2,000-product catalog instead of 2M and the head's HOME for /home/ray) and its
  head start command (with ``--block`` under this test's control, ``--num-cpus=2``, a short
  ``--temp-dir``, and no ``--autoscaling-config``: there is no cloud provider to scale);
- ``ray rsync-down cluster.yaml SRC DST``: a copy from the head's HOME to the client's;
- ``ray dashboard cluster.yaml``: the tunnel's local end is the head's dashboard itself
  (127.0.0.1:8265 on this machine): the step checks it answers;
- ``ray down cluster.yaml``: the head's process group is stopped.

``export`` and ``ray job submit`` run as written, with the client's own HOME (it has no token
until the token step fetches one); the job's ``ecomrlve run`` keeps its flags with the sizes
scaled down (12 episodes, 1 worker, 2 shards, C1, oracle, in-process shopper).

Slow (a Ray head with its dashboard and a job: about a minute on 2 cores): `pytest -m slow`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_cluster_commands() -> list[list[str]]:
    """The commands of the README's "On a cluster" code block, as shell words (comments dropped)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## On a cluster\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def step_name(words: list[str]) -> str:
    if words[:2] == ["ray", "rsync-down"]:
        return "token" if "auth_token" in words[3] else "results"
    if words[0] == "export":
        return "export"
    return " ".join(words[:3] if words[:2] == ["ray", "job"] else words[:2])


def test_readme_lists_the_cluster_steps_in_the_order_a_user_runs_them():
    steps = [step_name(w) for w in readme_cluster_commands()]
    assert steps == ["ray up", "token", "ray dashboard", "export", "ray job submit", "results", "ray down"], steps
    export = next(w for w in readme_cluster_commands() if w[0] == "export")
    assert "RAY_AUTH_MODE=token" in export and any(a.startswith("RAY_AUTH_TOKEN_PATH=") for a in export)
    assert any(a.startswith("RAY_ADDRESS=http://127.0.0.1:8265") for a in export)


def _expand(word: str, home: Path) -> str:
    return str(home) + word[1:] if word.startswith("~") else word


def _cluster_yaml() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def _wait_http(url: str, proc: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP answer (401 without a token) means it is up
                return
            if proc.poll() is not None:
                pytest.fail(f"the head exited: {proc.stdout.read()[-3000:]}")
            time.sleep(1)
    pytest.fail(f"{url} did not answer in {timeout_s} s")


@pytest.mark.slow
def test_readme_cluster_section_works_against_a_local_head_with_token_auth(ray_env, tmp_path):
    if shutil.which("ray") is None or shutil.which("ecomrlve") is None:
        pytest.fail("needs the `ray` and `ecomrlve` console scripts (pip install -e .)")
    cfg = _cluster_yaml()
    head_home, client_home, client_cwd = tmp_path / "head", tmp_path / "client", tmp_path / "laptop"
    for d in (head_home, client_home, client_cwd):
        d.mkdir()
        (d / "ray_bootstrap_config.yaml").write_text("cluster_name: local\nprovider: {type: local}\n")
    base = {k: v for k, v in ray_env.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    base["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), base.get("PYTHONPATH")) if p)
    head_env = {**base, "HOME": str(head_home)}
    client_env = {**base, "HOME": str(client_home)}
    temp_dir = tempfile.mkdtemp(prefix="ecr-", dir="/tmp")  # AF_UNIX paths must stay short
    head = None
    run_line = None
    try:
        for words in readme_cluster_commands():
            step = step_name(words)
            if step == "ray up":
                setup = [c for c in cfg["head_setup_commands"] if "get-auth-token" in c]
                build = [c for c in cfg["setup_commands"] if "ecomrlve catalog build" in c]
                assert len(setup) == 1 and len(build) == 1
                build_cmd = build[0].replace("--n 2000000", "--n 2000")
                for cmd in (setup[0], build_cmd):
                    r = subprocess.run(["bash", "-c", cmd], env=head_env, capture_output=True, text=True, timeout=300)
                    assert r.returncode == 0, cmd + r.stdout + r.stderr
                assert (head_home / ".ray" / "auth_token").stat().st_size > 0  # the head made the token
                assert (head_home / "ecomrlve_auth" / "auth_token").read_text() == \
                    (head_home / ".ray" / "auth_token").read_text()  # ... and put it where workers get it
                start = cfg["head_start_ray_commands"][-1]
                start = re.sub(r"--autoscaling-config=\S+", "", start)
                start += f" --block --num-cpus=2 --temp-dir={temp_dir} --disable-usage-stats"
                head = subprocess.Popen(["bash", "-c", start], env=head_env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
                _wait_http("http://127.0.0.1:8265", head)
                # a client without the token is refused: the token step is needed
                r = subprocess.run(["ray", "job", "list", "--address", "http://127.0.0.1:8265"],
                                   env={**client_env, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True,
                                   timeout=120)
                assert r.returncode != 0 and "token" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
            elif step in ("token", "results"):
                src = Path(_expand(words[3], head_home))
                dst = Path(_expand(words[4], client_home))
                dst = dst if dst.is_absolute() else client_cwd / dst
                assert src.exists(), src
                if src.is_dir():
                    shutil.copytree(src, dst, dirs_exist_ok=True)
                else:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, dst)
            elif step == "ray dashboard":
                assert words[-1] == "&"  # it keeps running while the next steps use the tunnel
                _wait_http("http://127.0.0.1:8265", head, timeout_s=10)
            elif step == "export":
                for assignment in words[1:]:
                    key, value = assignment.split("=", 1)
                    client_env[key] = _expand(value, client_home)
            elif step == "ray job submit":
                argv = list(words)
                run = argv[argv.index("--") + 1:]
                assert run[:2] == ["ecomrlve", "run"] and "--out" not in run
                sizes = {"--episodes": "12", "--workers": "1", "--shards": "2"}
                run = [sizes.get(run[i - 1], a) if i else a for i, a in enumerate(run)]
                run = [a.replace("/home/ray", str(head_home)) for a in run]
                run += ["--collection", "C1", "--policy", "oracle", "--shopper", "local", "--no-live"]
                argv = argv[:argv.index("--") + 1] + run
                r = subprocess.run(argv, cwd=ROOT, env=client_env, capture_output=True, text=True, timeout=600)
                out = r.stdout + r.stderr
                assert r.returncode == 0 and "succeeded" in out.lower(), out[-5000:]
                assert "dashboard: http://127.0.0.1:8265" in out  # the run says where to look
                assert "live view: ecomrlve top" in out
                m = re.search(r"run directory: (\S+)", out)
                assert m, out[-5000:]
                run_line = m.group(1)
                assert Path(run_line).parent == head_home / "ecomrlve_runs", run_line  # persistent, on the head
            elif step == "ray down":
                _stop(head)
                head = None
            else:
                pytest.fail(f"README step with no local mapping: {words}")
        # the job has ended and the head is down: the results are still there, on the head and
        # in the client's copy
        assert run_line is not None
        import pyarrow.parquet as pq

        for run_dir in (Path(run_line), client_cwd / "runs" / Path(run_line).name):
            ids = pq.read_table(run_dir / "trajectories.parquet").column("episode_id").to_pylist()
            assert sorted(ids) == list(range(12))
            assert (run_dir / "summary.md").exists() and (run_dir / "curriculum.json").exists()
    finally:
        if head is not None:
            _stop(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _stop(proc: subprocess.Popen) -> None:
    """Stop only the Ray head this test started (its own process group)."""
    for sig, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
