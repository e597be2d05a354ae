"""Bearer JWTs of CRM users: HS256 with a shared secret, or any key of a JWKS URL."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey

from app.config import Settings
from app.errors import Unauthorized

_ASYMMETRIC = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]


@dataclass(frozen=True)
class TokenClaims:
    user_id: UUID
    org_id: UUID


class JwksCache:
    """Keys of JWT_JWKS_URL, fetched on first use and again when a kid is unknown."""

    def __init__(self, url: str, ttl_seconds: int = 600) -> None:
        self.url = url
        self.ttl_seconds = ttl_seconds
        self._keys: KeySet | None = None
        self._fetched_at = 0.0

    async def keys(self, force: bool = False) -> KeySet:
        stale = time.monotonic() - self._fetched_at > self.ttl_seconds
        if self._keys is None or stale or force:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.get(self.url)
                response.raise_for_status()
            self._keys = KeySet.import_key_set(response.json())
            self._fetched_at = time.monotonic()
        return self._keys


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.jwks = JwksCache(settings.jwt_jwks_url) if settings.jwt_jwks_url else None
        self.secret = OctKey.import_key(settings.jwt_secret.get_secret_value())
        required = jwt.ClaimsOption(essential=True)
        if settings.jwt_audience:
            self.registry = jwt.JWTClaimsRegistry(
                leeway=settings.jwt_leeway_seconds,
                exp=required,
                sub=required,
                org_id=required,
                aud=jwt.ClaimsOption(essential=True, value=settings.jwt_audience),
            )
        else:
            self.registry = jwt.JWTClaimsRegistry(
                leeway=settings.jwt_leeway_seconds, exp=required, sub=required, org_id=required
            )

    async def verify(self, token: str) -> TokenClaims:
        try:
            if self.jwks is not None:
                try:
                    decoded = jwt.decode(token, await self.jwks.keys(), algorithms=_ASYMMETRIC)
                except JoseError:
                    decoded = jwt.decode(
                        token, await self.jwks.keys(force=True), algorithms=_ASYMMETRIC
                    )
            else:
                decoded = jwt.decode(token, self.secret, algorithms=["HS256"])
            self.registry.validate(decoded.claims)
            return TokenClaims(
                user_id=UUID(str(decoded.claims["sub"])),
                org_id=UUID(str(decoded.claims["org_id"])),
            )
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            # The reason class only: never echo the token or its claims.
            raise Unauthorized(f"Invalid bearer token ({type(exc).__name__})") from None
        except httpx.HTTPError:
            raise Unauthorized("Signing keys unavailable") from None


def issue_token(
    settings: Settings,
    user_id: UUID,
    org_id: UUID,
    ttl_seconds: int = 86400,
    **claims: Any,
) -> str:
    """An HS256 token for development fixtures and tests (the CRM issues real ones)."""
    now = int(time.time())
    payload = {"sub": str(user_id), "org_id": str(org_id), "iat": now, "exp": now + ttl_seconds}
    if settings.jwt_audience:
        payload["aud"] = settings.jwt_audience
    payload.update(claims)
    key = OctKey.import_key(settings.jwt_secret.get_secret_value())
    return jwt.encode({"alg": "HS256"}, payload, key)
