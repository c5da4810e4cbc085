"""The journals' shared hash chain."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from pipesentinel.ingest.storage.hash_chain import GENESIS_HASH, entry_hash, verify_chain


class AlteredError(Exception):
    pass


def chain(contents: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    rows, previous = [], GENESIS_HASH
    for content in contents:
        previous = entry_hash(previous, content)
        rows.append((*content, previous))
    return rows


def test_entry_hash_is_sha256_of_the_json_of_previous_and_content() -> None:
    expected = hashlib.sha256(f'["{GENESIS_HASH}",1,"a",2.5]'.encode()).hexdigest()
    assert entry_hash(GENESIS_HASH, (1, "a", 2.5)) == expected


def test_verify_chain_counts_and_names_the_first_bad_entry() -> None:
    rows = chain([(1, "x"), (2, "y"), (3, "z")])
    decoded: list[tuple[Any, ...]] = []
    assert verify_chain(rows, width=2, decode=decoded.append, error=AlteredError, what="j") == 3
    assert decoded == [(1, "x"), (2, "y"), (3, "z")]
    edited = [rows[0], (2, "Y", rows[1][2]), rows[2]]
    with pytest.raises(AlteredError, match="j: entry 2: hash does not match"):
        verify_chain(edited, width=2, decode=lambda _: None, error=AlteredError, what="j")
    with pytest.raises(AlteredError, match="j: entry 3 where 2 was due"):
        verify_chain(
            [rows[0], rows[2]], width=2, decode=lambda _: None, error=AlteredError, what="j"
        )
