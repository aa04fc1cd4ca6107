"""Every error the workbench raises on purpose.

A message says what failed, with which value, and what to do next. The hub maps each class to
an HTTP status (``status``) so the same error reads the same in the CLI, a notebook and the API.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base of every error the workbench raises on purpose."""

    status = 500


class ConfigError(WorkbenchError):
    """A setting or parameter has a value that is not allowed."""

    status = 400


class ValidationError(WorkbenchError):
    """Input data (a request body, a batch, a file) is malformed or has the wrong types."""

    status = 400

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class NotFoundError(WorkbenchError):
    """A run, token or other record with the given id does not exist."""

    status = 404


class ConflictError(WorkbenchError):
    """The request clashes with the current state (e.g. an illegal status change)."""

    status = 409


class StoreError(WorkbenchError):
    """The DuckDB store failed; the DuckDB error is attached as the cause."""

    status = 500


class StoreLockedError(StoreError):
    """The store file is held read-write by another process."""

    status = 503


class SchemaVersionError(StoreError):
    """The store file was written by a newer workbench than this one."""


class MigrationError(StoreError):
    """A schema migration failed and was rolled back."""


class AuthError(WorkbenchError):
    """The API token is missing, unknown or revoked."""

    status = 401


class ForbiddenError(WorkbenchError):
    """The API token is valid but its role does not allow this call."""

    status = 403


class PayloadTooLargeError(WorkbenchError):
    """A request body is over the hub's size limit."""

    status = 413


class RateLimitError(WorkbenchError):
    """A token sent more requests than its rate allows."""

    status = 429

    def __init__(self, message: str, retry_after_s: float = 1.0):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class HubUnavailableError(WorkbenchError):
    """The hub at BI_IDE_HUB cannot be reached."""

    status = 503


class ServeError(WorkbenchError):
    """The hub refuses to start with the given options."""
