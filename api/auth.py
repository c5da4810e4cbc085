"""Bearer tokens and roles of the HTTP API.

A token is 32 random bytes (``secrets.token_urlsafe``, 256 bits) with a ``ps_`` prefix. It is
shown once, when minted (:func:`mint_token`); the token file keeps only its SHA-256, with the
holder's name and role. A fast hash is enough here, unlike for passwords: a slow key-derivation
function (bcrypt, Argon2) protects low-entropy secrets against guessing, but a 256-bit random
token cannot be guessed whatever the hash costs, and SHA-256 is preimage resistant; so a stolen
token file does not give away a usable token, and checking a request costs one hash.

Checking compares the presented token's hash with every stored hash in constant time
(:func:`hmac.compare_digest`, no early exit), so the time taken does not tell how much of a hash
matched. The file is re-read when it changes, so a token is revoked by deleting its entry.

Roles (``docs/api.md``): ``viewer`` (responders: read everything, what-if), ``duty_officer``
(also acknowledge, shelve, reset and comment alarms, confirm/override/release plans, close
incidents), ``admin`` (also read the audit log).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

__all__ = [
    "TOKEN_PREFIX",
    "Principal",
    "Role",
    "TokenError",
    "TokenRecord",
    "TokenRegistry",
    "hash_token",
    "mint_token",
    "read_token_file",
]

TOKEN_PREFIX: Final = "ps_"  # noqa: S105 - a prefix that marks tokens, not a secret
# 256 bits of randomness per token (design choice: beyond any guessing, and the size of the hash).
TOKEN_BYTES: Final = 32
FILE_VERSION: Final = 1


class Role(StrEnum):
    """What a token holder may do; each role may do everything of the roles before it."""

    VIEWER = "viewer"
    DUTY_OFFICER = "duty_officer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Order of privilege: viewer 0, duty officer 1, admin 2."""
        return list(Role).index(self)

    def allows(self, required: Role) -> bool:
        """Whether this role may do what ``required`` may."""
        return self.rank >= required.rank


class TokenError(ValueError):
    """A token file that cannot be read or written, or a bad name or role."""


@dataclass(frozen=True)
class TokenRecord:
    """One stored token: its SHA-256 (hex), the holder's name and role, when it was minted [s]."""

    name: str
    role: Role
    sha256: str
    created_time_s: float

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON."""
        return {
            "name": self.name,
            "role": self.role.value,
            "sha256": self.sha256,
            "created_time_s": self.created_time_s,
        }


@dataclass(frozen=True)
class Principal:
    """Who made a request: the token's holder and role."""

    name: str
    role: Role


def hash_token(token: str) -> str:
    """The SHA-256 of ``token`` (UTF-8) as 64 hex digits."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _record(entry: object, path: Path) -> TokenRecord:
    if not isinstance(entry, dict):
        raise TokenError(f"token file {path}: an entry is not an object: {entry!r}")
    try:
        name = str(entry["name"])
        role = Role(entry["role"])
        digest = str(entry["sha256"])
        created = float(entry.get("created_time_s", 0.0))
    except (KeyError, ValueError, TypeError) as error:
        raise TokenError(f"token file {path}: bad entry {entry!r}: {error}") from error
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise TokenError(f"token file {path}: entry {name!r}: sha256 is not 64 hex digits")
    return TokenRecord(name=name, role=role, sha256=digest, created_time_s=created)


def read_token_file(path: Path) -> tuple[TokenRecord, ...]:
    """The tokens stored in ``path``; none if the file does not exist.

    Raises
    ------
    TokenError
        When the file is not a token file (naming what is wrong).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ()
    except OSError as error:
        raise TokenError(f"token file {path}: cannot read: {error}") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise TokenError(f"token file {path}: not JSON: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
        raise TokenError(f'token file {path}: expected {{"version": 1, "tokens": [...]}}')
    return tuple(_record(entry, path) for entry in data["tokens"])


def _write_token_file(path: Path, records: tuple[TokenRecord, ...]) -> None:
    """Replace ``path`` atomically (temporary file, fsync, rename), readable by the owner only."""
    body = json.dumps(
        {"version": FILE_VERSION, "tokens": [record.to_json_dict() for record in records]},
        indent=2,
        sort_keys=True,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(body + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        Path(temporary).chmod(0o600)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def mint_token(path: Path, *, name: str, role: Role | str, now_s: float | None = None) -> str:
    """Create a token for ``name`` with ``role``, store its hash in ``path``, return the token.

    The token itself is not stored anywhere: the caller shows it once (``pipesentinel token
    mint``). A name may hold one token at a time: minting again replaces (revokes) the old one.

    Raises
    ------
    TokenError
        For a blank name, an unknown role or a token file that cannot be read or written.
    """
    if not name or not name.strip() or name != name.strip():
        raise TokenError(f"token name must be non-blank without surrounding blanks: {name!r}")
    try:
        chosen = Role(role)
    except ValueError:
        choices = ", ".join(member.value for member in Role)
        raise TokenError(f"unknown role {role!r}; choose one of {choices}") from None
    created = time.time() if now_s is None else now_s
    if not math.isfinite(created):
        raise TokenError(f"now_s={now_s!r} is not finite")
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    kept = tuple(record for record in read_token_file(path) if record.name != name)
    record = TokenRecord(name=name, role=chosen, sha256=hash_token(token), created_time_s=created)
    try:
        _write_token_file(path, (*kept, record))
    except OSError as error:
        raise TokenError(f"token file {path}: cannot write: {error}") from error
    return token


class TokenRegistry:
    """Checks bearer tokens against a token file, re-read when the file changes.

    Parameters
    ----------
    path
        The token file (JSON, see :func:`mint_token`) [-].
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._records: tuple[TokenRecord, ...] = ()
        self._load()

    def _load(self) -> tuple[TokenRecord, ...]:
        try:
            status = self.path.stat()
            stamp: tuple[int, int] | None = (status.st_mtime_ns, status.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp or stamp is None:
                self._records = read_token_file(self.path) if stamp is not None else ()
                self._stamp = stamp
            return self._records

    def records(self) -> tuple[TokenRecord, ...]:
        """The stored tokens (hashes, names, roles) as of now."""
        return self._load()

    def authenticate(self, token: str) -> Principal | None:
        """The holder of ``token``, or ``None`` if no stored token matches.

        Every stored hash is compared (constant-time each, no early exit).
        """
        presented = hash_token(token)
        found: TokenRecord | None = None
        for record in self._load():
            if hmac.compare_digest(presented, record.sha256):
                found = record
        return None if found is None else Principal(name=found.name, role=found.role)
