"""Search words: how an alert's text and a staff member's search term become words.

One way for both sides, so they always agree: a word is a run of letters and digits
(every other character is a break, so `fin-ws-01.contoso.com`, `10.0.0.5` and
`CORP\\alice` are words in a row), lowercased. An alert's words, with their
positions, are its `search_vector`, written by the sync (`document`); a term is the
phrase of its words in a row, the last also matching as the start of a longer word
(`phrase`). Words are not stemmed: host names, hashes and user names are not English.

Both are built here rather than by PostgreSQL's to_tsvector: the sync writes
thousands of alerts a second, and parsing every alert's text in the database cost
about a fifth of its time there.
"""

from __future__ import annotations

import re
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
_POSITIONS = tuple(str(n) for n in range(1, MAX_POSITION + 1))  # 1..., as text


def words(text: str) -> list[str]:
    """The words of `text`, lowercased, in order."""
    text = text.lower()
    return (_ASCII_WORD if text.isascii() else _WORD).findall(text)


def document(*texts: str) -> str:
    """The tsvector of the texts' words with their positions, in PostgreSQL's input
    form (`'fin':1 'ws':2,7 ...`); words are letters and digits only, so none needs
    quoting. (The sync makes one per alert: this is written for speed.)"""
    positions: dict[str, list[str]] = {}
    # Positions 1, 2, ... and MAX_POSITION for every word past it.
    numbers = chain(_POSITIONS, repeat(_POSITIONS[-1]))
    for word, position in zip(words(" ".join(texts)), numbers, strict=False):
        kept = positions.get(word)
        if kept is None:
            positions[word] = [position]
        elif len(kept) < MAX_POSITIONS and kept[-1] != position:
            kept.append(position)
    return " ".join(
        [
            f"'{word}':{','.join(kept)}"
            for word, kept in positions.items()
            # (At most a quarter of the limit in characters fits in any encoding.)
            if len(word) <= MAX_WORD_BYTES // 4 or len(word.encode()) <= MAX_WORD_BYTES
        ]
    )


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
