"""The alert rules load in Prometheus and pass their promtool unit tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

PROM = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed (./dev deps installs Debian's prometheus)")
    return exe


def test_rules_are_valid() -> None:
    out = subprocess.run([promtool(), "check", "rules", str(PROM / "rules" / "kpi-streams.yml")],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 9 rules found" in out.stdout


def test_every_rule_has_a_unit_test() -> None:
    rules = (PROM / "rules" / "kpi-streams.yml").read_text()
    tests = (PROM / "tests" / "kpi-streams.test.yml").read_text()
    names = [line.split(":", 1)[1].strip() for line in rules.splitlines()
             if line.strip().startswith("- alert:")]
    assert len(names) == 9
    for name in names:
        assert f"alertname: {name}" in tests, f"no promtool test for {name}"


def test_promtool_unit_tests_pass() -> None:
    out = subprocess.run([promtool(), "test", "rules", "tests/kpi-streams.test.yml"],
                         cwd=PROM, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_prometheus_configs_are_valid(tmp_path: Path) -> None:
    # the docker-compose config, with the rules path made local
    cfg = (PROM / "prometheus.docker.yml").read_text().replace(
        "/etc/prometheus/rules/*.yml", str(PROM / "rules" / "*.yml"))
    (tmp_path / "prometheus.yml").write_text(cfg)
    out = subprocess.run([promtool(), "check", "config", str(tmp_path / "prometheus.yml")],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
