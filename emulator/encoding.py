"""JSON for the emulated APIs: fast compact encoding, and a bounded cache of rendered
alerts so that a page of alerts seen before is a join of encoded pieces."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

from emulator import streams


class Encoded:
    """Already encoded JSON, placed as is where it appears in a body."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data


def _embed(obj: Any) -> Any:
    if isinstance(obj, Encoded):
        return orjson.Fragment(obj.data)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _decode_embedded(obj: Any) -> Any:
    if isinstance(obj, Encoded):
        return json.loads(obj.data)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def encode(body: Any) -> bytes:
    """Compact UTF-8 JSON of ``body``: what ``json.dumps(ensure_ascii=False)`` wrote,
    at a fifth of the cost. What orjson refuses (ints beyond 64 bits, keys that are not
    strings) goes through ``json``; a NaN, which no Microsoft API sends, becomes null.
    """
    try:
        return orjson.dumps(body, default=_embed)
    except orjson.JSONEncodeError:
        text = json.dumps(
            body, default=_decode_embedded, ensure_ascii=False, separators=(",", ":")
        )
        return text.encode("utf-8")


class RenderCache:
    """Encoded renderings of alerts, reused while an alert stays unchanged.

    Every change to an alert moves its ``last_update`` forward (``Alert.touch``), so an
    entry remembers the ``last_update`` it was rendered at and is rendered again once
    that moved. Bounded: the least recently used entries go once the encoded bytes plus
    ``ENTRY_OVERHEAD`` per entry exceed ``max_bytes``. Its own lock makes it safe from
    any thread; handlers also hold ``world.lock``.
    """

    ENTRY_OVERHEAD = 200  # key, value tuples, OrderedDict node, bytes header

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.size = 0
        self.entries: OrderedDict[tuple, tuple[int, Encoded]] = OrderedDict()
        self.lock = threading.Lock()

    def fetch(self, alert: streams.Alert, render: Callable[..., Any], *args) -> Encoded:
        """``render(alert, *args)``, encoded; ``args`` are hashable and, with
        ``render``, all the rendering depends on besides the alert."""
        key = (alert, render, args)
        version = alert.last_update
        with self.lock:
            entry = self.entries.get(key)
            if entry is not None and entry[0] == version:
                self.entries.move_to_end(key)
                return entry[1]
        # orjson's bytes keep the spare room of its output buffer (8 KiB of memory for
        # a 2.5 KB alert); a copy holds just the JSON, so the bound is real memory,
        # and the buffer, freed at once, is reused for the next alert.
        encoded = Encoded(bytes(memoryview(encode(render(alert, *args)))))
        with self.lock:
            old = self.entries.pop(key, None)
            if old is not None:
                self.size -= len(old[1].data) + self.ENTRY_OVERHEAD
            self.entries[key] = (version, encoded)
            self.size += len(encoded.data) + self.ENTRY_OVERHEAD
            while self.size > self.max_bytes and self.entries:
                _, (_, dropped) = self.entries.popitem(last=False)
                self.size -= len(dropped.data) + self.ENTRY_OVERHEAD
        return encoded
