"""The hash chain of the append-only journals (alarm journal, plan-decision journal).

Each entry stores SHA-256 over the previous entry's hash and its own content (the JSON of its
columns, without the hash): editing, deleting or reordering a stored entry breaks every hash
after it, which :func:`verify_chain` reports.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

GENESIS_HASH: Final = "0" * 64
"""The "previous hash" of the first entry."""


def entry_hash(previous_hash: str, row: Sequence[Any]) -> str:
    """SHA-256 over the previous hash and the row's content (without its own hash)."""
    content = json.dumps([previous_hash, *row], separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def verify_chain(
    rows: Iterable[Sequence[Any]],
    *,
    width: int,
    decode: Callable[[tuple[Any, ...]], object],
    error: Callable[[str], Exception],
    what: str,
) -> int:
    """Check sequence numbers, decoding and hashes of ``rows`` in order; returns their count.

    Each row is ``width`` content columns (the first the sequence from 1) then the stored hash;
    ``decode`` raises on content that does not decode; the first problem raises ``error`` with a
    message naming ``what`` (e.g. ``"alarm journal <path>"``) and the entry.
    """
    previous_hash = GENESIS_HASH
    expected = 1
    for row in rows:
        if row[0] != expected:
            raise error(f"{what}: entry {row[0]} where {expected} was due")
        content = tuple(row[:width])
        decode(content)
        previous_hash = entry_hash(previous_hash, content)
        if row[width] != previous_hash:
            raise error(
                f"{what}: entry {row[0]}: hash does not match its content and the entries "
                "before it (the journal was altered)"
            )
        expected += 1
    return expected - 1
