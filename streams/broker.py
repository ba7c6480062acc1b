"""A real single-node Kafka (KRaft) on 127.0.0.1, without Docker.

The jars come from Maven Central through ``deploy/kafka/pom.xml`` and are cached
under ``KPI_HOME`` (outside the work tree), so only the first start downloads.
``KAFKA_HOME`` runs an installed Kafka instead; ``KAFKA_BOOTSTRAP`` means a
cluster already exists and nothing is started.

Each broker lives in ``<KPI_HOME>/broker-<port>/`` with its data, config, log
and the PID it was started with. ``stop`` ends that PID and nothing else, after
checking that the process is still the broker started from that directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .settings import Settings

REPO_DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kafka"

Say = Callable[[str], None]  # receives one progress line


def _silent(line: str) -> None:
    pass


class BrokerError(RuntimeError):
    """The broker could not be fetched, started or stopped; the message says why."""


@dataclass(frozen=True)
class BrokerPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def config(self) -> Path:
        return self.root / "server.properties"

    @property
    def log(self) -> Path:
        return self.root / "broker.log"

    @property
    def pid(self) -> Path:
        return self.root / "broker.pid"


def paths(settings: Settings) -> BrokerPaths:
    return BrokerPaths(settings.home / f"broker-{settings.broker_port}")


def jar_dir(settings: Settings) -> Path:
    """Directory holding the Kafka jars (fetched on first use)."""
    if settings.kafka_home:
        libs = settings.kafka_home / "libs"
        if not libs.is_dir():
            raise BrokerError(f"KAFKA_HOME={settings.kafka_home} has no libs/ directory")
        return libs
    return settings.home / f"kafka-{settings.kafka_version}" / "libs"


def fetch(settings: Settings, *, say: Say = _silent) -> Path:
    """Make sure the Kafka jars are present; download them with Maven if not.

    ``say`` receives progress lines (the CLI prints them to stderr)."""
    libs = jar_dir(settings)
    marker = libs / ".complete"
    if settings.kafka_home or marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is needed to fetch Kafka the first time; install it "
                          "(apt-get install maven) or set KAFKA_HOME or KAFKA_BOOTSTRAP")
    pom = REPO_DEPLOY / "pom.xml"
    if not pom.exists():
        raise BrokerError(f"missing {pom}")
    tmp = libs.with_name(libs.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    say(f"fetching Apache Kafka {settings.kafka_version} from Maven Central "
        f"into {libs.parent} (first start only) ...")
    cmd = [mvn, "-B", "-q", "-f", str(pom), f"-Dkafka.version={settings.kafka_version}",
           "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise BrokerError(f"mvn could not fetch Kafka {settings.kafka_version}:\n{tail}")
    if not list(tmp.glob("kafka_2.13-*.jar")):
        raise BrokerError(f"mvn finished but no kafka_2.13 jar is in {tmp}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    marker.write_text(settings.kafka_version + "\n")
    return libs


def _server_properties(settings: Settings, p: BrokerPaths) -> str:
    port, cport = settings.broker_port, settings.controller_port
    return "\n".join([
        "# written by kpi-streams broker start; edits are overwritten",
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.bootstrap.servers=127.0.0.1:{cport}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={p.data}",
        "num.partitions=1",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=6",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        # 0 by default: a single worker need not wait for more members
        f"group.initial.rebalance.delay.ms={settings.broker_group_delay_ms}",
        "auto.create.topics.enable=true",
        "log.retention.hours=168",
        "log.cleaner.backoff.ms=5000",
        "message.max.bytes=8388608",
        "",
    ])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def recorded_pid(settings: Settings) -> int | None:
    """The PID this broker directory recorded, if that process is still our broker."""
    p = paths(settings)
    try:
        pid = int(p.pid.read_text().strip())
    except (OSError, ValueError):
        return None
    if not _pid_alive(pid):
        return None
    cmd = _cmdline(pid)
    # the PID may have been reused by an unrelated process after a reboot
    if cmd and ("kafka.Kafka" not in cmd or str(p.config) not in cmd):
        return None
    return pid


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def tail(path: Path, lines: int = 40) -> str:
    try:
        data = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(data[-lines:])


def start(settings: Settings, *, timeout: float = 90.0, say: Say = _silent) -> str:
    """Start the local broker (or confirm it runs); returns the bootstrap address.

    ``say`` receives progress lines (the CLI prints them to stderr)."""
    if not settings.uses_local_broker:
        say(f"KAFKA_BOOTSTRAP={settings.kafka_bootstrap}: using that cluster, "
            "starting nothing")
        return settings.bootstrap
    p = paths(settings)
    if recorded_pid(settings) is not None:
        _wait_ready(settings, p, None, timeout, None)
        return settings.bootstrap
    if port_open("127.0.0.1", settings.broker_port):
        raise BrokerError(f"port {settings.broker_port} is taken by another process; set "
                          "KPI_BROKER_PORT, or KAFKA_BOOTSTRAP to use a running cluster")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("java (17 or newer) is needed to run the local broker")
    libs = fetch(settings, say=say)
    p.root.mkdir(parents=True, exist_ok=True)
    p.config.write_text(_server_properties(settings, p))
    log4j = REPO_DEPLOY / "log4j2.yaml"
    classpath = f"{libs}/*"
    if not (p.data / "meta.properties").exists():
        shutil.rmtree(p.data, ignore_errors=True)
        cluster_id = _random_cluster_id()
        fmt = subprocess.run(
            [java, "-cp", classpath, f"-Dlog4j2.configurationFile={log4j}",
             "kafka.tools.StorageTool", "format", "--standalone",
             f"--cluster-id={cluster_id}",  # an id may start with "-"
             "-c", str(p.config)],
            capture_output=True, text=True, check=False)
        if fmt.returncode != 0:
            raise BrokerError("formatting KRaft storage failed:\n"
                              + (fmt.stdout + fmt.stderr).strip()[-3000:])
    cmd = [java, f"-Xmx{settings.broker_heap}", "-Xms128m", "-XX:+UseG1GC",
           "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
           f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath,
           "kafka.Kafka", str(p.config)]
    with p.log.open("ab") as log:
        log_offset = log.tell()
        log.write(f"\n==== kpi-streams broker start {time.strftime('%F %T')} ====\n".encode())
    # start the JVM through a shell that backgrounds it and exits: the broker outlives
    # this command (it is a daemon), so no Python process object should own it
    launcher = subprocess.run(
        ["sh", "-c", 'exec "$@" >>"$KPI_BROKER_LOG" 2>&1 </dev/null & echo $!', "sh", *cmd],
        env={**os.environ, "KPI_BROKER_LOG": str(p.log)}, capture_output=True, text=True,
        check=False, start_new_session=True)
    try:
        pid = int(launcher.stdout.strip())
    except ValueError as exc:
        raise BrokerError(f"could not launch java: {launcher.stderr.strip()}") from exc
    p.pid.write_text(f"{pid}\n")
    _wait_ready(settings, p, pid, timeout, log_offset)
    say(f"broker up on {settings.bootstrap} (pid {pid}, data {p.data})")
    return settings.bootstrap


def _random_cluster_id() -> str:
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _wait_ready(settings: Settings, p: BrokerPaths, pid: int | None,
                timeout: float, log_offset: int | None) -> None:
    """Wait for the port and, for a broker just launched, its "started" log line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid is not None and (not _pid_alive(pid) or _is_zombie(pid)):
            raise BrokerError(f"the broker exited during start-up. Last lines of "
                              f"{p.log}:\n{tail(p.log)}")
        if port_open("127.0.0.1", settings.broker_port) and (
                log_offset is None or _log_says_started(p, log_offset)):
            return
        time.sleep(0.3)
    if pid is not None:
        _terminate(pid, grace=5)
    raise BrokerError(f"the broker did not answer on {settings.bootstrap} within "
                      f"{timeout:.0f}s. Last lines of {p.log}:\n{tail(p.log)}")


def _log_says_started(p: BrokerPaths, offset: int) -> bool:
    # the port opens before the broker has caught up with its own metadata; the log
    # line is the broker saying it is ready to serve requests
    try:
        with p.log.open("rb") as fh:
            fh.seek(offset)
            return b"Kafka Server started" in fh.read()
    except OSError:
        return False


def _terminate(pid: int, grace: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _pid_alive(pid) or _is_zombie(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except (OSError, IndexError):
        return False


def stop(settings: Settings, *, grace: float = 30.0) -> bool:
    """Stop the broker this directory started. Returns False if none was running."""
    if not settings.uses_local_broker:
        raise BrokerError("KAFKA_BOOTSTRAP is set: that cluster is not ours to stop")
    pid = recorded_pid(settings)
    p = paths(settings)
    if pid is None:
        p.pid.unlink(missing_ok=True)
        return False
    _terminate(pid, grace)
    p.pid.unlink(missing_ok=True)
    return True


def status(settings: Settings) -> dict[str, object]:
    if not settings.uses_local_broker:
        up = _any_port_open(settings.bootstrap)
        return {"mode": "external", "bootstrap": settings.bootstrap, "reachable": up}
    pid = recorded_pid(settings)
    p = paths(settings)
    return {
        "mode": "local",
        "bootstrap": settings.bootstrap,
        "running": pid is not None,
        "pid": pid,
        "answering": port_open("127.0.0.1", settings.broker_port),
        "kafka": str(settings.kafka_home) if settings.kafka_home else settings.kafka_version,
        "data": str(p.data),
        "log": str(p.log),
    }


def _any_port_open(bootstrap: str) -> bool:
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if host and port.isdigit() and port_open(host, int(port)):
            return True
    return False
