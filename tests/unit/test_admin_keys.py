"""Admin keys and the placeholder signing key, against a real redis-server."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from app.cli.keys import run_keys
from app.core.apikeys import ApiKeyStore
from app.core.config import DEV_SIGNING_KEY, Settings
from app.core.redisconn import async_client
from tests.service_support import SIGNING_KEY


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_placeholder_signing_key_is_refused_whenever_auth_is_on(env: str, monkeypatch) -> None:
    monkeypatch.delenv("WANSERVE_SIGNING_KEY", raising=False)
    with pytest.raises(ValidationError, match="real secret"):
        Settings(env=env, auth=True, signing_key=DEV_SIGNING_KEY)
    assert Settings(env=env, auth=True, signing_key="s3cret").auth_enabled
    assert not Settings(env="dev", auth=False).auth_enabled  # a local dev box may keep it


def test_keys_create_admin_flag_is_stored(redis_url, tmp_path, capsys) -> None:
    settings = Settings(redis_url=redis_url, data_dir=tmp_path, signing_key=SIGNING_KEY)
    assert run_keys(["create", "--name", "ops-admin-13", "--admin"], settings) == 0
    admin_token = capsys.readouterr().out.strip()
    assert run_keys(["create", "--name", "tenant-13"], settings) == 0
    tenant_token = capsys.readouterr().out.strip()

    async def check() -> None:
        r = async_client(settings)
        store = ApiKeyStore(r)
        admin, tenant = await store.authenticate(admin_token), await store.authenticate(tenant_token)
        assert admin is not None and admin.admin
        assert tenant is not None and not tenant.admin
        await store.revoke("ops-admin-13")
        await store.revoke("tenant-13")
        await r.aclose()

    asyncio.run(check())
    assert run_keys(["list"], settings) == 0
