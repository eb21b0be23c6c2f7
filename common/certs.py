"""`o16n admin certs`: self-signed certificates for HTTPS and web node <-> compute node mutual TLS.

Writes into one directory: `ca.pem`/`ca-key.pem` (a private CA), `computenode.pem`/`-key.pem`
(gRPC server), `webnode-client.pem`/`-key.pem` (the client certificate web nodes present to
compute nodes) and `webnode.pem`/`-key.pem` (HTTPS). Every certificate is signed by the CA
and names the given hosts (plus localhost and 127.0.0.1) as subject alternative names.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("localhost", "127.0.0.1")
FILES = ("ca", "computenode", "webnode-client", "webnode")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "o16n"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _write(directory: Path, stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    key_path = directory / f"{stem}-key.pem"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def generate(directory: Path, hosts: list[str], days: int = 825) -> list[Path]:
    """Create the CA and the three certificates; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    all_hosts = list(dict.fromkeys([*hosts, *DEFAULT_HOSTS]))
    now = dt.datetime.now(dt.UTC)
    ca_key = _key()
    ca_name = _name("o16n private CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write(directory, "ca", ca_key, ca)
    usages = {
        "computenode": [ExtendedKeyUsageOID.SERVER_AUTH],
        "webnode-client": [ExtendedKeyUsageOID.CLIENT_AUTH],
        "webnode": [ExtendedKeyUsageOID.SERVER_AUTH],
    }
    for stem, usage in usages.items():
        key = _key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"o16n {stem}"))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
            .add_extension(_san(all_hosts), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write(directory, stem, key, cert)
    return sorted(directory.glob("*.pem"))
