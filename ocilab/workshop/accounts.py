"""Learner accounts: one unix user each (``useradd``/``userdel``), a private home with the notebooks.

``useradd`` also gives each user subordinate uid and gid ranges (``/etc/subuid``,
``/etc/subgid``), which rootless Podman needs; ``userdel --remove`` takes the
user, its group, its home, its mail spool and those ranges away again.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

from ocilab.errors import ComponentUnavailableError, InvalidInputError
from ocilab.workshop.record import Learner

SKELETON = Path("/etc/skel")
#: Directories every user may write to: what learners leave there (Podman's /dev/shm lock, /tmp dirs) goes at `down`.
TEMPORARY = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))
_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,23}")
#: What a learner's home holds besides /etc/skel: the lessons, and a TMPDIR of their own (runc's state goes there).
NOTEBOOKS = "notebooks"
TMP = ".cache/tmp"


def check_prefix(prefix: str) -> str:
    """A user-name prefix (``learner`` gives ``learner1``...); InvalidInputError if it cannot start a user name."""
    if not _NAME.fullmatch(prefix):
        raise InvalidInputError(
            f"--prefix {prefix!r}: a user name starts with a lowercase letter or '_', then at most 23 of a-z 0-9 _ -"
        )
    return prefix


def exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def create(name: str) -> Learner:
    """Create unix user ``name`` with a home of its own (mode 0700) and subordinate id ranges."""
    _run("useradd", "--create-home", "--shell", "/bin/bash", "--comment", "ocilab workshop learner", name)
    entry = pwd.getpwnam(name)
    os.chmod(entry.pw_dir, 0o700)
    return Learner(name, entry.pw_uid, entry.pw_dir)


def delete(learner: Learner) -> None:
    """Remove the user, its group, home, mail spool and subordinate ids; a user already gone is fine."""
    if exists(learner.name) and pwd.getpwnam(learner.name).pw_uid == learner.uid:
        _run("userdel", "--remove", learner.name, ok_codes=(0, 12))  # 12: the home was already gone
    shutil.rmtree(learner.home, ignore_errors=True)


def fill_home(learner: Learner, notebooks: Path, fresh: bool = False) -> None:
    """Give the learner the lessons (a copy of ``notebooks``) and ``~/.cache/tmp``.

    ``fresh`` empties the home first and puts ``/etc/skel`` back: the learner
    starts the lessons again, with no workspace, registry data or images.
    """
    home = Path(learner.home)
    if fresh:
        for entry in home.iterdir():
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        shutil.copytree(SKELETON, home, symlinks=True, dirs_exist_ok=True)
    lessons = home / NOTEBOOKS
    if not lessons.exists():
        shutil.copytree(notebooks, lessons, symlinks=False)
    (home / TMP).mkdir(parents=True, exist_ok=True)
    _chown_tree(home, learner.uid, pwd.getpwnam(learner.name).pw_gid)
    for private in (home, home / ".cache", home / TMP):
        os.chmod(private, 0o700)


def make_runtime_dir(learner: Learner) -> None:
    """``/run/user/UID`` (0700, the learner's), as a login manager would make it."""
    learner.runtime_dir.parent.mkdir(mode=0o755, exist_ok=True)
    learner.runtime_dir.mkdir(mode=0o700, exist_ok=True)
    os.chown(learner.runtime_dir, learner.uid, pwd.getpwnam(learner.name).pw_gid)


def remove_runtime_dir(learner: Learner) -> None:
    """Remove ``/run/user/UID`` (Podman's run state lives there); ``/run/user`` is left alone."""
    shutil.rmtree(learner.runtime_dir, ignore_errors=True)


def remove_temporary_files(uids: set[int]) -> list[Path]:
    """Remove what these users left at the top of ``TEMPORARY`` directories; the paths removed."""
    removed = []
    for directory in TEMPORARY:
        for entry in directory.iterdir() if directory.is_dir() else ():
            try:
                if entry.lstat().st_uid not in uids:
                    continue
            except FileNotFoundError:
                continue
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() and not entry.is_symlink() else entry.unlink(
                True
            )
            removed.append(entry)
    return removed


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid, follow_symlinks=False)
    for directory, names, files in os.walk(root):
        for name in names + files:
            os.chown(os.path.join(directory, name), uid, gid, follow_symlinks=False)


def _run(*command: str, ok_codes: tuple[int, ...] = (0,)) -> None:
    tool = shutil.which(command[0]) or shutil.which(command[0], path="/usr/sbin:/sbin")
    if tool is None:
        raise ComponentUnavailableError(f"{command[0]} is not installed (Debian package passwd)")
    result = subprocess.run([tool, *command[1:]], capture_output=True, text=True, timeout=120, check=False)
    if result.returncode not in ok_codes:
        raise ComponentUnavailableError(f"`{' '.join(command)}` failed: {result.stderr.strip() or result.returncode}")
