"""Errors of the API's domain functions, each with the HTTP status it is answered with.

Routes never build error responses themselves: a domain function raises one of these with a
message that names what was wrong, and the app's exception handler answers
``{"detail": message}`` with :attr:`ApiError.status_code`.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ApiError",
    "BadRequestError",
    "ConflictError",
    "NotFoundError",
    "ServiceUnavailableError",
]


class ApiError(Exception):
    """A request that cannot be served; ``str(error)`` says why."""

    status_code: ClassVar[int] = 400


class BadRequestError(ApiError):
    """The request is malformed in a way its schema cannot say (a range, a field of a device)."""

    status_code = 422


class NotFoundError(ApiError):
    """An id that does not exist (alarm, incident, device, plan)."""

    status_code = 404


class ConflictError(ApiError):
    """An action the current state does not allow (acknowledging an acknowledged alarm, ...)."""

    status_code = 409


class ServiceUnavailableError(ApiError):
    """A write route of an API serving the stores read-only (no detection/response service)."""

    status_code = 503
