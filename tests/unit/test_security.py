"""Security defaults: loopback binding, secrets kept out of output, TLS/SASL wiring.

The wiring is tested as far as the clients that would use it (aiokafka clients
and the Faust app are built from the settings); no live TLS cluster is involved.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faust.types.auth import SASLMechanism

from streams.app import build_pipeline, create_app
from streams.kafka import client_kwargs
from streams.settings import load_settings
from tests.fixtures_kafka import ROOT

PASSWORD = "pa55-Never-Print-7f3a"
KEY_PASSWORD = "key-Pass-Never-Print-91c2"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed CA certificate and an encrypted client key, made with openssl."""
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "client.key", d / "client.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-days", "2",
                    "-subj", "/CN=kpi-streams-test", "-keyout", str(key), "-out", str(cert),
                    "-passout", f"pass:{KEY_PASSWORD}"], check=True, capture_output=True)
    return {"ca": cert, "cert": cert, "key": key}


def _env(tls: dict[str, Path], protocol: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP": "broker-a.example:9093,broker-b.example:9093",
        "KPI_KAFKA_SECURITY_PROTOCOL": protocol,
        "KPI_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KPI_KAFKA_SASL_USERNAME": "kpi-worker",
        "KPI_KAFKA_SASL_PASSWORD": PASSWORD,
        "KPI_KAFKA_SSL_CAFILE": str(tls["ca"]),
        "KPI_KAFKA_SSL_CERTFILE": str(tls["cert"]),
        "KPI_KAFKA_SSL_KEYFILE": str(tls["key"]),
        "KPI_KAFKA_SSL_KEY_PASSWORD": KEY_PASSWORD,
    }


def test_web_server_binds_to_loopback_by_default() -> None:
    assert load_settings({}).web_host == "127.0.0.1"


def test_sasl_ssl_reaches_aiokafka_clients(tls_files: dict[str, Path]) -> None:
    s = load_settings(_env(tls_files, "SASL_SSL"))
    kw = client_kwargs(s)
    assert kw["security_protocol"] == "SASL_SSL"
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kw["sasl_plain_username"] == "kpi-worker"
    assert kw["sasl_plain_password"] == PASSWORD
    ctx = kw["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    # the CA file was loaded into the context
    assert any(c["subject"] == ((("commonName", "kpi-streams-test"),),)
               for c in ctx.get_ca_certs())


@pytest.mark.asyncio
async def test_aiokafka_accepts_the_arguments(tls_files: dict[str, Path]) -> None:
    # constructing the clients connects to nothing, but checks every argument
    kw = client_kwargs(load_settings(_env(tls_files, "SASL_SSL")))
    p = AIOKafkaProducer(**kw)
    c = AIOKafkaConsumer(**kw)
    assert p.client._security_protocol == "SASL_SSL"
    assert c._client._sasl_mechanism == "SCRAM-SHA-512"
    assert p.client._ssl_context is kw["ssl_context"]
    await c.stop()
    await p.stop()


def test_ssl_without_sasl(tls_files: dict[str, Path]) -> None:
    s = load_settings(_env(tls_files, "SSL"))
    kw = client_kwargs(s)
    assert kw["security_protocol"] == "SSL"
    assert isinstance(kw["ssl_context"], ssl.SSLContext)
    assert "sasl_plain_password" not in kw


def test_plaintext_has_no_tls_or_sasl() -> None:
    kw = client_kwargs(load_settings({}))
    assert kw["security_protocol"] == "PLAINTEXT"
    assert "ssl_context" not in kw and "sasl_mechanism" not in kw


def test_wrong_key_password_is_a_clear_error(tls_files: dict[str, Path]) -> None:
    env = {**_env(tls_files, "SSL"), "KPI_KAFKA_SSL_KEY_PASSWORD": "wrong"}
    with pytest.raises(ssl.SSLError):
        client_kwargs(load_settings(env))


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SSL"])
def test_faust_app_gets_the_same_credentials(tls_files: dict[str, Path],
                                             protocol: str, tmp_path: Path) -> None:
    s = load_settings({**_env(tls_files, protocol), "KPI_HOME": str(tmp_path)})
    app = create_app(s, build_pipeline(s))
    cred = app.conf.broker_credentials
    assert [f"{u.host}:{u.port}" for u in app.conf.broker] == ["broker-a.example:9093",
                                                   "broker-b.example:9093"]
    if protocol == "SASL_SSL":
        assert isinstance(cred, faust.SASLCredentials)
        assert cred.username == "kpi-worker" and cred.password == PASSWORD
        assert cred.mechanism == SASLMechanism.SCRAM_SHA_512
        assert cred.protocol.value == "SASL_SSL"
        assert isinstance(cred.ssl_context, ssl.SSLContext)
    else:
        assert isinstance(cred, faust.SSLCredentials)
        assert isinstance(cred.context, ssl.SSLContext)


def _cli(args: list[str], env: dict[str, str]) -> str:
    r = subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=ROOT,
                       env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    return r.stdout + r.stderr


@pytest.mark.parametrize("args", [["--help"], ["worker", "--help"], ["settings"],
                                  ["broker", "--help"], ["simulate", "--help"]])
def test_no_secret_in_help_or_settings_output(tls_files: dict[str, Path],
                                              args: list[str]) -> None:
    out = _cli(args, _env(tls_files, "SASL_SSL"))
    assert out.strip(), "the command printed nothing"
    assert PASSWORD not in out and KEY_PASSWORD not in out
    if args == ["settings"]:
        assert "KPI_KAFKA_SASL_PASSWORD" in out  # listed, value masked


def test_no_secret_in_worker_log_when_broker_unreachable(tls_files: dict[str, Path],
                                                          tmp_path: Path) -> None:
    """A worker that cannot connect logs why, but never the credentials it used."""
    env = {**_env(tls_files, "SASL_PLAINTEXT"), "KAFKA_BOOTSTRAP": "127.0.0.1:1",
           "KPI_HOME": str(tmp_path), "KPI_WEB_PORT": "0", "KPI_LOG_LEVEL": "debug"}
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], cwd=ROOT,
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=12)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert out.strip(), "the worker logged nothing"
    assert PASSWORD not in out and KEY_PASSWORD not in out
