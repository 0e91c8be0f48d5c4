"""Why Kafka cannot be reached, when the cause is one that waiting will not fix.

aiokafka's bootstrap logs each broker's error and raises only "Unable to bootstrap"
(its cause lost), and a broker that refuses a TLS client certificate just closes
the connection. When a worker or the CLI cannot reach Kafka, `diagnose` connects
to each bootstrap server itself and names the cause:

fatal (a ConfigurationError: one line, exit code 2; a supervisor's restart is the retry)
    - the broker's certificate is not signed by KAFKA_SSL_CAFILE (or the system CAs),
      or does not name the host: waiting changes neither;
    - the broker refuses our client certificate, or requires one we do not send;
    - SASL authentication failed (wrong user or password), or the mechanism is one
      the listener does not enable. A password rotated on the broker first is the one
      case where waiting could help; a restart after the new secret is mounted is the
      usual fix, and a wrong password retried forever would hide the mistake.

transient (None: the caller waits with backoff, as for a broker that is restarting)
    - connection refused, reset or timed out, a broker that is not ready yet.
"""

from __future__ import annotations

import asyncio
import ssl
import struct

from aiokafka.conn import create_conn
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from saga_worker.errors import ConfigurationError
from saga_worker.runtime.kafka_clients import KafkaConnection

PROBE_TIMEOUT_S = 5.0
PROBE_ATTEMPTS = 3
# TLS alerts a broker sends about our client certificate (or its absence).
CERTIFICATE_ALERTS = (
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "TLSV1_ALERT_ACCESS_DENIED",
)


def hosts(conn: KafkaConnection) -> list[tuple[str, int]]:
    found = []
    for item in conn.bootstrap_servers.split(","):
        host, _, port = item.strip().rpartition(":")
        found.append((host.strip("[]"), int(port)))
    return found


async def diagnose(conn: KafkaConnection) -> ConfigurationError | None:
    """The fatal cause why the bootstrap servers cannot be used, or None if none is seen."""
    for host, port in hosts(conn):
        cause = await _diagnose_one(conn, host, port)
        if cause is not None:
            return cause
    return None


async def _diagnose_one(conn: KafkaConnection, host: str, port: int) -> ConfigurationError | None:
    where = f"{host}:{port}"
    options = conn.options()
    options.pop("bootstrap_servers")
    try:
        connection = await asyncio.wait_for(
            create_conn(host, port, request_timeout_ms=int(PROBE_TIMEOUT_S * 1000), **options),
            PROBE_TIMEOUT_S * 2,
        )
    except ssl.SSLCertVerificationError as exc:
        return ConfigurationError(
            f"Kafka at {where}: its TLS certificate is not trusted ({exc.verify_message});"
            f" check KAFKA_SSL_CAFILE{'' if conn.ssl_cafile else ' (unset: the system CAs)'}"
        )
    except SaslAuthenticationFailed as exc:
        return ConfigurationError(
            f"Kafka at {where} refused the SASL login of user {conn.sasl_username!r}"
            f" ({conn.sasl_mechanism}): {_reason(exc)}; check KAFKA_SASL_USERNAME and"
            " KAFKA_SASL_PASSWORD"
        )
    except (UnsupportedSaslMechanismError, IllegalSaslStateError) as exc:
        return ConfigurationError(
            f"Kafka at {where} does not accept KAFKA_SASL_MECHANISM={conn.sasl_mechanism}"
            f" ({_reason(exc)})"
        )
    except ssl.SSLError as exc:
        return _certificate_refused(conn, where, exc)
    except (KafkaError, OSError, TimeoutError):
        pass  # not answering, or closed: maybe over a client certificate, looked at below
    else:
        connection.close()
    if conn.security_protocol in ("SSL", "SASL_SSL"):
        return await _tls_probe(conn, host, port)
    return None


async def _tls_probe(conn: KafkaConnection, host: str, port: int) -> ConfigurationError | None:
    """A TLS 1.3 server refuses a client certificate only after the handshake: send an
    ApiVersions request ourselves and read the alert aiokafka reports as a closed socket.

    The alert and the close race: a broker that closes every time after a good
    handshake without answering, while we send no certificate, is taken to want one."""
    for _ in range(PROBE_ATTEMPTS):
        outcome = await _ask_over_tls(conn, host, port)
        if isinstance(outcome, ConfigurationError):
            return outcome
        if outcome != "closed":
            return None
    if conn.ssl_certfile is None and conn.security_protocol == "SSL":
        return ConfigurationError(
            f"Kafka at {host}:{port} closes the connection after the TLS handshake without"
            " answering: it requires a client certificate, most likely; set"
            " KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE"
        )
    return None


async def _ask_over_tls(conn: KafkaConnection, host: str, port: int) -> ConfigurationError | str:
    """The refusal, or "closed" (no answer), "answered" or "unreachable"."""
    where = f"{host}:{port}"
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=conn.ssl_context(), server_hostname=host),
            PROBE_TIMEOUT_S,
        )
    except ssl.SSLError as exc:
        return _certificate_refused(conn, where, exc) or "unreachable"
    except (OSError, TimeoutError):
        return "unreachable"
    body = struct.pack(">hhih", 18, 0, 1, 5) + b"probe"  # ApiVersions v0, client "probe"
    try:
        writer.write(struct.pack(">i", len(body)) + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4), PROBE_TIMEOUT_S)
    except ssl.SSLError as exc:
        return _certificate_refused(conn, where, exc) or "closed"
    except (ConnectionError, EOFError):
        return "closed"
    except (OSError, TimeoutError):
        return "unreachable"
    finally:
        writer.close()
    return "answered" if answer else "closed"


def _certificate_refused(
    conn: KafkaConnection, where: str, exc: ssl.SSLError
) -> ConfigurationError | None:
    reason = exc.reason or ""
    if reason not in CERTIFICATE_ALERTS:
        return None
    if conn.ssl_certfile is None:
        return ConfigurationError(
            f"Kafka at {where} requires a client certificate ({reason}):"
            " set KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE"
        )
    return ConfigurationError(
        f"Kafka at {where} refused the client certificate {conn.ssl_certfile} ({reason}):"
        " is it signed by a CA the broker trusts?"
    )


def _reason(exc: KafkaError) -> str:
    text = str(exc).strip()
    return text.split(": ", 1)[-1] if text else type(exc).__name__
