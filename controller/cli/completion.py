"""`labctl completion bash|zsh|fish`: shell completion generated from the parser itself.

Verbs, each verb's flags and every resource type come from the same parser and kind
registry labctl runs with, so completion cannot drift from the commands. Object names are
completed by asking labctl (`labctl get TYPE -o name`) at completion time.
"""

from __future__ import annotations

import argparse

from controller.app import kind_registry
from controller.cli.errors import UsageError
from controller.cli.verb import Subparsers, add_verb

TYPED_VERBS = ("get", "describe", "delete", "edit", "patch", "label", "annotate", "scale", "wait")
"""Verbs whose first argument is a TYPE and the rest names."""


def register(sub: Subparsers) -> None:
    completion = add_verb(
        sub,
        "completion",
        "print a shell completion script (bash, zsh or fish); e.g. "
        "`source <(labctl completion bash)`",
        cmd_completion,
        etcd=False,
        namespaced=False,
    )
    completion.add_argument("shell", choices=["bash", "zsh", "fish"])


def _verbs() -> dict[str, list[str]]:
    from controller.cli.parser import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    verbs: dict[str, list[str]] = {}
    for name, verb in sub.choices.items():
        flags = sorted(option for action in verb._actions for option in action.option_strings)
        verbs[name] = flags
    return verbs


def _types() -> list[str]:
    names: set[str] = set()
    for kind in kind_registry():
        names.update({kind.plural, kind.singular, *kind.short_names})
    return sorted(names)


def bash_script() -> str:
    verbs = _verbs()
    cases = "\n".join(
        f'        {name}) flags="{" ".join(flags)}" ;;' for name, flags in verbs.items()
    )
    return f"""# labctl bash completion: source <(labctl completion bash)
_labctl() {{
    local cur verb flags i
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    COMPREPLY=()
    if [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=( $(compgen -W "{" ".join(verbs)}" -- "$cur") )
        return 0
    fi
    verb="${{COMP_WORDS[1]}}"
    case "$verb" in
{cases}
        *) flags="" ;;
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=( $(compgen -W "$flags" -- "$cur") )
        return 0
    fi
    case "$verb" in
        config)
            if [[ $COMP_CWORD -eq 2 ]]; then
                COMPREPLY=( $(compgen -W "get-contexts current-context use-context view" -- "$cur") )
            elif [[ "${{COMP_WORDS[2]}}" == use-context ]]; then
                COMPREPLY=( $(compgen -W "$(labctl config get-contexts 2>/dev/null | tail -n +2 | tr -d '*' | awk '{{print $1}}')" -- "$cur") )
            fi
            return 0 ;;
        completion)
            COMPREPLY=( $(compgen -W "bash zsh fish" -- "$cur") )
            return 0 ;;
        explain|{"|".join(TYPED_VERBS)})
            local type=""
            for (( i=2; i<COMP_CWORD; i++ )); do
                if [[ "${{COMP_WORDS[i]}}" != -* ]]; then type="${{COMP_WORDS[i]}}"; break; fi
            done
            if [[ -z "$type" ]]; then
                COMPREPLY=( $(compgen -W "{" ".join(_types())}" -- "$cur") )
            elif [[ "$verb" != explain ]]; then
                COMPREPLY=( $(compgen -W "$(labctl get "$type" -o name 2>/dev/null | sed 's#.*/##')" -- "$cur") )
            fi
            return 0 ;;
    esac
}}
complete -F _labctl labctl
"""


def zsh_script() -> str:
    return (
        "#compdef labctl\n# labctl zsh completion: source <(labctl completion zsh)\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + bash_script()
    )


def fish_script() -> str:
    verbs = _verbs()
    lines = ["# labctl fish completion: labctl completion fish | source", "complete -c labctl -f"]
    for name in verbs:
        lines.append(f"complete -c labctl -n __fish_use_subcommand -a {name}")
    for name, flags in verbs.items():
        for flag in flags:
            if flag.startswith("--"):
                lines.append(
                    f"complete -c labctl -n '__fish_seen_subcommand_from {name}' -l {flag[2:]}"
                )
            else:
                lines.append(
                    f"complete -c labctl -n '__fish_seen_subcommand_from {name}' -s {flag[1:]}"
                )
    typed = " ".join(TYPED_VERBS)
    lines.append(
        f"complete -c labctl -n '__fish_seen_subcommand_from {typed} explain' -a '{' '.join(_types())}'"
    )
    return "\n".join(lines) + "\n"


def cmd_completion(args: argparse.Namespace) -> int:
    scripts = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}
    if args.shell not in scripts:
        raise UsageError(f"unsupported shell {args.shell!r}: bash, zsh or fish")
    print(scripts[args.shell](), end="")
    return 0
