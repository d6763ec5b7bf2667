"""Kconfig as values: reading .config text, the cache key of a build, and what guests need.

Pure. The adapter (adapters/kernel_build.py) runs make; this module decides.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_SET = re.compile(r"^CONFIG_([A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# CONFIG_([A-Za-z0-9_]+) is not set$")

# What an imageless guest's kernel must have built in (docs/architecture.md, imageless
# guests): the store arrives over virtiofs before any module could be loaded, onto tmpfs.
IMAGELESS_REQUIRED = ("VIRTIO_PCI", "VIRTIO_FS", "FUSE_FS", "TMPFS", "DEVTMPFS")
# Console drivers by the console= a command line names.
CONSOLE_REQUIRED = {
    "ttyS": ("SERIAL_8250", "SERIAL_8250_CONSOLE"),
    "hvc": ("VIRTIO_CONSOLE",),
}

KEY_FORMAT = "kernel-build/1"

# Base configs that are make targets (the schema's kernel `config` pattern says the same; a
# test keeps them equal). Anything else must be a path with a `/`, so no manifest value
# reaches make's command line except these words.
CONFIG_TARGETS = frozenset(
    {"defconfig", "tinyconfig", "allnoconfig", "allyesconfig", "allmodconfig", "alldefconfig"}
)
_ARCH_DEFCONFIG = re.compile(r"[a-z0-9][a-z0-9_]*_defconfig")
_VALUE_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f"\\]')


@dataclass(frozen=True)
class ConfigTarget:
    """`make <target>` makes the base config."""

    target: str


@dataclass(frozen=True)
class ConfigFile:
    """A .config file is the base config; relative paths are relative to the tree."""

    path: str


def base_config(text: str) -> ConfigTarget | ConfigFile:
    """What a kernel's `config` names. Raises ValueError for anything that is neither a known
    make config target nor a path (one with a `/`, not starting with `-`)."""
    if text in CONFIG_TARGETS or _ARCH_DEFCONFIG.fullmatch(text):
        return ConfigTarget(text)
    if "/" in text and not text.startswith("-") and text.isprintable():
        return ConfigFile(text)
    raise ValueError(
        f"kernel config {text!r} is neither a make config target "
        f"({', '.join(sorted(CONFIG_TARGETS))}, <name>_defconfig) nor a path with a `/`"
    )


def parse_config(text: str) -> dict[str, str]:
    """Options of a .config or fragment, without the CONFIG_ prefix; `n` for `is not set`."""
    options: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if match := _SET.match(line):
            options[match.group(1)] = (
                match.group(2).strip().strip('"')
                if match.group(2).startswith('"')
                else match.group(2).strip()
            )
        elif match := _UNSET.match(line):
            options[match.group(1)] = "n"
    return options


def render_fragment(options: Iterable[tuple[str, str]]) -> str:
    """A fragment for `set = {...}`: `n` becomes `# CONFIG_X is not set`.

    Raises ValueError for a name or value that could end its line or its quotes (the
    schema refuses them first): each option is exactly one line.
    """
    lines = []
    for name, value in options:
        if not re.fullmatch(r"[A-Za-z0-9_]+", name) or not value or _VALUE_FORBIDDEN.search(value):
            raise ValueError(f"kernel option {name}={value!r} cannot be written on one line")
        if value == "n":
            lines.append(f"# CONFIG_{name} is not set")
        elif value in ("y", "m") or value.lstrip("-").isdigit() or value.startswith("0x"):
            lines.append(f"CONFIG_{name}={value}")
        else:
            lines.append(f'CONFIG_{name}="{value}"')
    return "\n".join(lines) + ("\n" if lines else "")


def required_options(cmdlines: Iterable[str]) -> tuple[str, ...]:
    """What a kernel booting imageless guests with these command lines must build in."""
    needed = list(IMAGELESS_REQUIRED)
    for cmdline in cmdlines:
        for word in cmdline.split():
            if not word.startswith("console="):
                continue
            device = word.removeprefix("console=").split(",")[0]
            for prefix, options in CONSOLE_REQUIRED.items():
                if device.startswith(prefix):
                    needed.extend(o for o in options if o not in needed)
    return tuple(needed)


@dataclass(frozen=True)
class Missing:
    option: str
    value: str  # what the resolved config has: "n", "m", or "" when absent


def missing_options(config: Mapping[str, str], required: Iterable[str]) -> list[Missing]:
    return [
        Missing(option, config.get(option, "")) for option in required if config.get(option) != "y"
    ]


def describe_missing(kernel: str, missing: list[Missing], guests: Iterable[str]) -> str:
    have = ", ".join(f"{m.option} ({'module' if m.value == 'm' else 'not set'})" for m in missing)
    return (
        f"kernel '{kernel}' lacks what imageless guests need built in: {have}; "
        f"guests that boot it: {', '.join(sorted(guests))}"
    )


def fix_fragment(missing: list[Missing]) -> str:
    return "\n".join(f"CONFIG_{m.option}=y" for m in missing)


def build_key(
    *,
    source: str,
    base_config: str,
    fragments: Iterable[str],
    options: Iterable[tuple[str, str]],
    toolchain: str,
) -> str:
    """What determines a build: the source's identity (commit, plus a hash of uncommitted
    changes), the config inputs (the base, each fragment's content, `set`), the toolchain."""
    document = {
        "format": KEY_FORMAT,
        "source": source,
        "base": base_config,
        "fragments": list(fragments),
        "set": sorted(options),
        "toolchain": toolchain,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:24]


def diff_configs(old: dict[str, str], new: dict[str, str]) -> tuple[tuple[str, str, str], ...]:
    """(option, before, after) for each option whose value differs, `n` for unset."""
    names = sorted(set(old) | set(new))
    return tuple(
        (name, old.get(name, "n"), new.get(name, "n"))
        for name in names
        if old.get(name, "n") != new.get(name, "n")
    )
