"""Exponential backoff with jitter, the one way the portal waits before a retry.

Pure Python: the Microsoft client may import it (it imports nothing else of ours).
"""

import random


def backoff_seconds(
    attempt: int, *, base: float, cap: float, spread: float = 0.2
) -> float:
    """`base` doubled for each attempt after the first (attempt 1 waits `base`),
    at most `cap`, then spread by ±`spread` so many waiters do not return together."""
    delay = min(cap, base * 2 ** min(max(attempt - 1, 0), 30))
    return delay * random.uniform(1 - spread, 1 + spread)  # noqa: S311
