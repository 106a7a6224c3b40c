"""The one distinction every part of the hot path makes about an exception: is its cause one event, or
something outside the events?

A failure that belongs to one event becomes that event's error and dead letter, and its neighbours are
answered. A failure whose cause is outside the events (the broker, the schema registry, a model that does
not answer even a known-good probe) says nothing about the events: they are not dead-lettered, the batch is
read again after a backoff, the worker reports itself not ready meanwhile, and it never exits for it.
"""

from __future__ import annotations


class ExternalCause(Exception):
    """A batch could not be processed for a reason outside its events; retry it later, never dead-letter."""
