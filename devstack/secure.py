"""A secured Kafka broker and Redis, next to the plain ones, for trying and testing security.

    SAGA_DEVSTACK_SECURE=1 python -m devstack up     (make up SECURE=1)

Everything is made at start under `.runtime/secure/` (ignored by git): a CA, a
server certificate for 127.0.0.1/localhost, a client certificate, random
passwords. The broker (its own KRaft node, its own data) listens with

- SASL_SSL (SCRAM-SHA-512; users `saga` and `admin` created when its storage is
  formatted, with `--add-scram`),
- SSL requiring a client certificate signed by the CA (principal: the CN),
- PLAINTEXT on loopback only, for the controller and the broker itself,

and `redis-server` (Debian's, built with TLS) listens with TLS only, with an ACL
user `saga` limited to the commands in saga_worker.runtime.redis_acl and to the keys
`saga-worker:*` (REDIS_ACL_KEYS). `client.env` in that folder holds the settings
for saga-worker; every secret in it is a `*_FILE` path.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack import stack

SCRAM = "SCRAM-SHA-512"
KAFKA_USER = "saga"
KAFKA_ADMIN = "admin"
CLIENT_CN = "saga-client"
REDIS_USER = "saga"
REDIS_ACL_KEYS = "saga-worker:*"


def redis_acl(user: str, password: str, keys: str = REDIS_ACL_KEYS) -> str:
    """One `ACL SETUSER` rule (and aclfile line): the user, its keys and its commands."""
    from saga_worker.runtime.redis_acl import acl_rule  # noqa: PLC0415 - after install

    return acl_rule(user, password, keys.removesuffix("*"))


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


@dataclass(frozen=True)
class SecurePorts:
    """The secured pair's ports; each a setting so CI and parallel checkouts can choose."""

    internal: int = _port("SAGA_SECURE_KAFKA_PORT", 9192)  # PLAINTEXT, the broker's own
    controller: int = _port("SAGA_SECURE_KAFKA_CONTROLLER_PORT", 9193)
    sasl_ssl: int = _port("SAGA_KAFKA_SASL_SSL_PORT", 9194)
    ssl: int = _port("SAGA_KAFKA_SSL_PORT", 9195)
    redis_tls: int = _port("SAGA_REDIS_TLS_PORT", 6380)


@dataclass(frozen=True)
class Secured:
    """Where a running secured pair is, and the files a client needs."""

    home: Path
    ports: SecurePorts

    @property
    def tls(self) -> Path:
        return self.home / "tls"

    @property
    def ca(self) -> Path:
        return self.tls / "ca.crt"

    @property
    def client_cert(self) -> Path:
        return self.tls / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.tls / "client.key"

    def secret_file(self, name: str) -> Path:
        return self.home / "secrets" / name

    def secret(self, name: str) -> str:
        return self.secret_file(name).read_text().strip()

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports.sasl_ssl}"

    @property
    def ssl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports.ssl}"

    @property
    def internal_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports.internal}"

    def redis_url(self, user: str = REDIS_USER) -> str:
        """The TLS URL without a password (give it with REDIS_PASSWORD or REDIS_PASSWORD_FILE)."""
        return f"rediss://{user}@127.0.0.1:{self.ports.redis_tls}/0"

    def client_env(self) -> dict[str, str]:
        """saga-worker's settings for the SASL_SSL listener and the TLS Redis."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.sasl_bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": SCRAM,
            "KAFKA_SASL_USERNAME": KAFKA_USER,
            "KAFKA_SASL_PASSWORD_FILE": str(self.secret_file("kafka-saga")),
            "KAFKA_SSL_CAFILE": str(self.ca),
            "REDIS_URL": self.redis_url(),
            "REDIS_PASSWORD_FILE": str(self.secret_file("redis-saga")),
            "REDIS_SSL_CA_CERTS": str(self.ca),
        }


def default_home() -> Path:
    return stack.RUNTIME / "secure"


# -- certificates ------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise stack.StackError("openssl not found: install it (Debian: apt-get install openssl)")
    done = subprocess.run(  # noqa: S603 - fixed argv built here
        [openssl, *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise stack.StackError(f"openssl {args[0]} failed: {done.stderr.strip()[-300:]}")


def _new_key(directory: Path, name: str) -> None:
    """`<name>.key`: a P-256 key in PKCS#8 PEM, unencrypted (what Kafka's PEM keystore reads)."""
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", f"{name}.key", cwd=directory)  # fmt: skip


def make_ca(directory: Path, name: str = "ca", cn: str = "saga-worker devstack CA") -> Path:
    """A self-signed CA (`<name>.crt`, `<name>.key`) valid for a week; returns the cert."""
    directory.mkdir(parents=True, exist_ok=True)
    _new_key(directory, name)
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        "-days",
        "7",
        "-subj",
        f"/CN={cn}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )
    return directory / f"{name}.crt"


def issue(directory: Path, name: str, cn: str, *, server: bool, ca: str = "ca") -> None:
    """`<name>.key` (PKCS#8, unencrypted) and `<name>.crt` signed by the CA `ca`."""
    _new_key(directory, name)
    _openssl(
        "req",
        "-new",
        "-key",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        f"/CN={cn}",
        cwd=directory,
    )
    usage = "serverAuth" if server else "clientAuth"
    ext = [f"extendedKeyUsage={usage}"]
    if server:
        ext.append("subjectAltName=IP:127.0.0.1,DNS:localhost")
    (directory / f"{name}.ext").write_text("\n".join(ext) + "\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-out",
        f"{name}.crt",
        "-days",
        "7",
        "-extfile",
        f"{name}.ext",
        cwd=directory,
    )


def make_certificates(tls: Path) -> None:
    make_ca(tls)
    issue(tls, "server", "localhost", server=True)
    issue(tls, "client", CLIENT_CN, server=False)
    # Kafka's PEM keystore: the private key and its certificate in one file.
    (tls / "server.pem").write_text(
        (tls / "server.key").read_text() + (tls / "server.crt").read_text()
    )


# -- kafka -------------------------------------------------------------------


def kafka_properties(secured: Secured, data: Path) -> str:
    p, tls = secured.ports, secured.tls
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{p.controller}",
        "listeners": (
            f"PLAINTEXT://127.0.0.1:{p.internal},CONTROLLER://127.0.0.1:{p.controller},"
            f"SASL_SSL://127.0.0.1:{p.sasl_ssl},SSL://127.0.0.1:{p.ssl}"
        ),
        "advertised.listeners": (
            f"PLAINTEXT://127.0.0.1:{p.internal},SASL_SSL://127.0.0.1:{p.sasl_ssl},"
            f"SSL://127.0.0.1:{p.ssl}"
        ),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": (
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL"
        ),
        "sasl.enabled.mechanisms": SCRAM,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(tls / "server.pem"),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(tls / "ca.crt"),
        "listener.name.ssl.ssl.client.auth": "required",
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]*).*$/$1/,DEFAULT",
        # Authorization on, open to everyone but what an ACL denies: tests deny on purpose.
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "true",
        "super.users": f"User:ANONYMOUS;User:{KAFKA_ADMIN}",
        "log.dirs": str(data),
        **stack.ONE_NODE,
        "num.io.threads": "2",
        "num.network.threads": "2",
    }
    return "".join(f"{k}={v}\n" for k, v in settings.items())


def _jvm(home: Path) -> list[str]:
    libs = stack.kafka_libs()
    heap = os.environ.get("SAGA_SECURE_KAFKA_HEAP", "384m")
    return [
        shutil.which("java") or "java",
        f"-Xms{heap}",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={stack.DEVSTACK / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={home}",
        "-cp",
        f"{libs}/*",
    ]


def start_kafka(secured: Secured) -> bool:
    home = secured.home / "kafka"
    pidfile, log = home / "kafka.pid", home / "kafka.log"
    if stack.read_pid(pidfile) is not None:
        return False
    p = secured.ports
    for port, what in (
        (p.internal, "secured Kafka"),
        (p.controller, "its controller"),
        (p.sasl_ssl, "its SASL_SSL listener"),
        (p.ssl, "its SSL listener"),
    ):
        stack.require_port_free(port, what)
    jvm = _jvm(home)
    # Users exist only in a fresh storage (--add-scram): start from an empty one each time.
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    props = home / "server.properties"
    props.write_text(kafka_properties(secured, home / "data"))
    scram = [
        arg
        for user in (KAFKA_USER, KAFKA_ADMIN)
        for arg in (
            "--add-scram",
            f"{SCRAM}=[name={user},password={secured.secret(f'kafka-{user}')}]",
        )
    ]
    fmt = subprocess.run(  # noqa: S603
        [
            *jvm,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={stack._cluster_id(home)}",
            "-c",
            str(props),
            *scram,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if fmt.returncode != 0:
        raise stack.StackError(f"formatting secured Kafka failed: {fmt.stderr.strip()[-300:]}")
    stack.spawn([*jvm, "kafka.Kafka", str(props)], log, pidfile)
    stack.wait_until(
        lambda: (
            stack.kafka_ready(secured.internal_bootstrap)
            and stack.port_open(p.sasl_ssl)
            and stack.port_open(p.ssl)
        ),
        "secured Kafka",
        log,
        pidfile,
    )
    return True


# -- redis -------------------------------------------------------------------


def redis_tls_ready(secured: Secured) -> bool:
    context = ssl.create_default_context(cafile=str(secured.ca))
    password = secured.secret("redis-default")
    try:
        raw = socket.create_connection(("127.0.0.1", secured.ports.redis_tls), timeout=1)
        with raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(f"AUTH default {password}\r\nPING\r\n".encode())
            answer = b""
            while answer.count(b"\r\n") < 2:
                chunk = sock.recv(64)
                if not chunk:
                    return False
                answer += chunk
            return answer.endswith(b"+PONG\r\n")
    except OSError:
        return False


def start_redis(secured: Secured) -> bool:
    home = secured.home / "redis"
    pidfile, log = home / "redis.pid", home / "redis.log"
    if stack.read_pid(pidfile) is not None:
        return False
    binary = stack.redis_binary()
    stack.require_port_free(secured.ports.redis_tls, "secured Redis")
    home.mkdir(parents=True, exist_ok=True)
    acl = home / "users.acl"
    acl.write_text(
        f"user default on >{secured.secret('redis-default')} ~* &* +@all\n"
        f"user {redis_acl(REDIS_USER, secured.secret('redis-saga'))}\n"
    )
    acl.chmod(0o600)
    tls = secured.tls
    stack.spawn(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--tls-port",
            str(secured.ports.redis_tls),
            "--tls-cert-file",
            str(tls / "server.crt"),
            "--tls-key-file",
            str(tls / "server.key"),
            "--tls-ca-cert-file",
            str(tls / "ca.crt"),
            "--tls-auth-clients",
            "optional",
            "--aclfile",
            str(acl),
            "--dir",
            str(home),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ],
        log,
        pidfile,
    )
    stack.wait_until(lambda: redis_tls_ready(secured), "secured Redis", log, pidfile)
    return True


# -- commands ----------------------------------------------------------------


def prepare(home: Path, ports: SecurePorts) -> Secured:
    """Fresh certificates and passwords, unless the pair already runs with them."""
    secured = Secured(home, ports)
    running = any(stack.read_pid(home / n / f"{n}.pid") is not None for n in ("kafka", "redis"))
    if running and (secured.tls / "server.pem").exists():
        return secured
    shutil.rmtree(secured.tls, ignore_errors=True)
    make_certificates(secured.tls)
    folder = home / "secrets"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    for name in ("kafka-saga", "kafka-admin", "redis-default", "redis-saga"):
        path = folder / name
        path.write_text(secrets.token_urlsafe(18) + "\n")
        path.chmod(0o600)
    env = home / "client.env"
    env.write_text("".join(f"{k}={v}\n" for k, v in secured.client_env().items()))
    return secured


def up(home: Path | None = None, ports: SecurePorts | None = None) -> tuple[Secured, list[str]]:
    """Starts the secured pair unless it runs; returns it and the names this call started."""
    secured = prepare(home or default_home(), ports or SecurePorts())
    started = []
    if start_redis(secured):
        started.append("redis")
    try:
        if start_kafka(secured):
            started.append("kafka")
    except stack.StackError:
        down(secured.home, started)
        raise
    return secured, started


def down(home: Path | None = None, names: tuple[str, ...] | list[str] = ("kafka", "redis")) -> None:
    base = home or default_home()
    for name in names:
        stack.stop_pid(base / name / f"{name}.pid", f"secured {name}")


def enabled() -> bool:
    return os.environ.get("SAGA_DEVSTACK_SECURE", "") not in ("", "0", "false", "no")
