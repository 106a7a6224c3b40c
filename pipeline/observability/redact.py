"""Secrets out of everything a worker or a command writes: logs, error events, dead-letter headers,
messages on the terminal.

A secret is replaced wherever it appears, including inside text that a library built (a client's error,
a traceback, a URL in an HTTP error). User info in any URL (``scheme://user:password@host``) is replaced
too, configured or not: a URL with a password in it is a secret whoever wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "***"
# scheme://user:password@ or scheme://token@ (the part before the host)
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
# Shorter ones would replace ordinary words (a password "abc" would turn every "abc" into ***); a
# configured secret this short is refused nowhere else, so it is not protected here either.
MIN_SECRET_CHARS = 3


class Redactor:
    """Replaces each secret (longest first) and any URL user info in a text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        unique = {s for s in secrets if s and len(s) >= MIN_SECRET_CHARS}
        self.secrets = sorted(unique, key=len, reverse=True)

    def add(self, secrets: Iterable[str]) -> None:
        self.secrets = Redactor([*self.secrets, *secrets]).secrets

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if "@" in text:
            text = _URL_USERINFO.sub(rf"\g<scheme>{REDACTED}@", text)
        return text
