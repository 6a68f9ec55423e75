"""API keys: made by `esteira api-key`, configured as SHA-256 digests, each with its tenant.

Only digests are configured (ESTEIRA_API_KEYS="tenant:hex,tenant:hex"), so a leaked
configuration does not leak a usable key. A plain SHA-256 is enough: the keys are 256 random
bits, not passwords a dictionary could guess.
"""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_PREFIX = "esk_"
TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_DIGEST_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_entries(entries: str) -> dict[str, str]:
    """`tenant:digest` entries separated by commas or new lines -> {digest: tenant}. A tenant may
    have several keys (to rotate them); one digest belongs to one tenant."""
    tenants: dict[str, str] = {}
    for number, entry in enumerate(re.split(r"[,\n]", entries), start=1):
        entry = entry.strip()
        if not entry:
            continue
        tenant, _, digest = entry.partition(":")
        tenant, digest = tenant.strip(), digest.strip().lower()
        if not TENANT_PATTERN.match(tenant):
            raise ValueError(
                f"API key entry {number}: the tenant must be 1-63 of a-z, 0-9, '_', '.', '-'"
            )
        if not _DIGEST_PATTERN.match(digest):
            raise ValueError(
                f"API key entry {number} (tenant {tenant}): expected tenant:<64 hex digits>, "
                "the SHA-256 of the key (esteira api-key prints it)"
            )
        if tenants.get(digest, tenant) != tenant:
            raise ValueError(f"API key entry {number}: that key already belongs to another tenant")
        tenants[digest] = tenant
    return tenants
