"""The one error type every sub-command raises, so `main` can print it and pick the exit code."""

from __future__ import annotations

from collections.abc import Sequence

EXIT_FAILED = 1  # bad input, bad config, or a request the server rejected
EXIT_UNREACHABLE = 2  # the server is down, refused our secret, or failed (5xx)
EXIT_NOT_RUNNING = 3  # `status`: some service is stopped or unhealthy


class CtlError(Exception):
    """A failure told to the admin as one line, optional detail lines, and an exit code."""

    def __init__(
        self, message: str, *, details: Sequence[str] = (), exit_code: int = EXIT_FAILED
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = tuple(details)
        self.exit_code = exit_code
