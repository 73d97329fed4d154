"""Learners cannot reach each other's loopback servers: registries, Jupyter servers, kernels.

Every local user can connect to every port on 127.0.0.1, so a learner's
registry on a free port would be open to the whole room. The kernel knows who
is on each end of a loopback connection, and netfilter can ask it: in the
``OUTPUT`` chain the SYN belongs to the connecting socket and the SYN-ACK to
the listening one (``-m owner``). The rules here write the connecting
learner's number into the low 12 bits of the connection's mark, the listening
learner's into the next 12, and answer the connecting side's next packet with
a TCP reset when both are learners and not the same one (the reset itself,
which carries the connection's mark too, passes). Connections from
anyone else (root, the hub, its proxy) are left alone. One chain,
``OCILAB-WORKSHOP``, jumped to from ``OUTPUT`` for TCP on ``lo``, for IPv4
and IPv6; ``remove`` takes it all away again.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from ocilab.errors import ComponentUnavailableError, InvalidInputError

CHAIN = "OCILAB-WORKSHOP"
CLIENT_MASK = 0x000FFF
SERVER_MASK = 0xFFF000
MAX_LEARNERS = CLIENT_MASK
_JUMP = ["OUTPUT", "-o", "lo", "-p", "tcp", "-j", CHAIN]


def _tools() -> list[str]:
    found = [tool for tool in (shutil.which("iptables"), shutil.which("ip6tables")) if tool]
    if not found:
        raise ComponentUnavailableError("iptables is not installed (Debian package iptables): learners need it")
    return found


def _call(tool: str, *arguments: str, check: bool = True) -> bool:
    result = subprocess.run([tool, "-w", *arguments], capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        raise ComponentUnavailableError(f"{tool} {' '.join(arguments)} failed: {result.stderr.strip()}")
    return result.returncode == 0


def rules(uids: Sequence[int]) -> list[list[str]]:
    """The chain's rules (``iptables -A`` arguments) for learners with ``uids``, learner number = position + 1."""
    if len(uids) > MAX_LEARNERS:
        raise InvalidInputError(f"{len(uids)} learners: the firewall tells at most {MAX_LEARNERS} apart")
    rejects, marks = [], []
    for number, uid in enumerate(uids, start=1):
        server = f"{number << 12:#x}/{SERVER_MASK:#x}"
        client = f"{number:#x}/{CLIENT_MASK:#x}"
        not_a_reset = ["-p", "tcp", "!", "--tcp-flags", "RST", "RST"]
        from_another_learner = ["!", "--mark", f"0/{CLIENT_MASK:#x}", "-m", "connmark", "!", "--mark", client]
        rejects.append(
            [*not_a_reset, "-m", "connmark", "--mark", server, "-m", "connmark", *from_another_learner,
             "-j", "REJECT", "--reject-with", "tcp-reset"]
        )  # fmt: skip
        owned = ["-m", "owner", "--uid-owner", str(uid)]
        marks.append(["-m", "conntrack", "--ctstate", "NEW", *owned, "-j", "CONNMARK", "--set-xmark", client])
        marks.append(
            ["-p", "tcp", "--tcp-flags", "SYN,ACK", "SYN,ACK", *owned, "-j", "CONNMARK", "--set-xmark", server]
        )  # fmt: skip
    # Rejects first: a SYN-ACK passes them before its own rule marks the listener, the client's ACK does not.
    return rejects + marks


def install(uids: Sequence[int]) -> None:
    """(Re)create the chain for these learners and jump to it from ``OUTPUT``."""
    wanted = rules(uids)
    remove()
    for tool in _tools():
        _call(tool, "-N", CHAIN)
        for rule in wanted:
            _call(tool, "-A", CHAIN, *rule)
        _call(tool, "-I", *_JUMP[:1], "1", *_JUMP[1:])


def remove() -> None:
    """Remove the jump and the chain; nothing happens where they do not exist."""
    for tool in _tools():
        while _call(tool, "-D", *_JUMP, check=False):
            pass
        if _call(tool, "-F", CHAIN, check=False):
            _call(tool, "-X", CHAIN)


def installed() -> bool:
    """True when the chain exists (for IPv4)."""
    return _call(_tools()[0], "-S", CHAIN, check=False)
