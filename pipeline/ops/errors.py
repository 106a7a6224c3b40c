"""The operator tools' own refusal: a bad argument or missing data, with a message meant for a person."""

from __future__ import annotations


class CommandError(Exception):
    """A command's own refusal (bad argument, missing data); the CLI exits 1 with the message."""
