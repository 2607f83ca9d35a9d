"""The ways a `labctl` verb fails, mapped by `controller.cli.parser.main` to exit codes.

Shared by every module of the CLI so that each can stop a command with a sentence for the
operator without importing the verbs. Exit codes: 0 success, 1 the operation failed, 2 bad
usage (and `diff`'s "an error, not a difference", as kubectl).
"""

from __future__ import annotations

import sys


class CliError(Exception):
    """The operation failed in a way the user should read: one `error:` line, exit code 1."""

    code = 1


class UsageError(CliError):
    """The command line itself is wrong (a missing or malformed argument): exit code 2."""

    code = 2


def report(message: str) -> None:
    """One failed object among several: an `error:` line, and the command goes on."""
    print(f"error: {message}", file=sys.stderr)
