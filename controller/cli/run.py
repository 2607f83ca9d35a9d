"""`labctl run` (the controller itself) and `labctl providers` (its provider plug-ins).

`run`'s settings are the controller's (controller.config: each a flag and a variable); this
module only calls `config.add_arguments` and `config.load`.
"""

from __future__ import annotations

import argparse
import os

from controller import config
from controller.cli.errors import CliError
from controller.cli.printers import format_rows
from controller.cli.verb import Subparsers, add_verb


def register(sub: Subparsers) -> None:
    run = add_verb(
        sub,
        "run",
        "run the controller (settings: flags or environment)",
        cmd_run,
        etcd=False,
        namespaced=False,
    )
    config.add_arguments(run)
    add_verb(
        sub,
        "providers",
        "list the installed provider plug-ins and their settings",
        cmd_providers,
        etcd=False,
        namespaced=False,
    )


def cmd_run(args: argparse.Namespace) -> int:
    from controller.app import run_controller

    try:  # a bad setting, or one unusable at start (a port in use): one `error:` line
        return run_controller(config.load(args))
    except config.ConfigError as exc:
        raise CliError(str(exc)) from None


def cmd_providers(args: argparse.Namespace) -> int:
    """Installed provider plug-ins and their settings as this environment resolves them;
    a secret's value is never shown, only whether it is set."""
    from controller.labworker import plugins

    installed = plugins.installed()
    if not installed:
        raise CliError(
            f"no provider plug-ins installed (entry point group {plugins.ENTRY_POINT_GROUP})"
        )
    selected = (os.environ.get("LAB_PROVIDER") or "sim").strip().lower()
    for index, (name, plugin) in enumerate(sorted(installed.items())):
        mark = "   (selected: LAB_PROVIDER)" if name == selected else ""
        print(("\n" if index else "") + f"{name}: {plugin.summary}{mark}")
        rows = [["  SETTING", "DEFAULT", "CURRENT", "HELP"]]
        for setting in plugin.settings:
            value = os.environ.get(setting.env) or None
            if setting.secret:
                current = "(set)" if value else "(unset)"
            else:
                current = value if value is not None else "-"
            rows.append(["  " + setting.env, setting.default or "-", current, setting.help])
        print("\n".join(format_rows(rows)))
    return 0
