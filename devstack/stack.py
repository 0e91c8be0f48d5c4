"""Local Apache Kafka (KRaft, from Maven Central) and Redis (AOF) without Docker.

    python -m devstack up | down | status | fetch | run -- CMD...

`up` is idempotent and prints the addresses; `down` stops what `up` started and
checks the ports are free; `run` starts what is not running, runs CMD with
KAFKA_BOOTSTRAP_SERVERS and REDIS_URL set, and stops only what it started.
Every failure a user can fix ends in one line on stderr and exit code 2.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEVSTACK = ROOT / "devstack"
RUNTIME = Path(os.environ.get("SAGA_RUNTIME_DIR", ROOT / ".runtime"))
CACHE = Path(os.environ.get("SAGA_CACHE_DIR", ROOT / ".cache"))
READY_TIMEOUT_S = float(os.environ.get("SAGA_STACK_READY_TIMEOUT", "90"))
KAFKA_HEAP = os.environ.get("SAGA_KAFKA_HEAP", "512m")


class StackError(Exception):
    """A problem the user can act on; printed as one line."""


def read_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for raw in (DEVSTACK / "versions.env").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


@dataclass(frozen=True)
class Ports:
    kafka: int = int(os.environ.get("SAGA_KAFKA_PORT", "9092"))
    controller: int = int(os.environ.get("SAGA_KAFKA_CONTROLLER_PORT", "9093"))
    redis: int = int(os.environ.get("SAGA_REDIS_PORT", "6379"))

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka}"

    @property
    def redis_url(self) -> str:
        from devstack import cluster  # noqa: PLC0415 - it imports this module

        if cluster.enabled():
            return cluster.url()
        return f"redis://127.0.0.1:{self.redis}/0"


# -- processes ---------------------------------------------------------------


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pidfile.unlink(missing_ok=True)
        return None
    return pid


def stop_pid(pidfile: Path, name: str, grace_s: float = 15.0) -> bool:
    pid = read_pid(pidfile)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and read_pid(pidfile) is not None:
        if _reap(pid):
            break
        time.sleep(0.1)
    if read_pid(pidfile) is not None and not _reap(pid):
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)
    pidfile.unlink(missing_ok=True)
    print(f"stopped {name} (pid {pid})")
    return True


def _reap(pid: int) -> bool:
    """True once pid no longer exists (reaping it if it is our child)."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            child = _children.pop(pid, None)
            if child is not None:
                child.returncode = os.waitstatus_to_exitcode(status)
            return True
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not _reap(pid):
        time.sleep(0.05)


_children: dict[int, subprocess.Popen[bytes]] = {}


def spawn(cmd: Sequence[str], log: Path, pidfile: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv built here
            list(cmd),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the terminal; `down` stops it
        )
    pidfile.write_text(str(proc.pid))
    _children[proc.pid] = proc  # held, so no "still running" warning when it is collected
    return proc.pid


def require_port_free(port: int, what: str) -> None:
    if port_open(port):
        raise StackError(
            f"port {port} needed for {what} is already in use by another process; "
            f"stop it or choose another port (see README, 'Local services')"
        )


def wait_until(check: Callable[[], bool], what: str, log: Path, pidfile: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        pid = read_pid(pidfile)
        if pid is None or _reap(pid):  # gone, or a child of ours that exited (a zombie)
            pidfile.unlink(missing_ok=True)
            raise StackError(f"{what} exited during start; see {tail_hint(log)}")
        if check():
            return
        time.sleep(0.25)
    hint = tail_hint(log)
    stop_pid(pidfile, what)  # a half-started service must not linger on its ports
    raise StackError(
        f"{what} not ready after {READY_TIMEOUT_S:g}s; see {hint} "
        f"(raise SAGA_STACK_READY_TIMEOUT on a slow machine)"
    )


def tail_hint(log: Path) -> str:
    try:
        last = log.read_text(errors="replace").strip().splitlines()[-1][:200]
    except (FileNotFoundError, IndexError):
        last = "no output"
    return f"{log} (last line: {last})"


# -- kafka -------------------------------------------------------------------


def kafka_libs() -> Path:
    """Fetches the broker's jars from Maven Central once, into the ignored cache."""
    versions = read_versions()
    libs = CACHE / f"kafka-{versions['KAFKA_VERSION']}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("java") is None:
        raise StackError("java not found: install OpenJDK 17 or newer (Debian: openjdk-17-jre)")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("mvn not found: install Maven (Debian: apt-get install maven)")
    print(f"fetching Apache Kafka {versions['KAFKA_VERSION']} from Maven Central into {libs}")
    libs.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(DEVSTACK / "pom.xml"),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={libs}",
        f"-Dkafka.version={versions['KAFKA_VERSION']}",
        f"-Dscala.version={versions['SCALA_VERSION']}",
        f"-Dlog4j.version={versions['LOG4J_VERSION']}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        first = next((ln for ln in result.stdout.splitlines() if "ERROR" in ln), "")
        raise StackError(f"Maven could not fetch Kafka: {first[:300] or result.stderr[:300]}")
    marker.touch()
    return libs


# A single node: internal topics at replication factor 1, no topic made by accident.
ONE_NODE = {
    "num.partitions": "6",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "6",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "auto.create.topics.enable": "false",
}


def kafka_properties(ports: Ports, data: Path) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{ports.controller}",
        "listeners": f"PLAINTEXT://127.0.0.1:{ports.kafka},CONTROLLER://127.0.0.1:{ports.controller}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{ports.kafka}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data),
        **ONE_NODE,
        "log.flush.interval.messages": "9223372036854775807",
        "num.io.threads": "4",
        "num.network.threads": "2",
    }
    return "".join(f"{k}={v}\n" for k, v in settings.items())


def kafka_ready(bootstrap: str) -> bool:
    """A metadata round trip, not a port check: the broker must answer requests."""
    from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415 - only after install

    if not port_open(int(bootstrap.rsplit(":", 1)[1])):
        return False
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # "not yet" is expected here

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
            return True
        except Exception:
            return False
        finally:
            await admin.close()

    return asyncio.run(probe())


def start_kafka(ports: Ports) -> bool:
    home = RUNTIME / "kafka"
    pidfile, log = home / "kafka.pid", home / "kafka.log"
    if read_pid(pidfile) is not None:
        return False
    require_port_free(ports.kafka, "Kafka")
    require_port_free(ports.controller, "the Kafka controller")
    libs = kafka_libs()
    home.mkdir(parents=True, exist_ok=True)
    data = home / "data"
    props = home / "server.properties"
    props.write_text(kafka_properties(ports, data))
    classpath = f"{libs}/*"
    java = shutil.which("java") or "java"
    jvm = [
        java,
        f"-Xms{KAFKA_HEAP}",
        f"-Xmx{KAFKA_HEAP}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        f"-Dlog4j2.configurationFile={DEVSTACK / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={home}",
        "-cp",
        classpath,
    ]
    if not (data / "meta.properties").exists():
        fmt = subprocess.run(  # noqa: S603
            [
                *jvm,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={_cluster_id(home)}",
                "-c",
                str(props),
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise StackError(f"formatting Kafka storage failed: {fmt.stderr.strip()[-300:]}")
    spawn([*jvm, "kafka.Kafka", str(props)], log, pidfile)
    wait_until(lambda: kafka_ready(ports.bootstrap), "Kafka", log, pidfile)
    return True


def _cluster_id(home: Path) -> str:
    path = home / "cluster.id"
    if not path.exists():
        # KRaft cluster ids are a url-safe base64 UUID of 22 characters.
        raw = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        path.write_text(raw)
    return path.read_text().strip()


# -- redis -------------------------------------------------------------------


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing redis-server from Debian's packages")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "redis-server"],
        ):
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)  # noqa: S603
            if done.returncode != 0:
                raise StackError(f"'{' '.join(cmd)}' failed: {done.stderr.strip()[-200:]}")
        # Debian starts a system Redis on 6379 after install; ours must own the port.
        subprocess.run(["service", "redis-server", "stop"], capture_output=True, check=False)  # noqa: S607
        found = shutil.which("redis-server")
    if not found:
        raise StackError(
            "redis-server not found: install it (Debian: apt-get install redis-server)"
        )
    return found


def redis_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_args(port: int, home: Path) -> list[str]:
    """redis-server's options: loopback, AOF (SAGA_REDIS_APPENDFSYNC), no RDB, foreground."""
    fsync = os.environ.get("SAGA_REDIS_APPENDFSYNC", "everysec")
    return [
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(home),
        "--appendonly",
        "yes",
        "--appendfsync",
        fsync,
        "--save",
        "",
        "--protected-mode",
        "yes",
        "--daemonize",
        "no",
    ]


def start_redis(ports: Ports) -> bool:
    home = RUNTIME / "redis"
    pidfile, log = home / "redis.pid", home / "redis.log"
    if read_pid(pidfile) is not None:
        return False
    binary = redis_binary()
    require_port_free(ports.redis, "Redis")
    home.mkdir(parents=True, exist_ok=True)
    spawn([binary, *redis_args(ports.redis, home)], log, pidfile)
    wait_until(lambda: redis_ready(ports.redis), "Redis", log, pidfile)
    return True


# -- commands ----------------------------------------------------------------


def up(ports: Ports) -> list[str]:
    """Starts what is not running; returns the names of what this call started."""
    from devstack import cluster  # noqa: PLC0415 - it imports this module

    started = []
    if cluster.enabled():
        if cluster.start_cluster():
            started.append("redis-cluster")
    elif start_redis(ports):
        started.append("redis")
    if start_kafka(ports):
        started.append("kafka")
    return started


def down(names: Sequence[str] = ("kafka", "redis", "redis-cluster")) -> None:
    from devstack import cluster  # noqa: PLC0415 - it imports this module

    for name in names:
        if name == "redis-cluster":
            cluster.stop_cluster()
        else:
            stop_pid(RUNTIME / name / f"{name}.pid", name)


def status(ports: Ports) -> int:
    running = 0
    for name, port in (("kafka", ports.kafka), ("redis", ports.redis)):
        pid = read_pid(RUNTIME / name / f"{name}.pid")
        state = f"running (pid {pid}) on 127.0.0.1:{port}" if pid else "stopped"
        running += pid is not None
        print(f"{name}: {state}")
    return 0 if running == 2 else 1


def print_addresses(ports: Ports) -> None:
    print(f"KAFKA_BOOTSTRAP_SERVERS={ports.bootstrap}")
    print(f"REDIS_URL={ports.redis_url}")


def run(ports: Ports, cmd: Sequence[str]) -> int:
    started = up(ports)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": ports.bootstrap,
        "REDIS_URL": ports.redis_url,
    }
    try:
        return subprocess.call(list(cmd), env=env)  # noqa: S603
    finally:
        down([n for n in ("kafka", "redis", "redis-cluster") if n in started])


def main(argv: Sequence[str]) -> int:
    ports = Ports()
    command = argv[0] if argv else "status"
    from devstack import secure  # noqa: PLC0415 - it imports this module

    try:
        if command == "up":
            up(ports)
            print_addresses(ports)
            if secure.enabled():
                secured, _ = secure.up()
                print(f"secured stack: settings for saga-worker in {secured.home / 'client.env'}")
                print(f"  (SAGA_ENV_FILE={secured.home / 'client.env'} saga-worker ...)")
        elif command == "down":
            down()
            secure.down()
            busy = [p for p in (ports.kafka, ports.controller, ports.redis) if port_open(p)]
            if busy:
                raise StackError(f"ports still in use after stopping: {busy}")
        elif command == "status":
            code = status(ports)
            for name in ("kafka", "redis"):
                pid = read_pid(secure.default_home() / name / f"{name}.pid")
                if pid is not None:
                    print(f"secured {name}: running (pid {pid})")
            return code
        elif command == "fetch":
            print(kafka_libs())
        elif command == "run":
            rest = list(argv[1:])
            if rest[:1] == ["--"]:
                rest = rest[1:]
            if not rest:
                raise StackError("usage: python -m devstack run -- COMMAND [ARGS...]")
            return run(ports, rest)
        else:
            raise StackError(f"unknown command {command!r}; use up, down, status, fetch or run")
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
