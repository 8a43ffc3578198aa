"""The store's exceptions: one base class, :class:`StoreError`, and one subclass per failure a
caller may want to handle on its own."""

from __future__ import annotations

__all__ = [
    "ChecksumError",
    "ClaimError",
    "ConflictError",
    "MissingError",
    "RunConfigError",
    "SchemaVersionError",
    "StoreError",
    "StoreURLError",
    "WaitTimeout",
]


class StoreError(RuntimeError):
    """Any error of the store; its message says what went wrong and what to do."""


class StoreURLError(StoreError, ValueError):
    """The URL is malformed, has an unknown scheme, lacks its driver, or the database cannot be
    reached (raised before any work, with the password masked)."""


class SchemaVersionError(StoreError):
    """The database holds a store of another schema version."""


class RunConfigError(StoreError):
    """A run id exists in the store with another config (its config hash differs)."""


class ConflictError(StoreError):
    """A write found the same key already stored with different content."""


class MissingError(StoreError, LookupError):
    """What was asked for is not in the store (yet)."""


class ClaimError(StoreError):
    """A role of a run is held by another live process, or this process lost its claim."""


class ChecksumError(StoreError):
    """A blob read back does not match the checksum stored with it."""


class WaitTimeout(StoreError, TimeoutError):
    """:meth:`~experiments.store.Run.wait_for` waited longer than its timeout."""
