"""SSRF guard: every refused address class, scheme rules, pinning, no redirects, size/time caps."""

from __future__ import annotations

import time

import httpx
import pytest

from app.core.ssrf import EgressPolicy, PinnedTransport, SSRFError, check_url, safe_request
from tests.sec_support import webhook_receiver

STRICT = EgressPolicy()
DEV = EgressPolicy(allow_http=True, allow_private=True, timeout_s=2.0, max_response_bytes=1024)


def fake_resolver(mapping: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in mapping:
            raise OSError("no such host")
        return mapping[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


REFUSED = {
    "loopback v4": ("127.0.0.1", "loopback"),
    "loopback other": ("127.3.4.5", "loopback"),
    "loopback v6": ("::1", "loopback"),
    "private 10/8": ("10.1.2.3", "private"),
    "private 172.16/12": ("172.20.0.1", "private"),
    "private 192.168/16": ("192.168.1.1", "private"),
    "cloud metadata": ("169.254.169.254", "link-local"),
    "link-local v6": ("fe80::1", "link-local"),
    "unique-local": ("fd12:3456::1", "unique-local"),
    "unique-local fc": ("fc00::5", "unique-local"),
    "ipv4-mapped loopback": ("::ffff:127.0.0.1", "IPv4-mapped"),
    "ipv4-mapped metadata": ("::ffff:169.254.169.254", "IPv4-mapped"),
    "ipv4-mapped private": ("::ffff:10.0.0.1", "IPv4-mapped"),
    "nat64 private": ("64:ff9b::a00:1", "translated"),
    "6to4 private": ("2002:c0a8:101::1", "translated"),
    "ipv4-compatible": ("::7f00:1", "IPv4-compatible"),
    "unspecified v4": ("0.0.0.0", "unspecified"),
    "unspecified v6": ("::", "unspecified"),
    "multicast v4": ("224.0.0.1", "multicast"),
    "multicast v6": ("ff02::1", "multicast"),
    "reserved 240/4": ("240.0.0.1", "reserved"),
    "broadcast": ("255.255.255.255", ""),
    "cgnat": ("100.64.0.1", "shared"),
    "documentation": ("192.0.2.10", ""),
}


@pytest.mark.parametrize("addr,reason", list(REFUSED.values()), ids=list(REFUSED))
def test_each_address_class_refused_as_literal_and_by_dns(addr: str, reason: str) -> None:
    host = f"[{addr}]" if ":" in addr else addr
    with pytest.raises(SSRFError) as info:
        check_url(f"https://{host}/hook", STRICT)
    assert reason in info.value.reason
    assert info.value.status == 400 and info.value.errors[0].field == "webhook_url"
    resolver = fake_resolver({"evil.example": [addr]})
    with pytest.raises(SSRFError):
        check_url("https://evil.example/hook", STRICT, resolver=resolver)
    # explicitly allowed by settings
    check_url(f"https://{host}/hook", EgressPolicy(allow_private=True))


def test_public_addresses_pass() -> None:
    resolver = fake_resolver(
        {"hooks.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]}
    )
    target = check_url("https://hooks.example.com:8443/x", STRICT, resolver=resolver)
    assert target.port == 8443 and target.addresses[0] == "93.184.215.14"
    check_url("https://8.8.8.8/", STRICT)
    check_url("https://[2001:4860:4860::8888]/", STRICT)


def test_any_private_answer_refuses_the_host() -> None:
    resolver = fake_resolver({"mixed.example": ["93.184.215.14", "10.0.0.7"]})
    with pytest.raises(SSRFError, match="private"):
        check_url("https://mixed.example/", STRICT, resolver=resolver)


@pytest.mark.parametrize(
    "url,reason",
    [
        ("http://8.8.8.8/", "https"),
        ("ftp://8.8.8.8/", "https"),
        ("file:///etc/passwd", "https"),
        ("gopher://8.8.8.8/", "https"),
        ("https://user:pw@8.8.8.8/", "credentials"),
        ("https:///nohost", "host"),
        ("https://8.8.8.8:99999/", "malformed"),
        ("https://unresolvable.invalid/", "resolve"),
        ("https://8.8.8.8/" + "a" * 3000, "too long"),
    ],
)
def test_scheme_and_shape_rules(url: str, reason: str) -> None:
    with pytest.raises(SSRFError) as info:
        check_url(url, STRICT, resolver=fake_resolver({}))
    assert reason in info.value.reason


def test_http_only_when_allowed() -> None:
    check_url("http://8.8.8.8/", EgressPolicy(allow_http=True))


def test_pinned_connection_keeps_host_and_resolves_once() -> None:
    with webhook_receiver() as rec:
        port = rec.url.split(":")[2].split("/")[0]
        resolver = fake_resolver({"hooks.test": ["127.0.0.1"]})
        resp = safe_request("POST", f"http://hooks.test:{port}/hook", DEV, content=b"{}", resolver=resolver)
        assert resp.status_code == 200
        assert rec.requests[0].headers["host"] == f"hooks.test:{port}"
        assert resolver.calls == ["hooks.test"]  # type: ignore[attr-defined]


def test_dns_rebinding_cannot_move_the_connection() -> None:
    # The check sees a refused address and stops, before any connection is attempted.
    answers = iter([["10.9.9.9"], ["127.0.0.1"]])

    def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    transport = PinnedTransport(EgressPolicy(allow_http=True), resolver=rebinding)
    with httpx.Client(transport=transport) as client, pytest.raises(SSRFError):
        client.get("http://rebind.test/")


def test_https_request_sets_sni_to_the_original_name() -> None:
    seen: dict[str, object] = {}

    class Capture(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            seen["url"] = str(request.url)
            seen["host"] = request.headers["host"]
            seen["sni"] = request.extensions.get("sni_hostname")
            return httpx.Response(204)

    transport = PinnedTransport(
        STRICT, resolver=fake_resolver({"hooks.example.com": ["93.184.215.14"]}), inner=Capture()
    )
    with httpx.Client(transport=transport) as client:
        assert client.post("https://hooks.example.com/a?b=1").status_code == 204
    assert seen == {
        "url": "https://93.184.215.14/a?b=1",
        "host": "hooks.example.com",
        "sni": "hooks.example.com",
    }


def test_redirects_not_followed_and_size_capped() -> None:
    with webhook_receiver() as rec:
        rec.responder = lambda n, r: (302, {"location": "http://169.254.169.254/latest"}, b"")
        resp = safe_request("POST", rec.url, DEV, content=b"{}")
        assert resp.status_code == 302 and len(rec.requests) == 1
        rec.responder = lambda n, r: (200, {}, b"x" * 100_000)
        resp = safe_request("POST", rec.url, DEV, content=b"{}")
        assert resp.truncated and len(resp.body) == 1024


def test_slow_receiver_times_out() -> None:
    with webhook_receiver() as rec:

        def slow(n: int, r: object) -> tuple[int, dict[str, str], bytes]:
            time.sleep(3)
            return 200, {}, b""

        rec.responder = slow
        started = time.monotonic()
        with pytest.raises(httpx.TimeoutException):
            safe_request("POST", rec.url, EgressPolicy(allow_http=True, allow_private=True, timeout_s=0.5))
        assert time.monotonic() - started < 2.5
