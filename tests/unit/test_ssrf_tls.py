"""The pinned connection goes to the checked IP while TLS still verifies the certificate for the name."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.core.ssrf import EgressPolicy, PinnedTransport
from tests.sec_support import free_port


def _cert(tmp: Path) -> tuple[Path, Path, Path]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.test")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_pem, cert_pem, key_pem


@pytest.fixture()
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path, list[dict[str, Any]]]]:
    ca, cert, key = _cert(tmp_path)
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            seen.append({"host": self.headers.get("host")})
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield port, ca, seen
    server.shutdown()
    server.server_close()


def test_https_pinned_to_ip_verifies_certificate_for_the_name(
    tls_server: tuple[int, Path, list[dict[str, Any]]],
) -> None:
    port, ca, seen = tls_server
    policy = EgressPolicy(allow_private=True)
    resolver_calls: list[str] = []

    def resolver(host: str, p: int) -> list[str]:
        resolver_calls.append(host)
        return ["127.0.0.1"]

    ctx = ssl.create_default_context(cafile=str(ca))
    transport = PinnedTransport(policy, resolver=resolver, inner=httpx.HTTPTransport(verify=ctx))
    with httpx.Client(transport=transport) as client:
        r = client.post(f"https://hooks.test:{port}/hook", content=b"{}")
    assert r.status_code == 204
    assert seen == [{"host": f"hooks.test:{port}"}] and resolver_calls == ["hooks.test"]

    # a certificate for another name is refused, even though the IP is the same
    def other(host: str, p: int) -> list[str]:
        return ["127.0.0.1"]

    transport = PinnedTransport(policy, resolver=other, inner=httpx.HTTPTransport(verify=ctx))
    with httpx.Client(transport=transport) as client, pytest.raises(httpx.ConnectError):
        client.post(f"https://evil.test:{port}/hook", content=b"{}")
