"""Processes and listening ports of given unix users, read from ``/proc``; stopping them safely.

Signals go through a pidfd opened before the owner is checked, so a pid the
kernel hands to another program meanwhile is never signalled.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Collection
from pathlib import Path

STOP_TIMEOUT = 10.0
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def owner(pid: int) -> int | None:
    """The real uid of process ``pid``; None when it is gone or a zombie (dead, waiting for its parent)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if fields.get("State", "").split()[:1] == ["Z"]:
        return None
    return int(fields["Uid"].split()[0]) if "Uid" in fields else None


def processes_of(uids: Collection[int]) -> list[int]:
    """Pids of every live process whose real uid is in ``uids``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and owner(int(entry)) in uids:
            found.append(int(entry))
    return sorted(found)


def command_line(pid: int) -> list[str]:
    """``pid``'s arguments; empty when it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def stop_process(pid: int, uid: int | None = None, command_contains: str | None = None) -> bool:
    """TERM, then KILL after ``STOP_TIMEOUT``, the process ``pid`` if it still is what the caller says.

    ``uid`` and ``command_contains`` (a word of its command line) are checked
    through a pidfd opened first. True when a process was stopped.
    """
    try:
        handle = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return False
    try:
        if uid is not None and owner(pid) != uid:
            return False
        if command_contains is not None and not any(command_contains in part for part in command_line(pid)):
            return False
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                signal.pidfd_send_signal(handle, sig)
            except ProcessLookupError:
                return True
            poller = select.poll()
            poller.register(handle, select.POLLIN)
            if poller.poll(STOP_TIMEOUT * 1000):
                return True
        return True
    finally:
        os.close(handle)


def stop_all(uids: Collection[int], rounds: int = 50) -> None:
    """KILL every process of ``uids``, again until none is left (a dying parent may fork once more).

    Learners' processes get no grace period: their servers were asked to stop
    through the hub first, and what is left over (registries, kernels, Podman's
    pause process) keeps nothing worth saving.
    """
    for _ in range(rounds):
        pids = processes_of(uids)
        if not pids:
            return
        for pid in pids:
            try:
                handle = os.pidfd_open(pid)
            except (ProcessLookupError, OSError):
                continue
            try:
                if owner(pid) in uids:
                    signal.pidfd_send_signal(handle, signal.SIGKILL)
            except ProcessLookupError:
                pass
            finally:
                os.close(handle)
        time.sleep(0.1)


def listening_ports(uid: int) -> list[int]:
    """TCP ports (IPv4 and IPv6) on which sockets owned by ``uid`` listen, from ``/proc/net/tcp*``."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 7 and fields[3] == _LISTEN and int(fields[7]) == uid:
                ports.add(int(fields[1].rpartition(":")[2], 16))
    return sorted(ports)
