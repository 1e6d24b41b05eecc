"""`wanserve keys create --name NAME [--admin] | revoke NAME | list`: manage Bearer API keys in Redis.

The new key is printed once (stdout) and stored only as its SHA-256 hash. `app.cli.main` mounts
`build_parser` under `wanserve keys`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from app.core.apikeys import ApiKeyError, ApiKeyStore
from app.core.config import Settings
from app.core.redisconn import async_client


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="wanserve keys", description="Manage API keys")
    sub = p.add_subparsers(dest="keys_command", required=True)
    create = sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True, help="unique name, e.g. the customer or service")
    create.add_argument("--admin", action="store_true", help="an operator key: may use /v1/admin/*")
    create.add_argument(
        "--max-priority",
        choices=["high", "normal", "low"],
        help="highest job priority this key may ask for (default: WANSERVE_MAX_PRIORITY)",
    )
    revoke = sub.add_parser("revoke", help="revoke a key by name")
    revoke.add_argument("name")
    sub.add_parser("list", help="list key names and ids (never the keys)")
    return p


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    r = async_client(settings)
    try:
        store = ApiKeyStore(r)
        if args.keys_command == "create":
            try:
                key, token = await store.create(args.name, admin=args.admin, max_priority=args.max_priority)
            except ApiKeyError as exc:
                print(f"error: {exc}", file=sys.stderr)  # noqa: T201
                return 1
            print(token)  # noqa: T201
            print(f"created key {key.name!r} (id {key.id}); it is shown only once", file=sys.stderr)  # noqa: T201
            if not settings.auth_enabled:
                print("note: auth is off on this deployment (WANSERVE_AUTH=false)", file=sys.stderr)  # noqa: T201
            return 0
        if args.keys_command == "revoke":
            if await store.revoke(args.name):
                print(f"revoked key {args.name!r}", file=sys.stderr)  # noqa: T201
                return 0
            print(f"error: no key named {args.name!r}", file=sys.stderr)  # noqa: T201
            return 1
        for k in await store.list():
            extra = ("\tadmin" if k.admin else "") + (
                f"\tmax_priority={k.max_priority}" if k.max_priority else ""
            )
            print(f"{k.name}\t{k.id}\t{k.created_at}{extra}")  # noqa: T201
        return 0
    finally:
        await r.aclose()


def run_keys(argv: Sequence[str], settings: Settings | None = None) -> int:
    args = build_parser().parse_args(list(argv))
    return asyncio.run(_run(args, settings or Settings()))


if __name__ == "__main__":  # pragma: no cover - `python -m app.cli.keys create --name NAME`
    raise SystemExit(run_keys(sys.argv[1:]))
