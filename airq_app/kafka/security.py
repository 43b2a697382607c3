"""How airq's Kafka clients authenticate and encrypt, and how many copies of each topic it asks for.

Production clusters speak TLS and SASL and lose brokers; a worker has to open every client (admin, producer,
consumer, Faust's own) with the same settings, refuse settings that cannot work before it connects, and say in one
line why a connection failed. The password comes only from the environment and never appears in a repr, a status
page or an error message.
"""

from __future__ import annotations

import asyncio
import errno
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})


class KafkaConfigError(ValueError):
    """A Kafka setting that cannot work; the message names the setting and the problem in one line."""


def _no_passphrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key and hang a worker.
    return b""


@dataclass(frozen=True)
class KafkaSecurity:
    """Security settings shared by every Kafka client airq opens; validated when built.

    `airq_app.settings` declares the settings and builds it from them; `sources` names, for the error messages,
    the variable or pipeline.json key each value came from (or would come from)."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    _ssl_context: ssl.SSLContext | None = field(default=None, init=False, repr=False, compare=False)

    def _name(self, setting: str) -> str:
        return self.sources.get(setting, setting)

    def __post_init__(self) -> None:
        protocol = (self.protocol or "PLAINTEXT").strip().upper().replace("-", "_")
        if protocol not in PROTOCOLS:
            raise KafkaConfigError(f"{self._name('protocol')}: {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        object.__setattr__(self, "protocol", protocol)
        if self.mechanism is not None:
            mechanism = self.mechanism.strip().upper().replace("_", "-")
            if mechanism not in MECHANISMS:
                raise KafkaConfigError(
                    f"{self._name('mechanism')}: {self.mechanism!r} is not one of {', '.join(MECHANISMS)}"
                )
            object.__setattr__(self, "mechanism", mechanism)
        self._check_sasl()
        self._check_tls()

    def _check_sasl(self) -> None:
        proto = self._name("protocol")
        if self.sasl:
            if self.mechanism is None:
                raise KafkaConfigError(
                    f"{proto}={self.protocol} needs {self._name('mechanism')}: one of {', '.join(MECHANISMS)}"
                )
            missing = [self._name(n) for n in ("username", "password") if not getattr(self, n)]
            if missing:
                raise KafkaConfigError(f"{proto}={self.protocol} needs {' and '.join(missing)}")
            return
        stray = [self._name(n) for n in ("mechanism", "username", "password") if getattr(self, n)]
        if stray:
            raise KafkaConfigError(
                f"{', '.join(stray)} {'is' if len(stray) == 1 else 'are'} set but {proto}={self.protocol} does not"
                f" use SASL: set it to SASL_SSL (or SASL_PLAINTEXT)"
            )

    def _check_tls(self) -> None:
        files = [n for n in ("ca_file", "cert_file", "key_file") if getattr(self, n)]
        if not self.tls:
            if files:
                raise KafkaConfigError(
                    f"{', '.join(self._name(n) for n in files)} set but {self._name('protocol')}={self.protocol}"
                    f" does not use TLS: set it to SSL or SASL_SSL"
                )
            return
        if self.key_file and not self.cert_file:
            raise KafkaConfigError(f"{self._name('key_file')} is set without {self._name('cert_file')}")
        for name in files:
            self._check_readable(name)
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        except ssl.SSLError as exc:
            raise KafkaConfigError(
                f"{self._name('ca_file')}: {self.ca_file} holds no PEM CA certificate ({exc.reason})"
            ) from None
        if self.cert_file:
            try:
                context.load_cert_chain(self.cert_file, self.key_file, password=_no_passphrase)
            except ssl.SSLError as exc:
                what = f"{self._name('cert_file')}: {self.cert_file}"
                if self.key_file:
                    what += f" with {self._name('key_file')}: {self.key_file}"
                raise KafkaConfigError(
                    f"{what}: not a PEM certificate and matching unencrypted key ({exc.reason or exc})"
                ) from None
        object.__setattr__(self, "_ssl_context", context)

    def _check_readable(self, name: str) -> None:
        path = getattr(self, name)
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as exc:
            raise KafkaConfigError(f"{self._name(name)}: {path} cannot be read ({exc.strerror or exc})") from None

    @property
    def tls(self) -> bool:
        return self.protocol in TLS_PROTOCOLS

    @property
    def sasl(self) -> bool:
        return self.protocol in SASL_PROTOCOLS

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """One TLS context for all clients: the CA file's CAs (or the system's), the client certificate if any."""
        return self._ssl_context

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaClient, AIOKafkaAdminClient, AIOKafkaProducer and AIOKafkaConsumer."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            kwargs["ssl_context"] = self._ssl_context
        if self.sasl:
            kwargs["sasl_mechanism"] = self.mechanism
            kwargs["sasl_plain_username"] = self.username
            kwargs["sasl_plain_password"] = self.password
        return kwargs

    def faust_credentials(self) -> Any:
        """The `broker_credentials` value for faust.App (None for PLAINTEXT).

        Faust's aiokafka driver turns SASLCredentials into security_protocol (SASL_SSL when an ssl_context is
        given, else SASL_PLAINTEXT), sasl_mechanism (SCRAM-SHA-256/512 included), sasl_plain_username/password and
        ssl_context for its consumer, producers and the client that creates topics.
        """
        import faust

        if self.protocol == "PLAINTEXT":
            return None
        if self.protocol == "SSL":
            return faust.SSLCredentials(self._ssl_context)
        return faust.SASLCredentials(
            username=self.username,
            password=self.password,
            ssl_context=self._ssl_context if self.tls else None,
            mechanism=self.mechanism,
        )

    def public(self) -> dict[str, Any]:
        """What a status page may show: no password, and only whether certificate files are set."""
        return {
            "security_protocol": self.protocol,
            "sasl_mechanism": self.mechanism,
            "username": self.username,
            "ca_file": self.ca_file is not None,
            "client_certificate": self.cert_file is not None,
        }

    def redact(self, text: str) -> str:
        """`text` with the password, should it appear, replaced by ***."""
        return text.replace(self.password, "***") if self.password else text


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _describe_one(exc: BaseException, security: KafkaSecurity) -> str | None:
    from aiokafka import errors as kafka_errors

    user = security.username or "?"
    if isinstance(exc, kafka_errors.SaslAuthenticationFailed | kafka_errors.AuthenticationFailedError):
        return f"Kafka authentication failed for user {user} ({security.mechanism})"
    if isinstance(exc, kafka_errors.UnsupportedSaslMechanismError):
        return f"Kafka broker does not accept SASL mechanism {security.mechanism} for user {user}: {exc}"
    if isinstance(exc, kafka_errors.IllegalSaslStateError):
        return f"Kafka SASL handshake failed for user {user} ({security.mechanism}): {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or "verification failed"
        if exc.verify_code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
            return f"Kafka TLS handshake failed: certificate does not match the broker's address ({reason})"
        hint = "" if security.ca_file else "; set AIRQ_KAFKA_CA_FILE to the CA that signed the broker's certificate"
        return f"Kafka TLS handshake failed: certificate not trusted ({reason}){hint}"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"):
            return f"Kafka TLS handshake failed: the broker does not speak TLS here (a plaintext port?) ({reason})"
        if "CERTIFICATE" in reason and "ALERT" in reason:
            return (
                "Kafka broker rejected the TLS connection: it requires a client certificate it trusts"
                f" (AIRQ_KAFKA_CERT_FILE, AIRQ_KAFKA_KEY_FILE) ({reason})"
            )
        return f"Kafka TLS handshake failed: {reason}"
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
        return f"Kafka broker refused the connection (not running, or a wrong host or port?): {exc}"
    if isinstance(exc, ConnectionResetError):
        if security.tls:
            return "Kafka broker reset the connection during the TLS handshake (a TLS client on a plaintext port?)"
        return "Kafka broker reset the connection"
    if isinstance(exc, kafka_errors.IncompatibleBrokerVersion):
        return f"Kafka server does not answer client requests (a controller port?): {exc}"
    if isinstance(exc, kafka_errors.KafkaConnectionError) and "closed" in str(exc):
        if not security.tls:
            return f"Kafka broker closed the connection (a plaintext client on a TLS port?): {exc}"
        if not security.sasl:
            return f"Kafka broker closed the connection (a port that needs SASL, i.e. SASL_SSL?): {exc}"
        return f"Kafka broker closed the connection: {exc}"
    if isinstance(exc, TimeoutError | kafka_errors.KafkaTimeoutError | kafka_errors.RequestTimedOutError):
        hint = "" if security.tls else " (a plaintext client on a TLS port?)"
        return f"Kafka broker did not answer in time{hint}"
    if isinstance(exc, kafka_errors.KafkaConnectionError) and "Unable to bootstrap" in str(exc):
        servers = ",".join(f"{host}:{port}" for host, port in re.findall(r"\('([^']*)', (\d+)", str(exc)))
        return f"Kafka bootstrap failed: no broker at {servers or '?'} accepted a {security.protocol} connection"
    return None


def describe_kafka_error(exc: BaseException, security: KafkaSecurity) -> str:
    """One line naming why a Kafka connection failed; never contains the password.

    The innermost cause that says more wins: a "connection closed" caused by a TLS alert is about the alert.
    aiokafka's clients raise only "Unable to bootstrap" (the cause goes to its log); connection_error() finds it.
    """
    for link in reversed(_chain(exc)):
        line = _describe_one(link, security)
        if line:
            return security.redact(line)
    return security.redact(f"Kafka error: {type(exc).__name__}: {exc}")


def bootstrap_servers(bootstrap: str) -> list[tuple[str, int]]:
    """(host, port) pairs of `kafka://h1:9092,h2:9092` (also `;`-separated, with or without the scheme)."""
    servers = []
    for item in bootstrap.replace(";", ",").split(","):
        item = item.strip().split("://", 1)[-1].rstrip("/")
        if not item:
            continue
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            host, port = item, "9092"
        servers.append((host.strip("[]"), int(port)))
    return servers


async def connection_error(bootstrap: str, security: KafkaSecurity, timeout: float = 10.0) -> BaseException | None:
    """None when a bootstrap server accepts a connection with `security`, else the first server's real error.

    aiokafka's clients only say "Unable to bootstrap" and log the cause; this opens one connection (TCP, TLS,
    version lookup, SASL) to each server in turn so that describe_kafka_error() can name the cause.
    """
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    first: BaseException | None = None
    for host, port in bootstrap_servers(bootstrap):
        try:
            conn = await asyncio.wait_for(
                create_conn(host, port, request_timeout_ms=int(timeout * 1000), **security.aiokafka_kwargs()),
                timeout,
            )
        except Exception as exc:  # every failure (OSError, TLS, SASL, timeout) is an answer here
            first = first or exc
            continue
        try:
            # A listener that wants SASL, or a controller port, refuses only the first real request.
            await asyncio.wait_for(conn.send(MetadataRequest([])), timeout)
        except Exception as exc:
            first = first or exc
            continue
        finally:
            conn.close()
        return None
    return first


def replication_plan(brokers: int, configured: int | None, min_insync: int | None) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for the topics airq creates.

    Three copies survive one broker failure with writes still accepted at min.insync.replicas=2; a smaller
    cluster gets as many copies as it has brokers. Explicit values are checked against the cluster.
    """
    if brokers < 1:
        raise KafkaConfigError(f"the Kafka cluster reports {brokers} brokers")
    if configured is None:
        rf = min(3, brokers)
    elif configured < 1:
        raise KafkaConfigError(f"AIRQ_KAFKA_REPLICATION_FACTOR: {configured} is less than 1")
    elif configured > brokers:
        raise KafkaConfigError(
            f"AIRQ_KAFKA_REPLICATION_FACTOR: {configured} copies need {configured} brokers, the cluster has {brokers}"
        )
    else:
        rf = configured
    if min_insync is None:
        return rf, min(2, rf)
    if min_insync < 1:
        raise KafkaConfigError(f"min.insync.replicas: {min_insync} is less than 1")
    if min_insync > rf:
        raise KafkaConfigError(
            f"min.insync.replicas: {min_insync} is more than the replication factor {rf}: every write would fail"
        )
    return rf, min_insync
