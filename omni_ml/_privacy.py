"""Pseudonyms and masks: ids derived from identifiers are keyed hashes; printed identifiers are masked.

An anonymous customer id (``anon-...``) is derived from an identifier (an e-mail address, a phone
number, a cookie). A plain hash of it can be reversed by hashing known e-mail addresses or every
phone number, so the id is an HMAC-SHA-256 under a secret key: without the key nobody can tell
which identifier an id stands for.

The key comes from the environment, never from the repository:

- ``OMNI_ML_PSEUDONYM_KEY``: the secret itself (at least 16 characters), or
- ``OMNI_ML_PSEUDONYM_KEY_FILE``: a file holding it (keep it outside the repository, readable only
  by the scoring job).

Without a key, deriving an id is an error, unless ``OMNI_ML_UNSALTED=1`` (``omni-ml --unsalted``)
says explicitly that the data is not personal (a simulated world, tests): the ids are then plain
sha256 hashes as before. The same key must be used by every run whose ids are compared (train,
score, measure, feedback), and changing the key renames every anonymous customer.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from omni_ml.exceptions import ConfigError

__all__ = ["KEY_ENV", "KEY_FILE_ENV", "UNSALTED_ENV", "keyed_hash", "mask_identifier", "pseudonym_key"]

KEY_ENV = "OMNI_ML_PSEUDONYM_KEY"
KEY_FILE_ENV = "OMNI_ML_PSEUDONYM_KEY_FILE"
UNSALTED_ENV = "OMNI_ML_UNSALTED"
_MIN_KEY = 16
_MASK = "\u2022" * 4  # ••••


def pseudonym_key() -> bytes | None:
    """The secret key of pseudonyms from the environment; ``None`` only when unsalted ids are asked for.

    Raises
    ------
    ConfigError
        No key and no explicit ``OMNI_ML_UNSALTED=1``; a key file that cannot be read; a key too short.
    """
    text = os.environ.get(KEY_ENV)
    source = f"${KEY_ENV}"
    if not text and os.environ.get(KEY_FILE_ENV):
        path = Path(os.environ[KEY_FILE_ENV]).expanduser()
        source = f"${KEY_FILE_ENV} ({str(path)!r})"
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            msg = f"{source}: cannot read the pseudonym key ({type(exc).__name__}). Hint: point it at a readable file."
            raise ConfigError(msg) from None
    if text:
        if len(text) < _MIN_KEY:
            msg = (
                f"{source}: the pseudonym key has {len(text)} characters; at least {_MIN_KEY} are needed."
                " Hint: generate one with `python -c 'import secrets; print(secrets.token_hex(32))'`."
            )
            raise ConfigError(msg)
        return text.encode("utf-8")
    if os.environ.get(UNSALTED_ENV, "").strip().lower() in ("1", "true", "yes"):
        return None
    msg = (
        "anonymous customer ids are keyed hashes of identifiers and no key is set. Hint: set"
        f" {KEY_ENV} (a secret of {_MIN_KEY}+ characters) or {KEY_FILE_ENV} (a file outside the repository"
        f" holding it); for data that is not personal (a simulated world) pass `omni-ml --unsalted ...`"
        f" or set {UNSALTED_ENV}=1."
    )
    raise ConfigError(msg)


def keyed_hash(text: str, key: bytes | None) -> str:
    """Hex HMAC-SHA-256 of ``text`` under ``key``; plain sha256 when ``key`` is ``None`` (unsalted).

    Examples
    --------
    >>> keyed_hash("email:ann@x.dk", b"k" * 16) == keyed_hash("email:ann@x.dk", b"k" * 16)
    True
    >>> keyed_hash("email:ann@x.dk", b"k" * 16) != keyed_hash("email:ann@x.dk", None)
    True
    """
    data = text.encode("utf-8")
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def mask_identifier(identifier: object) -> str:
    """An identifier as printed: its type and a few characters of the value, the rest masked.

    Examples
    --------
    >>> mask_identifier("phone:+4512342770")
    'phone:+45••••2770'
    >>> mask_identifier("email:ann@example.com")
    'email:ann••••.com'
    >>> mask_identifier("cookie:7f3a9c")
    'cookie:7••••9c'
    """
    text = str(identifier)
    kind, sep, value = text.partition(":")
    if not sep:
        kind, value = "", text
    if len(value) >= 10:
        shown = value[:3] + _MASK + value[-4:]
    elif len(value) >= 5:
        shown = value[:1] + _MASK + value[-2:]
    else:
        shown = _MASK
    return f"{kind}{sep}{shown}"
