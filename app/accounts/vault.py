"""The token vault: AES-256-GCM in the service, ciphertexts in the `vault` schema.

Keys come from VAULT_KEYS as a ring `id:base64key,...`: the first key encrypts, every key
decrypts, so a new key is added in front, `ce-email rotate-keys` re-encrypts, and the old
key can then be removed. The account id and the token kind are the associated data: a
ciphertext moved to another row (or kind) fails to decrypt instead of yielding a token.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

SecretKind = Literal["access_token", "refresh_token"]


class VaultError(Exception):
    """A secret could not be decrypted (wrong key ring, or a ciphertext out of place)."""


class KeyRingError(ValueError):
    pass


@dataclass(frozen=True)
class Sealed:
    key_id: str
    nonce: bytes
    ciphertext: bytes


class KeyRing:
    def __init__(self, spec: str) -> None:
        keys: dict[str, AESGCM] = {}
        order: list[str] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            key_id, sep, encoded = item.partition(":")
            if not sep or not key_id:
                raise KeyRingError("VAULT_KEYS entries are id:base64key")
            try:
                raw = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise KeyRingError(f"vault key {key_id!r} is not base64") from None
            if len(raw) != 32:
                raise KeyRingError(f"vault key {key_id!r} must be 32 bytes (AES-256)")
            if key_id in keys:
                raise KeyRingError(f"vault key id {key_id!r} appears twice")
            keys[key_id] = AESGCM(raw)
            order.append(key_id)
        if not order:
            raise KeyRingError("VAULT_KEYS holds no key")
        self._keys = keys
        self.primary_key_id = order[0]

    def __repr__(self) -> str:
        return f"KeyRing(primary={self.primary_key_id!r}, keys={len(self._keys)})"

    @staticmethod
    def associated_data(account_id: UUID, kind: SecretKind) -> bytes:
        return f"ce-email/v1/{account_id}/{kind}".encode()

    def seal(self, plaintext: str, account_id: UUID, kind: SecretKind) -> Sealed:
        nonce = os.urandom(12)
        aad = self.associated_data(account_id, kind)
        ciphertext = self._keys[self.primary_key_id].encrypt(nonce, plaintext.encode(), aad)
        return Sealed(self.primary_key_id, nonce, ciphertext)

    def open(self, sealed: Sealed, account_id: UUID, kind: SecretKind) -> str:
        key = self._keys.get(sealed.key_id)
        if key is None:
            raise VaultError(f"no vault key {sealed.key_id!r} in the ring")
        try:
            aad = self.associated_data(account_id, kind)
            return key.decrypt(sealed.nonce, sealed.ciphertext, aad).decode()
        except InvalidTag:
            raise VaultError("secret failed authentication") from None


class Vault:
    """Reads and writes secrets through the vault's SECURITY DEFINER functions (the app
    role cannot touch vault.secrets), inside the caller's RLS transaction."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    async def put(
        self, session: AsyncSession, account_id: UUID, kind: SecretKind, secret: str
    ) -> UUID:
        sealed = self.ring.seal(secret, account_id, kind)
        result = await session.execute(
            text("SELECT vault.put_secret(:account_id, :kind, :key_id, :nonce, :ciphertext)"),
            {
                "account_id": account_id,
                "kind": kind,
                "key_id": sealed.key_id,
                "nonce": sealed.nonce,
                "ciphertext": sealed.ciphertext,
            },
        )
        return UUID(str(result.scalar_one()))

    async def get(self, session: AsyncSession, account_id: UUID, kind: SecretKind) -> str | None:
        row = (
            await session.execute(
                text("SELECT key_id, nonce, ciphertext FROM vault.get_secret(:account_id, :kind)"),
                {"account_id": account_id, "kind": kind},
            )
        ).first()
        if row is None:
            return None
        return self.ring.open(
            Sealed(row.key_id, bytes(row.nonce), bytes(row.ciphertext)), account_id, kind
        )

    async def delete_all(self, session: AsyncSession, account_id: UUID) -> int:
        result = await session.execute(
            text("SELECT vault.delete_secrets(:account_id)"), {"account_id": account_id}
        )
        return int(result.scalar_one())


async def rotate_all(session: AsyncSession, ring: KeyRing) -> tuple[int, int, int]:
    """Re-encrypt every secret not under the primary key. Runs as the owner (all orgs):
    `ce-email rotate-keys`. Returns (re-encrypted, already current, unreadable); an
    unreadable secret (tampered, or its key already dropped) is left as it is."""
    rows = (
        await session.execute(
            text(
                "SELECT id, account_id, kind, key_id, nonce, ciphertext FROM vault.secrets "
                "FOR UPDATE"
            )
        )
    ).all()
    rotated = current = unreadable = 0
    for row in rows:
        if row.key_id == ring.primary_key_id:
            current += 1
            continue
        try:
            plain = ring.open(
                Sealed(row.key_id, bytes(row.nonce), bytes(row.ciphertext)),
                row.account_id,
                row.kind,
            )
        except VaultError:
            unreadable += 1
            continue
        sealed = ring.seal(plain, row.account_id, row.kind)
        await session.execute(
            text(
                "UPDATE vault.secrets SET key_id = :k, nonce = :n, ciphertext = :c, "
                "updated_at = now() WHERE id = :id"
            ),
            {"k": sealed.key_id, "n": sealed.nonce, "c": sealed.ciphertext, "id": row.id},
        )
        rotated += 1
    return rotated, current, unreadable
