"""Search words: how an alert's text and a staff member's search term become words.

One way for both sides, so they always agree: a word is a run of letters and digits
(every other character is a break, so `fin-ws-01.contoso.com`, `10.0.0.5` and
`CORP\\alice` are words in a row), lowercased. An alert's words, with their
positions, are its `search_vector`, written by the sync (`document_bytes`); a term is
the phrase of its words in a row, the last also matching as the start of a longer
word (`phrase`). Words are not stemmed: host names, hashes and user names are not
English.

Both are built here rather than by PostgreSQL's to_tsvector: the sync writes
thousands of alerts a second, and parsing every alert's text in the database cost
about a fifth of its time there.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from itertools import chain, repeat

_WORD = re.compile(r"[^\W_]+")
_ASCII_WORD = re.compile(r"[a-z0-9]+")  # the same, on lowercased ASCII text: faster
# PostgreSQL's limits for a tsvector: a lexeme's bytes (16 takes 2046, 15 one more),
# a position, positions kept per lexeme. Longer words are left out, as to_tsvector
# leaves them out.
MAX_WORD_BYTES = 2046
MAX_POSITION = 16383
MAX_POSITIONS = 256


def words(text: str) -> list[str]:
    """The words of `text`, lowercased, in order."""
    text = text.lower()
    return (_ASCII_WORD if text.isascii() else _WORD).findall(text)


def document(*texts: str) -> str:
    """The tsvector of the texts' words with their positions, in PostgreSQL's input
    form (`'fin':1 'ws':2,7 ...`); words are letters and digits only, so none needs
    quoting. For a single row (Alert.save); the sync writes `document_bytes`."""
    return " ".join(
        [
            f"'{word}':{','.join(map(str, kept))}"
            for word, kept in _positions(texts).items()
            if len(word.encode()) <= MAX_WORD_BYTES
        ]
    )


_COUNT = struct.Struct("!i")


def document_bytes(*texts: str) -> bytes:
    """The same tsvector in PostgreSQL's binary form, as its tsvectorrecv reads it:
    the number of words, then each word's UTF-8 text, a zero byte, its number of
    positions and the positions, as big-endian integers of 32 and 16 bits. The sync
    COPYs this, so that PostgreSQL has no text to parse (it sorts the words)."""
    parts = []
    for word, kept in _positions(texts).items():
        encoded = word.encode()
        if len(encoded) <= MAX_WORD_BYTES:
            parts.append(encoded)
            parts.append(struct.pack(f"!xH{len(kept)}H", len(kept), *kept))
    return _COUNT.pack(len(parts) // 2) + b"".join(parts)


def _positions(texts: tuple[str, ...]) -> dict[str, list[int]]:
    """Each word of the texts and its positions (1, 2, ...; MAX_POSITION for every
    word past it), at most MAX_POSITIONS of them; in order of first use. (The sync
    makes one per alert: this is written for speed.)"""
    positions: dict[str, list[int]] = {}
    numbers = chain(range(1, MAX_POSITION + 1), repeat(MAX_POSITION))
    for word, position in zip(words(" ".join(texts)), numbers, strict=False):
        kept = positions.get(word)
        if kept is None:
            positions[word] = [position]
        elif len(kept) < MAX_POSITIONS and kept[-1] != position:
            kept.append(position)
    return positions


def phrase(term: str) -> str:
    """The tsquery, in PostgreSQL's input form, of `term`'s words in a row; the last
    word also matches as a prefix unless it is a single character (a prefix that
    short would read most of the index: `10.0.0.1` must not find 10.0.0.17).
    "" for a term without words."""
    return " <-> ".join(_lexemes(term, lambda word: True))


def every_word(term: str, keep: Callable[[str], bool]) -> str:
    """The tsquery of the rows having each word of `term` that `keep` keeps, the last
    word as a prefix as in `phrase`: the index's part of a search whose whole phrase
    is checked on the rows found."""
    return " & ".join(_lexemes(term, keep))


def _lexemes(term: str, keep: Callable[[str], bool]) -> list[str]:
    found = words(term)
    last = len(found) - 1
    return [
        f"'{word}':*" if i == last and len(word) > 1 else f"'{word}'"
        for i, word in enumerate(found)
        if keep(word)
    ]
