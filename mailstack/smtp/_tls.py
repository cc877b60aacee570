"""The STARTTLS certificate: the configured one, or a self-signed one generated once into the data dir."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailstack.config import ConfigError, Settings

__all__ = ["SELF_SIGNED_FILE", "ensure_self_signed", "server_tls_context"]

# Key and certificate in one file, so that one atomic link publishes both (several serve processes may
# share a data directory and start together).
SELF_SIGNED_FILE = "smtp-tls.pem"
_VALID_DAYS = 3650


def _subject_names(hostname: str, listen_host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(hostname), x509.DNSName("localhost")]
    addresses = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    try:
        listen_ip = ipaddress.ip_address(listen_host)
    except ValueError:
        if listen_host and listen_host not in (hostname, "localhost"):
            names.append(x509.DNSName(listen_host))
    else:
        if not listen_ip.is_unspecified:
            addresses.add(listen_ip)
    names.extend(x509.IPAddress(a) for a in sorted(addresses, key=str))
    return names


def _self_signed_pem(hostname: str, listen_host: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.now(UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(_subject_names(hostname, listen_host)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem + cert.public_bytes(serialization.Encoding.PEM)


def ensure_self_signed(path: Path, hostname: str, listen_host: str = "") -> Path:
    """Create ``path`` (key + self-signed certificate, mode 0600) unless it exists; returns ``path``.

    The certificate names ``hostname``, ``localhost``, 127.0.0.1, ::1 and ``listen_host``. Delete the
    file to get a new one (after a change of hostname, say).
    """
    if path.exists():
        return path
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(_self_signed_pem(hostname, listen_host))
        # link() never replaces: when another process published its certificate first, we use that one.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink()
    return path


def server_tls_context(settings: Settings, listen_host: str = "") -> tuple[ssl.SSLContext, Path, bool]:
    """The STARTTLS server context: ``(context, certificate file, self_signed)``.

    Raises :class:`ConfigError` when the configured certificate or key cannot be loaded.
    """
    smtp = settings.smtp
    self_signed = not smtp.tls_cert
    if self_signed:
        cert = key = ensure_self_signed(settings.data_dir / SELF_SIGNED_FILE, settings.hostname, listen_host)
    else:
        cert, key = settings.data_dir / smtp.tls_cert, settings.data_dir / smtp.tls_key
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"smtp: cannot load the TLS certificate {cert} and key {key}: {exc}") from None
    return context, cert, self_signed
