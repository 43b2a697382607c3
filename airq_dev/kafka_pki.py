"""A throw-away certificate authority for TLS tests against a real broker, made with `openssl` and `keytool`.

Clients must verify the broker's certificate for real (chain and address), so the test broker gets one signed by
a CA of its own, valid for 127.0.0.1 and localhost, in the PKCS12 key and trust stores a Java broker reads.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from airq_dev.kafka_node import BrokerError

DAYS = "825"


def _run(cmd: list[str]) -> None:
    if not shutil.which(cmd[0]):
        raise BrokerError(f"{cmd[0]} not found: install it (it makes the test certificates)")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BrokerError(f"{cmd[0]} {cmd[1]} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")


def make_ca(directory: Path, name: str = "ca") -> tuple[Path, Path]:
    """A self-signed CA: (`name`.pem, `name`.key) in `directory`, made once."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    if not (cert.exists() and key.exists()):
        _run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
            + ["-days", DAYS, "-subj", f"/CN=airq test {name}"]
            + ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
        )
        key.chmod(0o600)
    return cert, key


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    broker_cert: Path
    broker_key: Path
    broker_keystore: Path
    truststore: Path
    client_cert: Path
    client_key: Path


def _sign(directory: Path, name: str, ca: tuple[Path, Path], common_name: str, extensions: str) -> tuple[Path, Path]:
    cert, key, csr, ext = (directory / f"{name}.{s}" for s in ("pem", "key", "csr", "ext"))
    if cert.exists() and key.exists():
        return cert, key
    _run(
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr)]
        + ["-subj", f"/CN={common_name}"]
    )
    key.chmod(0o600)
    ext.write_text(extensions)
    _run(
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial"]
        + ["-out", str(cert), "-days", DAYS, "-sha256", "-extfile", str(ext)]
    )
    csr.unlink()
    ext.unlink()
    return cert, key


BROKER_EXTENSIONS = """basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
"""

CLIENT_EXTENSIONS = """basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
"""


def make_pki(directory: Path, store_password: str) -> Pki:
    """CA, broker certificate (SAN IP:127.0.0.1, DNS:localhost) with PKCS12 key and trust stores, client pair."""
    ca = make_ca(directory)
    broker_cert, broker_key = _sign(directory, "broker", ca, "localhost", BROKER_EXTENSIONS)
    client_cert, client_key = _sign(directory, "client", ca, "airq-client", CLIENT_EXTENSIONS)
    keystore, truststore = directory / "broker.p12", directory / "truststore.p12"
    if not keystore.exists():
        _run(
            ["openssl", "pkcs12", "-export", "-in", str(broker_cert), "-inkey", str(broker_key)]
            + ["-certfile", str(ca[0]), "-name", "broker", "-out", str(keystore), "-passout", f"pass:{store_password}"]
        )
    if not truststore.exists():
        _run(
            ["keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", str(ca[0]), "-keystore", str(truststore)]
            + ["-storetype", "PKCS12", "-storepass", store_password]
        )
    return Pki(ca[0], broker_cert, broker_key, keystore, truststore, client_cert, client_key)
