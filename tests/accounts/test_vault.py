"""The vault: tokens encrypted at rest, bound to their row, rotatable."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.vault import KeyRing, KeyRingError, Sealed, VaultError
from app.config import Settings
from app.db.rls import org_transaction
from tests.fixtures.accounts import connect
from tests.fixtures.mailboxes import sandbox_of
from tests.fixtures.orgs import MakeOrg, Org

KEY_A = "a:" + base64.b64encode(b"A" * 32).decode()
KEY_B = "b:" + base64.b64encode(b"B" * 32).decode()


def test_key_ring_rejects_bad_specs() -> None:
    for spec in (
        "",
        "nokey",
        "x:notbase64!!",
        "x:" + base64.b64encode(b"short").decode(),
        f"{KEY_A},{KEY_A}",
    ):
        with pytest.raises(KeyRingError):
            KeyRing(spec)
    assert "AAAA" not in repr(KeyRing(KEY_A))


def test_seal_open_and_associated_data() -> None:
    ring = KeyRing(f"{KEY_A},{KEY_B}")
    account, other = uuid.uuid4(), uuid.uuid4()
    sealed = ring.seal("ya29.SANDBOXTOKEN.x", account, "access_token")
    assert sealed.key_id == "a"
    assert b"SANDBOXTOKEN" not in sealed.ciphertext
    assert ring.open(sealed, account, "access_token") == "ya29.SANDBOXTOKEN.x"
    with pytest.raises(VaultError):
        ring.open(sealed, other, "access_token")  # moved to another account
    with pytest.raises(VaultError):
        ring.open(sealed, account, "refresh_token")  # moved to another kind
    with pytest.raises(VaultError):
        KeyRing(KEY_B).open(sealed, account, "access_token")  # key not in the ring
    tampered = Sealed(sealed.key_id, sealed.nonce, sealed.ciphertext[:-1] + b"\x00")
    with pytest.raises(VaultError):
        ring.open(tampered, account, "access_token")


def _sandbox_tokens(app: FastAPI, provider: str, mailbox: str) -> set[str]:
    state = getattr(sandbox_of(app), provider)
    return {t.value for t in state.tokens.values() if t.grant.mailbox == mailbox}


@pytest.mark.asyncio
async def test_tokens_decrypt_to_what_the_sandbox_issued_and_swaps_fail(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_org: MakeOrg,
    app_engine: AsyncEngine,
    owner_engine: AsyncEngine,
) -> None:
    org: Org = await make_org("Vault")
    ctx = app.state.ctx
    one = await connect(client, "gmail", org.headers(), login_hint="one@vault.example")
    two = await connect(client, "outlook", org.headers(), login_hint="two@vault.example")
    issued = _sandbox_tokens(app, "gmail", "one@vault.example")
    async with org_transaction(app_engine, org.id) as s:
        access = await ctx.vault.get(s, uuid.UUID(one["id"]), "access_token")
        refresh = await ctx.vault.get(s, uuid.UUID(one["id"]), "refresh_token")
    assert access in issued
    assert refresh in issued
    assert access != refresh
    assert "SANDBOXTOKEN" in access

    # swap the two accounts' ciphertexts behind the service's back
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE vault.secrets s SET nonce = o.nonce, ciphertext = o.ciphertext "
                "FROM vault.secrets o WHERE s.kind = 'access_token' AND o.kind = 'access_token' "
                "AND s.account_id = :a AND o.account_id = :b"
            ),
            {"a": one["id"], "b": two["id"]},
        )
    async with org_transaction(app_engine, org.id) as s:
        with pytest.raises(VaultError):
            await ctx.vault.get(s, uuid.UUID(one["id"]), "access_token")
    # rotate-keys reports such a secret and leaves it alone; then the row is repaired
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("DELETE FROM vault.secrets WHERE account_id = :a"), {"a": one["id"]}
        )


@pytest.mark.asyncio
async def test_rotate_keys_then_remove_the_old_key(
    client: httpx.AsyncClient,
    make_org: MakeOrg,
    test_settings: Settings,
    owner_engine: AsyncEngine,
) -> None:
    org: Org = await make_org("Rotate")
    account = await connect(client, "gmail", org.headers(), login_hint="rot@vault.example")
    old_ring = test_settings.vault_keys.get_secret_value()
    new_key = "k2026:" + base64.b64encode(os.urandom(32)).decode()
    env = {
        **os.environ,
        "DATABASE_URL": str(test_settings.database_url),
        "VAULT_KEYS": f"{new_key},{old_ring}",
    }
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", "rotate-keys"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rotated"] >= 2
    assert "SANDBOXTOKEN" not in result.stdout + result.stderr
    async with owner_engine.connect() as conn:
        key_ids = set(
            (await conn.execute(text("SELECT DISTINCT key_id FROM vault.secrets"))).scalars()
        )
    assert key_ids == {"k2026"}
    # the old key is gone from the ring: the secrets still open with the new one alone
    ring = KeyRing(new_key)
    async with owner_engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT key_id, nonce, ciphertext FROM vault.secrets WHERE account_id = :a AND "
                    "kind = 'refresh_token'"
                ),
                {"a": account["id"]},
            )
        ).one()
    plain = ring.open(
        Sealed(row.key_id, bytes(row.nonce), bytes(row.ciphertext)),
        uuid.UUID(account["id"]),
        "refresh_token",
    )
    assert "SANDBOXTOKEN" in plain
    # rotate back so the rest of the suite (sharing this database) keeps its ring
    env["VAULT_KEYS"] = f"{old_ring},{new_key}"
    back = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", "rotate-keys"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["primary_key_id"] == old_ring.split(":")[0]
