"""Values of channel and event_type against the vocabulary: near-misses are refused, new values kept.

The contract's vocabularies (event types with a meaning, the default and the contactable
channels) are closed lists, but the columns are open: a retailer may add a channel (``kiosk``)
or an event type (``wishlist``), and those are kept and counted. A value that is *almost* a
known one (``emial``, ``purchased``, ``e-mail``, ``Call Center``) is a typo or an export
variant: kept as a new value it would silently mean nothing (no purchases seen, no e-mail
consent), so it is refused with a did-you-mean.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# An inflection of a known value: purchase-d, open-ed, view-s, click-ing.
_SUFFIXES = ("s", "es", "d", "ed", "ing")
_SEPARATORS = re.compile(r"[\s_\-./]+")


def _osa_distance(a: str, b: str) -> int:
    """Edit distance counting an adjacent transposition as one edit (optimal string alignment)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]


def near_miss(value: str, vocabulary: Iterable[str]) -> str | None:
    """The known value that ``value`` almost is, or ``None`` (``value`` known, or really new).

    A near-miss differs from a known value only by separators or case (``e-mail``,
    ``Call Center``), by an inflection (``purchased``, ``views``), or by one edit
    (``emial``, ``purchse``; known values of four letters or more, so ``mms`` is not ``sms``).

    Examples
    --------
    >>> near_miss("emial", ["email", "sms"])
    'email'
    >>> near_miss("purchased", ["purchase"]) , near_miss("review", ["view"]), near_miss("kiosk", ["web"])
    ('purchase', None, None)
    """
    known = list(vocabulary)
    if value in known:
        return None
    squeezed = _SEPARATORS.sub("", value.lower())
    for k in known:
        if squeezed == _SEPARATORS.sub("", k):
            return k
    for k in known:
        if squeezed.startswith(k.replace("_", "")) and squeezed[len(k.replace("_", "")) :] in _SUFFIXES:
            return k
    for k in known:
        if len(k) >= 4 and abs(len(squeezed) - len(k)) <= 1 and _osa_distance(value.lower(), k) <= 1:
            return k
    return None
