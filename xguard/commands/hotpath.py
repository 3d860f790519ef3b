"""Click faces of the hot-path verbs, made from their one table
(xguard/frontends/verbs.py), for `xguard --help`, the man page and the
completions. `xguard run|check|hook|ssh-gate` never reach these: __main__
sends them to xguard/frontends/shell.py before click is imported. Called
anyway (through click), they hand their words back to the same dispatcher.
"""

from __future__ import annotations

from typing import Any

import click

from xguard.adapters import HOOKS
from xguard.frontends.verbs import VERBS, Verb


def _face(verb: Verb) -> click.Command:
    params: list[click.Parameter] = []
    for o in verb.options:
        params.append(
            click.Option(
                list(o.names),
                o.dest,
                is_flag=o.flag,
                multiple=o.multi,
                metavar=None if o.flag else o.metavar,
                type=click.Choice(list(o.choices)) if o.choices else None,
                help=o.help,
            )
        )
    for a in verb.positionals:
        if a.many:
            params.append(
                click.Argument([a.name], nargs=-1, type=click.UNPROCESSED, required=a.required)
            )
        else:
            choice = click.Choice(list(HOOKS)) if verb.name == "hook" else None
            params.append(click.Argument([a.name], type=choice, required=a.required))
    if verb.name == "hook":  # the runtime's own words, passed on
        params.append(click.Argument(["args"], nargs=-1, type=click.UNPROCESSED))

    def callback(**values: Any) -> int:
        from xguard.frontends.shell import dispatch

        words: list[str] = []
        for a in verb.positionals:
            if not a.many and values.get(a.name) is not None:
                words.append(str(values[a.name]))
        for o in verb.options:
            v = values.get(o.dest)
            if o.flag and v:
                words.append(o.names[0])
            elif o.multi:
                for x in v or ():
                    words += [o.names[0], x]
            elif v is not None and not o.flag:
                words += [o.names[0], v]
        words += list(values.get("args") or ())
        many = [a for a in verb.positionals if a.many]
        if many and values.get(many[0].name):
            words += ["--", *values[many[0].name]]
        return dispatch(verb.name, words)

    examples = "\n".join(f"  {e}" for e in verb.examples)
    return click.Command(
        verb.name,
        params=params,
        callback=callback,
        help=verb.summary + (f"\n\n{verb.epilog}" if verb.epilog else ""),
        short_help=verb.summary,
        epilog=f"\b\nExamples:\n{examples}",
        context_settings={
            "ignore_unknown_options": verb.name in ("run", "hook"),
            "allow_interspersed_args": verb.name != "run",
        },
    )


run_cmd = _face(VERBS["run"])
check_cmd = _face(VERBS["check"])
hook_cmd = _face(VERBS["hook"])
ssh_gate_cmd = _face(VERBS["ssh-gate"])
