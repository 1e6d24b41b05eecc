"""SSRF guard for every URL the service calls on a client's behalf (webhooks, fetched inputs).

Rules (``EgressPolicy``):

- scheme ``https`` only; ``http`` only when ``allow_http`` (development and tests);
- no credentials in the URL; a host name is required;
- the host is resolved once and *every* resolved address must be public: loopback, private
  (RFC 1918), shared/CGNAT, link-local (incl. the cloud metadata address 169.254.169.254),
  unique-local ``fc00::/7``, site-local ``fec0::/10``, IPv4-mapped/compatible/NAT64/6to4 wrappers
  of such addresses,
  unspecified, multicast, reserved and documentation ranges are refused unless ``allow_private``;
- the connection goes to the address that was checked (``PinnedTransport`` rewrites the request
  to the IP and keeps ``Host`` and TLS SNI/certificate checks on the original name), so a DNS
  answer that changes between check and connect (rebinding) cannot redirect the call;
- redirects are never followed; responses are read up to ``max_response_bytes`` within
  ``timeout_s``.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from app.core.errors import FieldError, InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIXTOFOUR = ipaddress.ip_network("2002::/16")
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_ULA = ipaddress.ip_network("fc00::/7")
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")  # deprecated (RFC 3879) but still routed internally


class SSRFError(InvalidInput):
    """A URL the service was asked to call is not allowed (→ 400); ``reason`` is client-safe text."""

    def __init__(self, reason: str, *, field: str = "webhook_url") -> None:
        super().__init__(f"{field}: {reason}", errors=[FieldError(field, reason)])
        self.reason = reason
        self.field_name = field


@dataclass(frozen=True)
class EgressPolicy:
    allow_http: bool = False
    allow_private: bool = False
    timeout_s: float = 15.0
    max_response_bytes: int = 64 * 1024
    max_url_length: int = 2048


@dataclass(frozen=True)
class CheckedTarget:
    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...] = field(default=())


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        addr = str(info[4][0]).split("%", 1)[0]
        if addr not in seen:
            seen.append(addr)
    return seen


def classify_address(ip: IPAddress) -> str | None:
    """Why this address is not a public unicast destination, or None if it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        if mapped is not None:
            inner = classify_address(mapped)
            return f"IPv4-mapped {inner}" if inner else None
        if ip in _NAT64 or ip in _SIXTOFOUR:
            embedded = (
                ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
                if ip in _NAT64
                else ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)
            )
            inner = classify_address(embedded)
            return f"translated {inner}" if inner else None
        if int(ip) >> 32 == 0 and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
            inner = classify_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
            return f"IPv4-compatible {inner}" if inner else "IPv4-compatible address"
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_loopback:
        return "loopback address"
    if ip.is_link_local:
        return "link-local address"
    if ip.is_multicast:
        return "multicast address"
    if isinstance(ip, ipaddress.IPv6Address) and ip in _ULA:
        return "unique-local address"
    if isinstance(ip, ipaddress.IPv6Address) and ip in _SITE_LOCAL:
        return "site-local address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "shared (carrier-grade NAT) address"
    if ip.is_reserved:
        return "reserved address"
    if ip.is_private:
        return "private address"
    if not ip.is_global:
        return "non-public address"
    return None


def _parse(url: str, policy: EgressPolicy, field_name: str) -> tuple[str, str, int]:
    if len(url) > policy.max_url_length:
        raise SSRFError("URL is too long", field=field_name)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SSRFError("URL is malformed", field=field_name) from exc
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise SSRFError("URL scheme must be https", field=field_name)
    if scheme == "http" and not policy.allow_http:
        raise SSRFError("URL scheme must be https (http is disabled)", field=field_name)
    if parts.username is not None or parts.password is not None:
        raise SSRFError("URL must not contain credentials", field=field_name)
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise SSRFError("URL has no host", field=field_name)
    return scheme, host, port or (443 if scheme == "https" else 80)


def check_url(
    url: str,
    policy: EgressPolicy,
    *,
    resolver: Resolver = system_resolver,
    field_name: str = "webhook_url",
) -> CheckedTarget:
    """Validate ``url`` and resolve its host; raise ``SSRFError`` if any address is refused."""
    scheme, host, port = _parse(url, policy, field_name)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise SSRFError(f"host {host!r} does not resolve", field=field_name) from exc
        if not addresses:
            raise SSRFError(f"host {host!r} does not resolve", field=field_name)
    if not policy.allow_private:
        for raw in addresses:
            try:
                ip = ipaddress.ip_address(raw)
            except ValueError as exc:
                raise SSRFError(f"host {host!r} resolved to an invalid address", field=field_name) from exc
            reason = classify_address(ip)
            if reason is not None:
                raise SSRFError(f"URL resolves to a {reason} ({ip}), which is not allowed", field=field_name)
    return CheckedTarget(url=url, scheme=scheme, host=host, port=port, addresses=tuple(addresses))


class PinnedTransport(httpx.BaseTransport):
    """Checks each request's URL, then connects to the checked IP, keeping Host and SNI."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        resolver: Resolver = system_resolver,
        inner: httpx.BaseTransport | None = None,
    ) -> None:
        self.policy = policy
        self.resolver = resolver
        self.inner = inner or httpx.HTTPTransport(retries=0)
        self.last_target: CheckedTarget | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = check_url(str(request.url), self.policy, resolver=self.resolver)
        self.last_target = target
        ip = ipaddress.ip_address(target.addresses[0])
        ip_host = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else str(ip)
        if "host" not in request.headers:
            request.headers["Host"] = request.url.netloc.decode("ascii")
        if target.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": target.host}
        request.url = request.url.copy_with(host=ip_host.strip("[]"))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@dataclass(frozen=True)
class SafeResponse:
    status_code: int
    headers: Mapping[str, str]
    body: bytes
    truncated: bool
    elapsed_s: float


def safe_request(
    method: str,
    url: str,
    policy: EgressPolicy,
    *,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    resolver: Resolver = system_resolver,
) -> SafeResponse:
    """One guarded HTTP call: checked and pinned address, no redirects, capped time and size.

    Raises ``SSRFError`` for a refused URL and ``httpx.HTTPError`` (e.g. ``TimeoutException``)
    for transport failures.
    """
    transport = PinnedTransport(policy, resolver=resolver)
    timeout = httpx.Timeout(policy.timeout_s)
    started = time.monotonic()
    with (
        httpx.Client(transport=transport, follow_redirects=False, timeout=timeout, trust_env=False) as client,
        client.stream(method, url, headers=dict(headers or {}), content=content) as resp,
    ):
        chunks: list[bytes] = []
        total = 0
        truncated = False
        for chunk in resp.iter_raw():
            if time.monotonic() - started > policy.timeout_s:
                raise httpx.ReadTimeout("response exceeded the total time cap")
            room = policy.max_response_bytes - total
            if len(chunk) > room:
                chunks.append(chunk[:room])
                truncated = True
                break
            chunks.append(chunk)
            total += len(chunk)
        return SafeResponse(
            status_code=resp.status_code,
            headers=dict(resp.headers),
            body=b"".join(chunks),
            truncated=truncated,
            elapsed_s=time.monotonic() - started,
        )
