"""Operating the lab: `inventory`, `completion`, `ssh` (its argv) and `console` (following).

Nothing here needs the real stack: `ssh` is checked up to the argv it would exec (the real
sshd is tests/real/test_operate_ssh.py), and `console` follows a log file this test writes.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconcile import cli
from reconcile.adapters import console as console_log
from reconcile.adapters import process
from reconcile.core import completion
from reconcile.core.console import TerminalFilter
from reconcile.core.errors import ReconcileError
from reconcile.core.ssh_login import config_path
from reconcile.orchestration import operate, pipeline

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHf0ZbUiv2XH5hs3mSz0t8Kb0cYt6a9eXr0JqG3VZbWc"
OTHER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVhmTUhVpvXYpbmqi7rMc9QIr4ldbyGFPIWu5SnU6RB"
RECONCILE = [sys.executable, "-m", "reconcile"]


def write_lab(root: Path, extra: str = "") -> Path:
    """A lab with a host (identity), a disk guest on IPv6 and a port, an imageless guest."""
    path = root / "lab.toml"
    path.write_text(
        f"""\
[lab]
name = "ops"
state_dir = "{root / "state"}"

[hypervisors.local]
uri = "qemu:///system"

[kernels.k]
image = "/nonexistent/vmlinuz"

[guests.web]
mode = "imageless"
system = "demo-a"
kernel = "k"
tags = ["demo", "web"]

[guests.nfs]
mode = "disk"
system = "nfs"
disk = {{ size = "2GiB" }}
tags = ["storage"]
ssh = {{ target = "admin@[fd00::5]", port = 2222, host_key = "{KEY}" }}

[hosts.bm1]
system = "bm1"
tags = ["demo"]
ssh = {{ target = "root@10.0.0.5", host_key = "{KEY}", identity = "/keys/id_ed25519" }}

[hosts.bare]
system = "bare"
ssh = {{ target = "bare.lab.example", host_key = "{KEY}" }}
{extra}"""
    )
    return path


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    return write_lab(tmp_path)


# -- inventory ---------------------------------------------------------------------------


def test_inventory_json_is_a_stable_document(lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["inventory", str(lab), "--format", "json"]) == 0
    text = capsys.readouterr().out
    doc = json.loads(text)
    assert doc["version"] == 1 and doc["lab"] == "ops"
    assert doc["machines"] == {
        "bare": {
            "kind": "host",
            "system": "bare",
            "tags": [],
            "ssh": {"user": "root", "host": "bare.lab.example", "port": 22},
        },
        "bm1": {
            "kind": "host",
            "system": "bm1",
            "tags": ["demo"],
            "ssh": {"user": "root", "host": "10.0.0.5", "port": 22, "identity": "/keys/id_ed25519"},
        },
        "nfs": {
            "kind": "guest",
            "system": "nfs",
            "mode": "disk",
            "hypervisor": "local",
            "tags": ["storage"],
            "ssh": {"user": "admin", "host": "fd00::5", "port": 2222},
        },
        # an imageless guest: no ssh table, so no address at all (never a guess)
        "web": {
            "kind": "guest",
            "system": "demo-a",
            "mode": "imageless",
            "hypervisor": "local",
            "tags": ["demo", "web"],
        },
    }
    assert doc["tags"] == {"demo": ["bm1", "web"], "storage": ["nfs"], "web": ["web"]}
    assert text == json.dumps(doc, indent=2, sort_keys=True) + "\n"  # sorted, byte-stable


ANSIBLE = """\
# Ansible inventory of lab "ops", written by `reconcile inventory`
all:
  hosts:
    "bare":
      ansible_host: "bare.lab.example"
      ansible_port: 22
      ansible_user: "root"
  children:
    "demo":
      hosts:
        "bm1":
          ansible_host: "10.0.0.5"
          ansible_port: 22
          ansible_user: "root"
          ansible_ssh_private_key_file: "/keys/id_ed25519"
        "web": {}
    "storage":
      hosts:
        "nfs":
          ansible_host: "fd00::5"
          ansible_port: 2222
          ansible_user: "admin"
    "web":
      hosts:
        "web": {}
"""


def parse_yaml_subset(text: str) -> object:
    """The block-mapping YAML the inventory writes (`key:`, `key: SCALAR`, `key: {}`),
    every scalar in JSON's spelling: enough to check its structure without PyYAML."""
    root: dict[str, object] = {}
    stack: list[tuple[int, dict[str, object]]] = [(-1, root)]
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        key, _, value = raw.strip().partition(":")
        key = json.loads(key) if key.startswith('"') else key
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        value = value.strip()
        if value == "":
            child: dict[str, object] = {}
            parent[key] = child
            stack.append((indent, child))
        else:
            parent[key] = {} if value == "{}" else json.loads(value)
    return root


def test_inventory_ansible_groups_by_tag(lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["inventory", str(lab)]) == 0  # ansible is the default
    text = capsys.readouterr().out
    assert text == ANSIBLE
    doc = parse_yaml_subset(text)
    assert isinstance(doc, dict)
    children = doc["all"]["children"]
    assert set(children) == {"demo", "storage", "web"}
    assert children["storage"]["hosts"]["nfs"] == {
        "ansible_host": "fd00::5",  # IPv6 without brackets, as Ansible takes it
        "ansible_port": 2222,
        "ansible_user": "admin",
    }
    assert children["web"]["hosts"]["web"] == {}  # no address: none made up
    assert doc["all"]["hosts"] == {  # untagged machines are in `all` itself
        "bare": {"ansible_host": "bare.lab.example", "ansible_port": 22, "ansible_user": "root"}
    }


def test_inventory_quotes_names_yaml_would_misread(tmp_path: Path) -> None:
    lab = write_lab(
        tmp_path,
        '\n[hosts.no]\nsystem = "x"\ntags = ["1e3", "all"]\n'
        f'ssh = {{ target = "root@null", host_key = "{KEY}" }}\n',
    )
    text = operate.inventory(lab, "ansible")
    assert '"no":' in text and '"1e3":' in text and 'ansible_host: "null"' in text
    doc = parse_yaml_subset(text)
    assert isinstance(doc, dict)
    assert "all" not in doc["all"]["children"]  # a tag `all` adds no group: all is all
    assert "no" in doc["all"]["children"]["1e3"]["hosts"]


@pytest.mark.skipif(shutil.which("ansible-inventory") is None, reason="ansible not installed")
def test_ansible_inventory_reads_it(lab: Path, tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(operate.inventory(lab, "ansible"))
    proc = subprocess.run(
        ["ansible-inventory", "-i", str(inventory), "--list"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible")},
    )
    listed = json.loads(proc.stdout)
    assert listed["demo"]["hosts"] == ["bm1", "web"]
    assert listed["storage"]["hosts"] == ["nfs"]
    assert listed["_meta"]["hostvars"]["nfs"] == {
        "ansible_host": "fd00::5",
        "ansible_port": 2222,
        "ansible_user": "admin",
    }
    assert "web" not in listed["_meta"]["hostvars"]


def test_inventory_names_one_a_line(lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["inventory", str(lab), "--format", "names"]) == 0
    assert capsys.readouterr().out == "bare\nbm1\nnfs\nweb\n"


# -- completion ----------------------------------------------------------------------------


def every_command_and_option() -> tuple[list[str], list[str]]:
    parsed = completion.spec(cli.build_parser())
    commands = [c.name for c in parsed.commands]
    options = [f for o in parsed.options for f in o.flags]
    options += [f for c in parsed.commands for o in c.options for f in o.flags]
    return commands, options


@pytest.mark.parametrize("shell", completion.SHELLS)
def test_completion_mentions_every_command_and_option(
    shell: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["completion", shell]) == 0
    script = capsys.readouterr().out
    commands, options = every_command_and_option()
    assert {"console", "ssh", "inventory", "completion", "plan", "apply"} <= set(commands)
    for word in commands:
        assert word in script, word
    for flag in options:
        spelled = (
            flag
            if shell != "fish"
            else ("-l " + flag[2:] if flag[:2] == "--" else "-s " + flag[1:])
        )
        assert spelled in script, (shell, flag)


@pytest.mark.parametrize("shell", completion.SHELLS)
def test_completion_script_parses(shell: str, tmp_path: Path) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    script = tmp_path / f"reconcile.{shell}"
    script.write_text(completion.render(shell, completion.spec(cli.build_parser())))
    proc = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def bash_complete(script: Path, *words: str) -> list[str]:
    """What `_reconcile` offers for the last of `words` (the word being completed)."""
    quoted = " ".join(f"'{w}'" for w in words)
    program = (
        f"source {script}; COMP_WORDS=({quoted}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); "
        'COMPREPLY=(); _reconcile; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    proc = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return [line for line in proc.stdout.splitlines() if line]


@pytest.fixture
def entry_point(tmp_path: Path) -> str:
    """A `reconcile` executable (what the completion runs to read a manifest's names)."""
    path = tmp_path / "bin" / "reconcile"
    path.parent.mkdir()
    path.write_text(f'#!/bin/sh\nexec {sys.executable} -m reconcile "$@"\n')
    path.chmod(0o755)
    return str(path)


def test_bash_completes_commands_options_values_files_and_names(
    lab: Path, tmp_path: Path, entry_point: str
) -> None:
    script = tmp_path / "reconcile.bash"
    script.write_text(completion.render("bash", completion.spec(cli.build_parser())))
    r = entry_point
    assert bash_complete(script, r, "con") == ["console"]
    assert "--log-format" in bash_complete(script, r, "--")
    assert bash_complete(script, r, "--log-format", "") == ["console", "json"]
    assert bash_complete(script, r, "console", str(lab)[:-4]) == [str(lab)]
    assert bash_complete(script, r, "console", str(lab), "") == ["bare", "bm1", "nfs", "web"]
    assert bash_complete(script, r, "ssh", "--", str(lab), "b") == ["bare", "bm1"]
    assert bash_complete(script, r, "ssh", str(lab), "bm1", "--", "") == []  # remote words
    assert bash_complete(script, r, "inventory", str(lab), "--format", "j") == ["json"]
    assert bash_complete(script, r, "drift", "--format", "=", "json", str(lab), "--m") == [
        "--metrics"
    ]
    assert bash_complete(script, r, "completion", "z") == ["zsh"]
    assert "--no-follow" in bash_complete(script, r, "console", "--")


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completes_commands_and_names(lab: Path, tmp_path: Path, entry_point: str) -> None:
    script = tmp_path / "reconcile.fish"
    script.write_text(completion.render("fish", completion.spec(cli.build_parser())))
    env = {**os.environ, "PATH": f"{Path(entry_point).parent}:{os.environ['PATH']}"}

    def offered(line: str) -> list[str]:
        proc = subprocess.run(
            ["fish", "--no-config", "-c", f"source {script}; complete -C '{line}'"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        return [entry.split("\t")[0] for entry in proc.stdout.splitlines()]

    assert offered("reconcile con") == ["console"]
    assert offered(f"reconcile console {lab} ") == ["bare", "bm1", "nfs", "web"]
    assert offered("reconcile --log-format ") == ["console", "json"]
    assert offered(f"reconcile ssh {lab} bm1 -- ") == []


ZSH_CAPTURE = r"""
zmodload zsh/zpty
script=$1 line=$2
zpty z 'zsh -f -i'
zpty -w z 'PROMPT=">"; autoload -U compinit; compinit -u -D'
zpty -w z "source ${(q)script}"
zpty -w z "source ${(q)0:h}/record.zsh"
zpty -wn z "$line"$'\t'
for i in {1..100}; do [[ -s $OFFERED ]] && break; sleep 0.1; done
sleep 0.3
zpty -d z
"""
# what the completion offers, to $OFFERED: every compadd that is not a query of its own
ZSH_RECORD = r"""
compadd () {
    if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then
        builtin compadd "$@"
        return $?
    fi
    typeset -a hits
    builtin compadd -A hits "$@"
    (( $#hits )) && print -l -- $hits >> $OFFERED
    builtin compadd "$@"
}
"""


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completes_commands_values_and_names(
    lab: Path, tmp_path: Path, entry_point: str
) -> None:
    script = tmp_path / "_reconcile"
    script.write_text(completion.render("zsh", completion.spec(cli.build_parser())))
    harness = tmp_path / "capture.zsh"
    harness.write_text(ZSH_CAPTURE)
    (tmp_path / "record.zsh").write_text(ZSH_RECORD)
    out = tmp_path / "offered"
    env = {
        **os.environ,
        "PATH": f"{Path(entry_point).parent}:{os.environ['PATH']}",
        "OFFERED": str(out),
    }

    def offered(line: str) -> list[str]:
        out.unlink(missing_ok=True)
        subprocess.run(
            ["zsh", "-f", str(harness), str(script), line],
            check=True,
            env=env,
            timeout=60,
            capture_output=True,
        )
        return sorted(set(out.read_text().split())) if out.exists() else []

    assert offered("reconcile con") == ["console"]
    assert offered(f"reconcile console {lab} ") == ["bare", "bm1", "nfs", "web"]
    assert offered("reconcile drift --format ") == ["html", "json", "markdown", "text"]


# -- ssh: the argv it would exec -----------------------------------------------------------


class Execed(BaseException):  # not an error: the exec that replaces the process
    def __init__(self, argv: list[str]) -> None:
        super().__init__(argv)
        self.argv = argv


@pytest.fixture
def execed(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(argv: object, env: object = None) -> None:
        raise Execed(list(argv))  # type: ignore[call-overload]

    monkeypatch.setattr(process, "exec_replace", fake)


def ssh_via_cli(*args: str) -> list[str]:
    with pytest.raises(Execed) as caught:
        cli.main(["ssh", *args])
    return caught.value.argv


def option_values(argv: list[str]) -> dict[str, str]:
    values = {}
    for flag, value in itertools.pairwise(argv):
        if flag == "-o":
            key, _, setting = value.partition("=")
            values[key] = setting
    return values


@pytest.mark.usefixtures("execed")
def test_ssh_to_a_host_trusts_only_its_pinned_key(lab: Path, tmp_path: Path) -> None:
    argv = ssh_via_cli(str(lab), "bm1")
    options = option_values(argv)
    assert argv[:3] == ["ssh", "-F", "/dev/null"]  # no ssh_config: no proxy, no shared master
    assert options["StrictHostKeyChecking"] == "yes"
    assert options["GlobalKnownHostsFile"] == "/dev/null"
    assert options["UpdateHostKeys"] == "no"
    known_hosts = Path(options["UserKnownHostsFile"])
    assert known_hosts == tmp_path / "state" / "ssh" / "bm1.known_hosts"
    assert known_hosts.read_text() == f"10.0.0.5 {KEY}\n"  # the pin, and only it
    assert options["IdentitiesOnly"] == "yes"
    assert options["IdentityFile"] == "/keys/id_ed25519"
    assert argv[argv.index("-p") + 1] == "22"
    assert argv[-1] == "root@10.0.0.5"  # a login: no command, no `--`
    text = " ".join(argv)
    for tofu in ("accept-new", "StrictHostKeyChecking=no", "StrictHostKeyChecking=ask"):
        assert tofu not in text


@pytest.mark.usefixtures("execed")
def test_ssh_to_an_ipv6_guest_on_its_port(lab: Path, tmp_path: Path) -> None:
    argv = ssh_via_cli(str(lab), "nfs")
    known_hosts = Path(option_values(argv)["UserKnownHostsFile"])
    assert known_hosts.read_text() == f"[fd00::5]:2222 {KEY}\n"  # as OpenSSH looks it up
    assert argv[-3:] == ["-p", "2222", "admin@fd00::5"]  # OpenSSH takes IPv6 bare
    assert "IdentityFile" not in option_values(argv)


@pytest.mark.usefixtures("execed")
def test_ssh_keeps_the_command_as_argv(lab: Path) -> None:
    words = ["ls", "-l", "--", "a b", "$(touch /tmp/pwned)", "it's", "--help"]
    argv = ssh_via_cli(str(lab), "bm1", "--", *words)
    assert argv[-len(words) - 2 :] == ["root@10.0.0.5", "--", *words]


@pytest.mark.usefixtures("execed")
def test_ssh_with_a_known_hosts_file_keeps_only_this_hosts_lines(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(
        f"other.example {OTHER}\n"
        f"@cert-authority *.lab.example {OTHER}\n"
        f"*.lab.example {OTHER}\n"
        f"pinned.lab.example,10.0.0.9 {KEY}\n"
    )
    lab = write_lab(
        tmp_path,
        f'\n[hosts.pinned]\nsystem = "x"\n'
        f'ssh = {{ target = "pinned.lab.example", known_hosts = "{known}" }}\n',
    )
    argv = ssh_via_cli(str(lab), "pinned")
    written = Path(option_values(argv)["UserKnownHostsFile"])
    assert written.read_text() == f"pinned.lab.example {KEY}\n"
    known.write_text(f"other.example {OTHER}\n")
    with pytest.raises(ReconcileError, match=r"pins no key for pinned\.lab\.example"):
        operate.ssh_argv(pipeline.load(lab), "pinned")


def test_ssh_refuses_what_it_cannot_reach_with_a_pin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = write_lab(
        tmp_path,
        '\n[guests.loose]\nmode = "disk"\nsystem = "x"\ndisk = { size = "2GiB" }\n'
        'ssh = { target = "root@10.0.0.7" }\n',
    )
    assert cli.main(["ssh", str(lab), "web"]) == 1
    err = capsys.readouterr().err
    assert "guest 'web' has no ssh setting" in err and "reconcile console" in err
    assert cli.main(["ssh", str(lab), "bm2"]) == 1
    err = capsys.readouterr().err
    assert "no host or guest 'bm2'" in err and "did you mean 'bm1'?" in err
    assert cli.main(["ssh", str(lab), "loose"]) == 1
    assert "pins no host key; refusing to connect" in capsys.readouterr().err
    assert not (tmp_path / "state" / "ssh").exists()  # refused before anything is written


def test_paths_are_spelled_for_openssh() -> None:
    assert config_path(Path("/var/lib/lab/ssh/a.known_hosts")) == "/var/lib/lab/ssh/a.known_hosts"
    assert config_path(Path("/srv/my lab/k")) == '"/srv/my lab/k"'  # not two files
    assert config_path(Path("/srv/100%h/k")) == "/srv/100%%h/k"  # not a token
    for bad in ('/srv/"q"/k', "/srv/${HOME}/k", "/srv/a\\b", "/srv/a\nb"):
        with pytest.raises(ReconcileError, match="OpenSSH cannot be given"):
            config_path(Path(bad))


# -- console -------------------------------------------------------------------------------


def test_console_errors_name_the_guest(lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["console", str(lab), "wbe"]) == 1
    err = capsys.readouterr().err
    assert "no guest 'wbe'" in err and "did you mean 'web'?" in err
    assert cli.main(["console", str(lab), "bm1"]) == 1
    assert "is a host, not a guest" in capsys.readouterr().err
    assert cli.main(["console", str(lab), "web"]) == 1
    err = capsys.readouterr().err
    assert "the guest has not started yet" in err and "serial.log" in err
    assert not (lab.parent / "state").exists()  # read-only: not even the state directory


def serial_log(lab: Path) -> Path:
    path = pipeline.load(lab).lab.layout.serial_log("web")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_console_no_follow_prints_the_last_lines(
    lab: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    serial_log(lab).write_bytes(b"one\ntwo\r\nthree\n\x1b[32mOK\x1b[0m \x1b]0;owned\x07\n")
    assert cli.main(["console", str(lab), "web", "--lines", "2", "--no-follow"]) == 0
    # colours pass; the window title escape is shown, not obeyed; CR is dropped
    assert capsysbinary.readouterr().out == b"three\n\x1b[32mOK\x1b[0m ^[]0;owned^G\n"
    assert cli.main(["console", str(lab), "web", "-n", "1", "--no-follow", "--raw"]) == 0
    assert capsysbinary.readouterr().out == b"\x1b[32mOK\x1b[0m \x1b]0;owned\x07\n"


def read_until(stream: int, wanted: bytes, timeout_s: float = 20.0) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout_s
    while wanted not in got:
        left = deadline - time.monotonic()
        assert left > 0, f"waited for {wanted!r}, got {got!r}"
        ready, _, _ = select.select([stream], [], [], left)
        if ready:
            chunk = os.read(stream, 65536)
            assert chunk, f"output ended before {wanted!r}: {got!r}"
            got += chunk
    return got


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _signal_masks(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return ", ".join(line for line in status if line.startswith(("SigBlk", "SigIgn", "SigCgt")))


def test_console_follows_appends_and_a_restart_until_ctrl_c(lab: Path) -> None:
    log = serial_log(lab)
    log.write_text("".join(f"boot {i}\n" for i in range(10)))
    proc = subprocess.Popen(
        [*RECONCILE, "console", str(lab), "web", "--lines", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # As a shell on a terminal starts it: Ctrl-C neither ignored nor blocked, whatever
        # the test process inherited or set (the full suite's run failed here twice, on a
        # child that never saw the SIGINT; alone, the test passes).
        preexec_fn=_default_sigint,  # noqa: PLW1509 - two signal calls, no locks
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        out = proc.stdout.fileno()
        assert read_until(out, b"boot 9\n") == b"boot 7\nboot 8\nboot 9\n"
        with log.open("a") as f:
            f.write("login: ")  # a prompt: no newline, shown at once
            f.flush()
            assert read_until(out, b"login: ") == b"login: "
            f.write("root\nwelcome\n")
        assert read_until(out, b"welcome\n") == b"root\nwelcome\n"
        # a restart: the driver removes the log and writes a new one
        log.unlink()
        time.sleep(0.5)
        log.write_text("second boot\n")
        assert read_until(out, b"second boot\n") == b"second boot\n"
        signals = _signal_masks(proc.pid)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"Ctrl-C did not end it; its signal masks: {signals}") from None
        assert code == 0
        err = proc.stderr.read().decode()
        assert "was removed" in err or "was replaced" in err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- the pieces ----------------------------------------------------------------------------


def test_tail_start_counts_lines_like_tail(tmp_path: Path) -> None:
    path = tmp_path / "log"
    cases = {
        b"": {0: b"", 1: b"", 5: b""},
        b"a\nb\nc\n": {0: b"", 1: b"c\n", 2: b"b\nc\n", 3: b"a\nb\nc\n", 9: b"a\nb\nc\n"},
        b"a\nb\nc": {1: b"c", 2: b"b\nc"},  # an unterminated last line is a line
        b"\n\n": {1: b"\n", 2: b"\n\n"},
    }
    for data, wanted in cases.items():
        path.write_bytes(data)
        fd = os.open(path, os.O_RDONLY)
        try:
            for lines, tail in wanted.items():
                start = console_log.tail_start(fd, len(data), lines)
                assert data[start:] == tail, (data, lines)
        finally:
            os.close(fd)
    big = b"".join(b"%06d\n" % i for i in range(100_000))  # many blocks
    path.write_bytes(big)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert big[console_log.tail_start(fd, len(big), 20_000) :].count(b"\n") == 20_000
    finally:
        os.close(fd)


def test_terminal_filter_shows_escapes_and_keeps_colours_across_chunks() -> None:
    shown = TerminalFilter()
    chunks = [b"ok \x1b[3", b"2mgreen\x1b", b"[0m \xc3", b"\xa9 \x1b[2J\xc2\x9b\x07\x7f\r\n"]
    text = "".join(shown.feed(c) for c in chunks) + shown.flush()
    assert text == "ok \x1b[32mgreen\x1b[0m \u00e9 ^[[2J\\x9b^G^?\n"
    assert TerminalFilter().feed(b"\xff\n") == "\ufffd\n"
    cut = TerminalFilter()
    assert cut.feed(b"end\x1b") == "end"
    assert cut.flush() == "^["  # a cut sequence that never finished is shown
