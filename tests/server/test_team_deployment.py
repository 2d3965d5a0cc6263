"""The README's team deployment, run: two ``serve`` processes started with the systemd unit's own
ExecStart and Environment (deploy/weightvault@.service), one PostgreSQL, one S3 bucket (moto),
the configuration of deploy/config.yaml. What one process writes the other serves; the truth is
in the bucket and the database, not in either process's home.

What cannot run here is said so: the container image is not built (no container runtime on this
machine); its command is checked to be the unit's command, and the unit is checked by
``systemd-analyze verify`` (the only change: the executable's path, which is /opt/… on a server).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
import yaml

from weightvault import Vault
from weightvault.testing.balancer import RoundRobinBalancer
from weightvault.testing.server import free_port

from ..conftest import new_postgres_database, tree_bytes, write_random

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "weightvault@.service"
INSTALLED = "/opt/weightvault/bin/weightvault"  # where the unit and the image install the CLI


def _service(unit: Path) -> dict[str, list[str]]:
    """The [Service] section's settings; a key may repeat (Environment)."""
    section, out = "", {}
    for line in unit.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def _cli() -> str:
    found = shutil.which("weightvault", path=str(Path(sys.executable).parent))
    assert found, "the weightvault console script is installed next to this Python"
    return found


@pytest.fixture
def moto_endpoint(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                httpx.get(url, timeout=1)
                break
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


class Instance:
    """``systemctl start weightvault@PORT`` done by hand: the unit's ExecStart and Environment,
    with /etc and /var/lib mapped into the test's folder."""

    def __init__(self, root: Path, port: int, env: dict[str, str]) -> None:
        service = _service(UNIT)
        (exec_start,) = service["ExecStart"]
        argv = shlex.split(exec_start.replace("%i", str(port)))
        assert argv[0] == INSTALLED
        self.argv = [_cli(), *argv[1:]]
        self.env = {k: v for k, v in env.items() if not k.startswith("WEIGHTVAULT_")}
        for assignment in service["Environment"]:
            for pair in shlex.split(assignment.replace("%i", str(port))):
                key, value = pair.split("=", 1)
                self.env[key] = value.replace("/etc/weightvault", str(root / "etc")).replace(
                    "/var/lib/weightvault", str(root / "var")
                )
        Path(self.env["WEIGHTVAULT_HOME"]).mkdir(parents=True)  # StateDirectory=
        self.home = Path(self.env["WEIGHTVAULT_HOME"])
        self.url = f"http://127.0.0.1:{port}"
        self.log = root / f"serve-{port}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        for _ in range(600):
            assert self.proc.poll() is None, self.log.read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"not ready: {self.log.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


def test_two_servers_one_postgresql_one_bucket_as_the_unit_runs_them(
    request: pytest.FixtureRequest, moto_endpoint: str, tmp_path: Path
) -> None:
    database = new_postgres_database(request)
    config = yaml.safe_load((DEPLOY / "config.yaml").read_text())
    config["database_url"] = database  # the only changes: where this machine's database and S3 are
    config["aws"]["endpoint_url"] = moto_endpoint
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "config.yaml").write_text(yaml.safe_dump(config))
    bucket = config["aws"]["model_weights"]["s3_bucket"]
    creds = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="eu-west-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    env = {**os.environ, **creds}

    first = Instance(tmp_path, free_port(), env)
    instances = [first]
    try:
        token = re.search(r"its token \(shown once, stored only as a hash\): (\S+)", first.log.read_text())
        assert token, first.log.read_text()  # the first start on an empty database makes the admin
        second = Instance(tmp_path, free_port(), env)
        instances.append(second)
        assert "its token" not in second.log.read_text()  # the database already has principals

        src = tmp_path / "src"
        write_random(src / "model.safetensors", 2_500_000, seed=5)
        (src / "config.json").write_text(json.dumps({"layers": 2}))
        with (
            Vault.open(first.url, token=token.group(1)) as a,
            Vault.open(second.url, token=token.group(1)) as b,
        ):
            a.push("team/llm", src, version="v1")
            b.pull("team/llm@v1", tmp_path / "out")
            assert tree_bytes(tmp_path / "out") == tree_bytes(src)
            b.set_alias("team/llm", "production", "v1")
            assert a.resolve("team/llm@production").label == "v1"
        stored = s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0)
        assert stored > 0  # the bytes are in the bucket ...
        for instance in instances:  # ... and no process keeps a pack of its own
            assert not [p for p in instance.home.rglob("*") if p.is_file() and p.stat().st_size > 1_000_000]
    finally:
        for instance in instances:
            instance.stop()


def test_an_encrypted_push_through_a_round_robin_balancer_to_the_units(
    request: pytest.FixtureRequest, moto_endpoint: str, tmp_path: Path
) -> None:
    """Whole-file upload sessions (the server encrypts) across the two processes: every request
    of the push goes to the other process than the one before, as a layer-7 balancer does."""
    database = new_postgres_database(request)
    config = yaml.safe_load((DEPLOY / "config.yaml").read_text())
    config["database_url"] = database
    config["aws"]["endpoint_url"] = moto_endpoint
    config["encryption"] = {"enabled": True, "provider": {"type": "env", "variable": "WV_TEAM_KEK"}}
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "config.yaml").write_text(yaml.safe_dump(config))
    bucket = config["aws"]["model_weights"]["s3_bucket"]
    boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="eu-west-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    kek = base64.b64encode(os.urandom(32)).decode()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "WV_TEAM_KEK": kek}

    first = Instance(tmp_path, free_port(), env)
    instances = [first]
    try:
        token = re.search(r"its token \(shown once, stored only as a hash\): (\S+)", first.log.read_text())
        assert token, first.log.read_text()
        second = Instance(tmp_path, free_port(), env)
        instances.append(second)
        ports = [int(i.url.rsplit(":", 1)[1]) for i in instances]
        src = tmp_path / "src"
        write_random(src / "model.safetensors", 2_500_000, seed=7)
        with RoundRobinBalancer(ports) as lb, Vault.open(lb.url, token=token.group(1)) as v:
            assert v.http.json("GET", "/models/team/sealed/-/upload-mode")["mode"] == "files"
            v.push("team/sealed", src, version="v1")
            opened = next(r for r in lb.routed if r.method == "POST" and r.path.endswith("/-/uploads"))
            sent = next(r for r in lb.routed if r.method == "PUT")
            assert sent.upstream != opened.upstream  # the session continued on the other process
        for instance in instances:
            with Vault.open(instance.url, token=token.group(1)) as v:
                out = tmp_path / f"out-{instance.url.rsplit(':', 1)[1]}"
                v.pull("team/sealed@v1", out)
                assert tree_bytes(out) == tree_bytes(src)
            assert not list((instance.home / "tmp" / "uploads").glob("*.part"))
    finally:
        for instance in instances:
            instance.stop()


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is installed by scripts/install-test-tools.sh"
    # verify checks that the executable exists: point it at this machine's install of the CLI
    (tmp_path / "weightvault@.service").write_text(UNIT.read_text().replace(INSTALLED, _cli()))
    r = subprocess.run(
        [analyze, "verify", str(tmp_path / "weightvault@8081.service")], capture_output=True, text=True
    )
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr


def test_the_image_runs_the_units_command_and_the_readme_shows_these_files() -> None:
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", (DEPLOY / "Containerfile").read_text(), re.M).group(1))  # type: ignore[union-attr]
    (exec_start,) = _service(UNIT)["ExecStart"]
    unit = shlex.split(exec_start)
    # the same program and options; only where it listens differs (all interfaces in a container)
    assert cmd[:2] == unit[:2] and cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert [a for a in cmd if a.startswith("--")] == [a for a in unit if a.startswith("--")]
    readme = (ROOT / "README.md").read_text()
    for name in ("config.yaml", "weightvault@.service", "Containerfile"):
        assert (DEPLOY / name).read_text().strip() in readme, f"README does not show deploy/{name} as it is"
