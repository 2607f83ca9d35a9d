"""The two ways a `labctl` verb fails, mapped by `controller.cli.main` to its exit codes.

Shared by the CLI's helper modules (manifests, targets, rendering) so that each can stop a
command with a sentence for the operator without importing the verbs.
"""

from __future__ import annotations


class CliError(Exception):
    """The operation failed in a way the user should read: one `error:` line, exit code 1."""


class UsageError(CliError):
    """The command line itself is wrong (a missing or malformed argument): exit code 2."""
