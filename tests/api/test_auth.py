"""Bearer tokens: minted once, stored hashed, checked in constant time, revocable."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from pipesentinel.api.auth import (
    TOKEN_PREFIX,
    Principal,
    Role,
    TokenError,
    TokenRegistry,
    hash_token,
    mint_token,
    read_token_file,
)


def test_a_minted_token_is_stored_only_as_its_sha256(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token = mint_token(path, name="alice", role="duty_officer", now_s=1.0e9)
    assert token.startswith(TOKEN_PREFIX)
    assert len(token) > 40  # 32 random bytes, URL-safe base64
    text = path.read_text()
    assert token not in text
    assert token[len(TOKEN_PREFIX) :] not in text
    (record,) = read_token_file(path)
    # SHA-256 of the UTF-8 token, as hashlib computes it (FIPS 180-4).
    assert record.sha256 == hashlib.sha256(token.encode()).hexdigest() == hash_token(token)
    assert (record.name, record.role, record.created_time_s) == ("alice", Role.DUTY_OFFICER, 1.0e9)
    assert json.loads(text)["version"] == 1
    assert path.stat().st_mode & 0o777 == 0o600


def test_the_registry_knows_each_holder_and_refuses_others(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    alice = mint_token(path, name="alice", role=Role.DUTY_OFFICER)
    bob = mint_token(path, name="bob", role=Role.VIEWER)
    registry = TokenRegistry(path)
    assert registry.authenticate(alice) == Principal("alice", Role.DUTY_OFFICER)
    assert registry.authenticate(bob) == Principal("bob", Role.VIEWER)
    assert registry.authenticate(alice + "x") is None
    assert registry.authenticate("") is None
    assert registry.authenticate(hash_token(alice)) is None  # the stored hash is no token


def test_minting_again_revokes_the_old_token_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    first = mint_token(path, name="alice", role=Role.VIEWER)
    registry = TokenRegistry(path)
    assert registry.authenticate(first) is not None
    second = mint_token(path, name="alice", role=Role.ADMIN)
    status = path.stat()
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))  # coarse clocks
    assert registry.authenticate(first) is None
    assert registry.authenticate(second) == Principal("alice", Role.ADMIN)
    assert [record.name for record in registry.records()] == ["alice"]


def test_no_file_means_no_tokens(tmp_path: Path) -> None:
    assert TokenRegistry(tmp_path / "missing.json").authenticate("ps_anything") is None


@pytest.mark.parametrize(
    ("name", "role", "says"),
    [
        ("", "viewer", "non-blank"),
        (" alice", "viewer", "non-blank"),
        ("alice", "root", "unknown role 'root'"),
    ],
)
def test_bad_names_and_roles_are_refused(tmp_path: Path, name: str, role: str, says: str) -> None:
    with pytest.raises(TokenError, match=says):
        mint_token(tmp_path / "tokens.json", name=name, role=role)
    assert not (tmp_path / "tokens.json").exists()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("not json", "not JSON"),
        ('{"tokens": {}}', "expected"),
        ('{"tokens": [{"name": "a", "role": "viewer", "sha256": "abc"}]}', "64 hex digits"),
        ('{"tokens": [{"name": "a", "role": "god", "sha256": "' + "0" * 64 + '"}]}', "bad entry"),
    ],
)
def test_a_broken_token_file_is_named(tmp_path: Path, content: str, says: str) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(TokenError, match=says):
        read_token_file(path)


@pytest.mark.parametrize(
    ("role", "required", "allowed"),
    [
        (Role.VIEWER, Role.VIEWER, True),
        (Role.VIEWER, Role.DUTY_OFFICER, False),
        (Role.DUTY_OFFICER, Role.DUTY_OFFICER, True),
        (Role.DUTY_OFFICER, Role.ADMIN, False),
        (Role.ADMIN, Role.DUTY_OFFICER, True),
        (Role.ADMIN, Role.VIEWER, True),
    ],
)
def test_each_role_includes_the_ones_below(role: Role, required: Role, allowed: bool) -> None:
    assert role.allows(required) is allowed
