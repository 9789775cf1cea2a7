"""The lab's small error hierarchy: bad input (the user can fix it) vs runtime failure."""

from __future__ import annotations

import re


class LabError(Exception):
    """Base of every error the CLI turns into one line and a non-zero exit."""

    exit_code = 1


class BadInput(LabError):
    """The user's input is wrong: the message names the file/flag and field and how to fix it."""

    exit_code = 2


class RuntimeFailure(LabError):
    """Something failed while running (Docker, a container, a health wait).

    A failed command (docker.run / docker.translate) also carries, as python-on-whales'
    DockerException does, what ran and how it ended: `command` (the argument list), `return_code`
    (its exit status; `exit_code` stays the CLI's exit status) and `stderr` (unmasked: test it,
    never show it; the message is the one-line, masked text for users). All None otherwise."""

    exit_code = 1

    def __init__(
        self,
        message: str = "",
        *,
        command: list[str] | None = None,
        return_code: int | None = None,
        stderr: str | None = None,
    ) -> None:
        super().__init__(message)
        self.command = command
        self.return_code = return_code
        self.stderr = stderr

    def stderr_has(self, *needles: str) -> bool:
        """Whether the failed command's stderr holds any of `needles` (False without a command)."""
        return self.stderr is not None and any(n in self.stderr for n in needles)


class DockerUnavailable(RuntimeFailure):
    """Docker is not installed, not running or not permitted."""


class FaultNotEffective(RuntimeFailure):
    """A fault was applied but the check that it took effect failed."""


class CheckFailed(LabError):
    """A claim, assertion or pre-flight check did not hold (exit 3 so CI can tell it apart)."""

    exit_code = 3


_SECRET_ASSIGNMENT = re.compile(r"(?i)(password|passwd|secret_key|secret|pwd)(\s*[=:]\s*)(\S+)")

_known_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Remember a secret so that every error message masks it, wherever it appears."""
    if value:
        _known_secrets.add(value)


def mask(text: str) -> str:
    """Mask known secrets and password-looking assignments in text shown to users."""
    for s in sorted(_known_secrets, key=len, reverse=True):
        text = text.replace(s, "******")
    return _SECRET_ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}******", text)
