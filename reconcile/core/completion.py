"""Shell completion for bash, zsh and fish, generated from the CLI's argparse parser. Pure.

`spec(parser)` reads the parser once into plain values (commands, their options and
positionals); each `render_*` writes one shell's script from them, so a command or option
added to the CLI is completed without anyone listing it here. What a word completes to:

- a command after `reconcile`; an option after `-`, the global ones before the command;
- an option's value: its `choices`, a file name for `type=Path`, nothing otherwise;
- a positional: a file name for `type=Path` (MANIFEST, PLAN); a machine name for the
  metavars in `MACHINE_METAVARS` (GUEST, NAME), read from the manifest typed before it by
  `reconcile inventory --format names -- MANIFEST` (the manifest is only read); nothing
  for the words of a remote command (`nargs=REMAINDER`).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SHELLS = ("bash", "zsh", "fish")
MACHINE_METAVARS = frozenset({"GUEST", "NAME"})
FILE, MACHINE, REST, ANY, CHOICES = "file", "machine", "rest", "any", "choices"


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]  # e.g. ("-y", "--yes")
    help: str
    takes_value: bool
    value: str = ANY  # FILE, CHOICES or ANY (for an option that takes a value)
    choices: tuple[str, ...] = ()
    metavar: str = "VALUE"
    repeats: bool = False


@dataclass(frozen=True)
class Positional:
    name: str
    kind: str  # FILE, MACHINE, CHOICES, REST or ANY
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    options: tuple[Option, ...]
    positionals: tuple[Positional, ...]

    @property
    def rest_after(self) -> int:
        """How many positionals come before the remote command's words (0: none)."""
        kinds = [p.kind for p in self.positionals]
        return kinds.index(REST) if REST in kinds else 0


@dataclass(frozen=True)
class Spec:
    prog: str
    options: tuple[Option, ...]  # before the command
    commands: tuple[Command, ...]


def _help(action: argparse.Action) -> str:
    text = action.help or ""
    return " ".join(text.split())


def _option(action: argparse.Action) -> Option:
    flags = tuple(action.option_strings)
    repeats = isinstance(action, argparse._AppendAction | argparse._CountAction)
    if action.nargs == 0:
        return Option(flags, _help(action), takes_value=False, repeats=repeats)
    metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
    if action.choices is not None:
        choices = tuple(str(c) for c in action.choices)
        return Option(flags, _help(action), True, CHOICES, choices, metavar, repeats)
    kind = FILE if action.type is Path else ANY
    return Option(flags, _help(action), True, kind, (), metavar, repeats)


def _positional(action: argparse.Action) -> Positional:
    name = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
    if action.nargs == argparse.REMAINDER:
        return Positional(name, REST)
    if action.choices is not None:
        return Positional(name, CHOICES, tuple(str(c) for c in action.choices))
    if action.type is Path:
        return Positional(name, FILE)
    return Positional(name, MACHINE if name in MACHINE_METAVARS else ANY)


def _parts(parser: argparse.ArgumentParser) -> tuple[list[Option], list[Positional]]:
    options, positionals = [], []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        if action.option_strings:
            options.append(_option(action))
        else:
            positionals.append(_positional(action))
    return options, positionals


def spec(parser: argparse.ArgumentParser) -> Spec:
    options, _ = _parts(parser)
    commands = []
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: _help(choice) for choice in action._choices_actions}
        for name, sub in action.choices.items():
            sub_options, positionals = _parts(sub)
            commands.append(
                Command(name, helps.get(name, ""), tuple(sub_options), tuple(positionals))
            )
    return Spec(parser.prog, tuple(options), tuple(commands))


def render(shell: str, parsed: Spec) -> str:
    if shell == "bash":
        return render_bash(parsed)
    if shell == "zsh":
        return render_zsh(parsed)
    if shell == "fish":
        return render_fish(parsed)
    raise ValueError(f"unknown shell {shell!r}")


def _flags(options: Iterable[Option]) -> str:
    return " ".join(flag for option in options for flag in option.flags)


def _value_options(parsed: Spec) -> list[tuple[str, Option]]:
    """(command or "" for the global ones, option) for every option that takes a value."""
    found = [("", o) for o in parsed.options if o.takes_value]
    found += [(c.name, o) for c in parsed.commands for o in c.options if o.takes_value]
    return found


# -- bash -------------------------------------------------------------------------------


def _bash_word(text: str) -> str:
    """A word for a bash `case` pattern or `compgen -W`: our names need no quoting, but
    anything else is single-quoted."""
    safe = all(c.isalnum() or c in "-_:.|" for c in text)
    return text if safe and text else "'" + text.replace("'", "'\\''") + "'"


def _bash_reply(words: str) -> str:
    return f'COMPREPLY=($(compgen -W {words} -- "$cur"))'


def render_bash(parsed: Spec) -> str:
    prog = parsed.prog
    fn = f"_{prog}"
    values = _value_options(parsed)
    skip = "|".join(_bash_word(f"{cmd}:{flag}") for cmd, o in values for flag in o.flags)
    skip = skip or "__no_option_takes_a_value__"
    value_cases = []
    for cmd, option in values:
        pattern = "|".join(_bash_word(f"{cmd}:{flag}") for flag in option.flags)
        if option.value == CHOICES:
            words = _bash_word(" ".join(option.choices))
            value_cases.append(f"            {pattern}) {_bash_reply(words)} ;;")
        elif option.value == FILE:
            value_cases.append(f"            {pattern}) {fn}_files ;;")
    rests = [
        f"                    {c.name}) rest={c.rest_after} ;;"
        for c in parsed.commands
        if c.rest_after
    ]
    option_cases = [
        f"            {c.name}) COMPREPLY=($(compgen -W {_bash_word(_flags(c.options))} "
        '-- "$cur")) ;;'
        for c in parsed.commands
    ]
    positional_cases = []
    for command in parsed.commands:
        for index, positional in enumerate(command.positionals, start=1):
            if positional.kind == FILE:
                positional_cases.append(f"            {command.name}:{index}) {fn}_files ;;")
            elif positional.kind == CHOICES:
                words = _bash_word(" ".join(positional.choices))
                positional_cases.append(
                    f"            {command.name}:{index}) {_bash_reply(words)} ;;"
                )
            elif positional.kind == MACHINE:
                positional_cases.append(
                    f"            {command.name}:{index}) "
                    f'COMPREPLY=($(compgen -W "$({fn}_names "$manifest")" -- "$cur")) ;;'
                )
    commands = " ".join(c.name for c in parsed.commands)
    return f"""\
# bash completion for {prog}, generated by `{prog} completion bash` from its parser.
# Use it now: source <({prog} completion bash)
# For good: {prog} completion bash > ~/.local/share/bash-completion/completions/{prog}

{fn}_files() {{
    compopt -o filenames 2>/dev/null
    COMPREPLY=($(compgen -f -- "$cur"))
}}

# The guests and hosts of a manifest (read, never applied), for GUEST and NAME.
{fn}_names() {{
    local manifest=${{1/#\\~/$HOME}}
    [[ -f $manifest ]] || return 0
    "${{COMP_WORDS[0]}}" inventory --format names -- "$manifest" 2>/dev/null
}}

{fn}() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}}
    local cmd="" manifest="" word option i skip=0 npos=0 rest=0
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${{COMP_WORDS[i]}}
        # bash cuts `--format=json` and `tag:web` at = and :; the rest is the same word
        if [[ $word == "=" || $word == ":" ]]; then skip=1; continue; fi
        if ((skip)); then skip=0; continue; fi
        if ((rest && npos >= rest)); then return 0; fi  # a remote command's words
        case $cmd:$word in
            {skip}) skip=1 ;;
            *:-*) ;;
            :*)
                cmd=$word
                case $cmd in
{chr(10).join(rests) or "                    *) ;;"}
                esac
                ;;
            *) ((npos++)); ((npos == 1)) && manifest=$word ;;
        esac
    done
    if ((skip)); then
        option=${{COMP_WORDS[COMP_CWORD-1]}}
        [[ $option == "=" ]] && option=${{COMP_WORDS[COMP_CWORD-2]}}
        case $cmd:$option in
{chr(10).join(value_cases)}
        esac
        return 0
    fi
    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W {_bash_word(_flags(parsed.options))} -- "$cur"))
        else
            COMPREPLY=($(compgen -W {_bash_word(commands)} -- "$cur"))
        fi
        return 0
    fi
    if ((rest && npos >= rest)); then return 0; fi
    if [[ $cur == -* ]]; then
        case $cmd in
{chr(10).join(option_cases)}
        esac
        return 0
    fi
    case $cmd:$((npos + 1)) in
{chr(10).join(positional_cases)}
    esac
    return 0
}}

complete -F {fn} {prog}
"""


# -- zsh --------------------------------------------------------------------------------


def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")


def _zsh_message(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:")


def _zsh_action(option: Option) -> str:
    if option.value == CHOICES:
        return "(" + " ".join(option.choices) + ")"
    return "_files" if option.value == FILE else " "


def _zsh_option(option: Option) -> str:
    """One `_arguments` spec, e.g. `'(-y --yes)'{-y,--yes}'[do not ask]'`."""
    help_text = _zsh_help(option.help)
    tail = f"[{help_text}]"
    if option.takes_value:
        tail += f":{_zsh_message(option.metavar)}:{_zsh_action(option)}"
    long_eq = "=" if option.takes_value else ""
    if option.repeats:
        prefix = "'*'"
    elif any(f in ("-h", "--help", "--version") for f in option.flags):
        prefix = "'(- *)'"
    else:
        prefix = _zsh_quote("(" + " ".join(option.flags) + ")")
    flags = [f + (long_eq if f.startswith("--") else "") for f in option.flags]
    names = flags[0] if len(flags) == 1 else "{" + ",".join(flags) + "}"
    return f"{prefix}{names}{_zsh_quote(tail)}"


def _zsh_positionals(command: Command) -> list[str]:
    specs = []
    for index, positional in enumerate(command.positionals, start=1):
        message = _zsh_message(positional.name)
        if positional.kind == REST:
            specs.append(_zsh_quote(f"*::{message}: "))
        elif positional.kind == FILE:
            specs.append(_zsh_quote(f"{index}:{message}:_files"))
        elif positional.kind == MACHINE:
            specs.append(_zsh_quote(f"{index}:{message}:->machine"))
        elif positional.kind == CHOICES:
            choices = " ".join(positional.choices)
            specs.append(_zsh_quote(f"{index}:{message}:({choices})"))
        else:
            specs.append(_zsh_quote(f"{index}:{message}: "))
    return specs


def _zsh_arguments(specs: list[str], indent: str) -> str:
    joined = f" \\\n{indent}    ".join(specs)
    return f"{indent}_arguments -C -s \\\n{indent}    {joined} && ret=0"


def render_zsh(parsed: Spec) -> str:
    prog = parsed.prog
    top = [_zsh_option(o) for o in parsed.options]
    top += ["'1:command:->command'", "'*::argument:->argument'"]
    described = "\n".join(
        f"                {_zsh_quote(c.name + ':' + c.help)}" for c in parsed.commands
    )
    cases = []
    for command in parsed.commands:
        specs = [_zsh_option(o) for o in command.options] + _zsh_positionals(command)
        cases.append(
            f"                {command.name})\n"
            + _zsh_arguments(specs, " " * 20)
            + "\n                    ;;"
        )
    return f"""\
#compdef {prog}
# zsh completion for {prog}, generated by `{prog} completion zsh` from its parser.
# Use it now: source <({prog} completion zsh)   (after compinit)
# For good: {prog} completion zsh > "${{fpath[1]}}/_{prog}", then restart zsh.

# The guests and hosts of a manifest (read, never applied), for GUEST and NAME.
_{prog}_names() {{
    local prog=$1 manifest=${{2/#\\~/$HOME}}
    local -a names
    [[ -f $manifest ]] || return 1
    names=(${{(f)"$(_call_program names ${{(q)prog}} inventory --format names \\
        -- ${{(q)manifest}} 2>/dev/null)"}})
    _describe -t names 'guest or host' names
}}

_{prog}() {{
    local prog=$words[1]
    local curcontext=$curcontext state state_descr line ret=1
    typeset -A opt_args
{_zsh_arguments(top, "    ")}
    case $state in
        command)
            local -a commands
            commands=(
{described}
            )
            _describe -t commands command commands && ret=0
            ;;
        argument)
            curcontext=${{curcontext%:*:*}}:{prog}-$words[1]:
            case $words[1] in
{chr(10).join(cases)}
            esac
            if [[ $state == machine ]]; then
                _{prog}_names $prog $line[1] && ret=0
            fi
            ;;
    esac
    return ret
}}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _{prog} "$@"
else
    compdef _{prog} {prog}
fi
"""


# -- fish -------------------------------------------------------------------------------


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_option(condition: str, option: Option) -> str:
    parts = ["complete", "-c", "PROG", "-n", _fish_quote(condition)]
    for flag in option.flags:
        if flag.startswith("--"):
            parts += ["-l", flag[2:]]
        else:
            parts += ["-s", flag[1:]]
    if option.takes_value:
        if option.value == CHOICES:
            parts += ["-x", "-a", _fish_quote(" ".join(option.choices))]
        elif option.value == FILE:
            parts += ["-r", "-F"]
        else:
            parts += ["-x"]
    if option.help:
        parts += ["-d", _fish_quote(option.help)]
    return " ".join(parts)


def render_fish(parsed: Spec) -> str:
    prog = parsed.prog
    values = " ".join(
        _fish_quote(f"{cmd}:{flag}") for cmd, o in _value_options(parsed) for flag in o.flags
    )
    lines = [f"complete -c {prog} -f"]
    lines += [_fish_option(f"__{prog}_none", o) for o in parsed.options]
    lines += [
        f"complete -c {prog} -n __{prog}_none -a {c.name} -d {_fish_quote(c.help)}"
        for c in parsed.commands
    ]
    for command in parsed.commands:
        lines += [_fish_option(f"__{prog}_in {command.name}", o) for o in command.options]
        for index, positional in enumerate(command.positionals, start=1):
            at = _fish_quote(f"__{prog}_at {command.name} {index}")
            if positional.kind == FILE:
                lines.append(f"complete -c {prog} -n {at} -F")
            elif positional.kind == MACHINE:
                lines.append(f"complete -c {prog} -n {at} -a '(__{prog}_names)'")
            elif positional.kind == CHOICES:
                choices = _fish_quote(" ".join(positional.choices))
                lines.append(f"complete -c {prog} -n {at} -a {choices}")
    body = "\n".join(line.replace(" -c PROG ", f" -c {prog} ") for line in lines)
    return f"""\
# fish completion for {prog}, generated by `{prog} completion fish` from its parser.
# Use it now: {prog} completion fish | source
# For good: {prog} completion fish > ~/.config/fish/completions/{prog}.fish

# The command and the positionals before the cursor (options and their values left out).
function __{prog}_words
    set -l words (commandline -opc)
    set -e words[1]
    set -l out
    set -l skip 0
    for word in $words
        if test $skip = 1
            set skip 0
        else if contains -- "$out[1]:$word" {values}
            set skip 1
        else if not string match -q -- '-*' $word
            set -a out $word
        end
    end
    set -q out[1]; and printf '%s\\n' $out
end

# Whether no command is typed yet.
function __{prog}_none
    test (count (__{prog}_words)) -eq 0
end

# Whether the command is CMD; with N, whether its positional N is the next word.
function __{prog}_at --argument-names cmd n
    set -l words (__{prog}_words)
    test "$words[1]" = "$cmd"; or return 1
    test -z "$n"; or test (count $words) -eq "$n"
end

function __{prog}_in --argument-names cmd
    __{prog}_at $cmd
end

# The guests and hosts of the manifest typed before (read, never applied).
function __{prog}_names
    set -l words (__{prog}_words)
    set -l manifest (string replace -r '^~' $HOME -- $words[2])
    test -f "$manifest"; or return
    set -l prog (commandline -opc)[1]
    $prog inventory --format names -- $manifest 2>/dev/null
end

{body}
"""
