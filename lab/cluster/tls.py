"""Per-lab TLS: a CA and a server certificate for the load balancer (the guide's self-signed
choice), or the user's own certificate and key (the guide's other choice)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from lab.core.errors import BadInput


def generate(lab: str, hostnames: tuple[str, ...] = ("localhost", "lb")) -> tuple[bytes, bytes, bytes, bytes]:
    """Return (ca_cert_pem, ca_key_pem, server_cert_pem, server_key_pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ha-lab {lab} CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ha-lab {lab} load balancer")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    nokey = serialization.NoEncryption()
    pkcs8 = serialization.PrivateFormat.PKCS8
    return (
        ca.public_bytes(pem),
        ca_key.private_bytes(pem, pkcs8, nokey),
        cert.public_bytes(pem),
        key.private_bytes(pem, pkcs8, nokey),
    )


def load_provided(cert: str, key: str) -> tuple[bytes, bytes]:
    """Read and sanity-check a user-supplied certificate and key (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert_pem, key_pem = Path(cert).read_bytes(), Path(key).read_bytes()
    except OSError as exc:
        raise BadInput(f"--tls-cert/--tls-key: cannot read {exc.filename}: {exc.strerror}") from exc
    try:
        parsed = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise BadInput(f"--tls-cert: {cert} is not a PEM certificate") from exc
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise BadInput(f"--tls-key: {key} is not an unencrypted PEM private key") from exc
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if parsed.public_key().public_bytes(*spki) != private.public_key().public_bytes(*spki):
        raise BadInput(f"--tls-key: {key} does not belong to the certificate {cert}")
    return cert_pem, key_pem
