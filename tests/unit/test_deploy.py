"""Deployment files are valid for the tools that read them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> list[str]:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 check=False).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed "
                "(./dev deps installs Debian's docker-compose)")


def test_docker_compose_config_is_valid() -> None:
    out = subprocess.run([*_compose(), "config", "-q"], cwd=ROOT, capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_compose_runs_the_whole_stack() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for service in ("kafka:", "worker:", "prometheus:", "alertmanager:", "grafana:"):
        assert f"\n  {service}" in text
