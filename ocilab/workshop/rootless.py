"""What ``ocilab doctor`` adds for a user who is not root: does the rootless toolchain work, and if not, why.

Two rows beside the components' own ``podman-rootless``: ``runc-rootless``
(user namespaces, tried for real with ``unshare``) and ``skopeo-auth`` (an
``XDG_RUNTIME_DIR`` of the user's own, where skopeo keeps its auth file).
A probe never raises.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from ocilab.operations.components import ComponentStatus

TIMEOUT = 5.0
ASK = "ask the workshop's instructor (`ocilab workshop up` sets this up for every learner)"


def probe_rootless() -> list[ComponentStatus]:
    """The two rows, for the user running this process."""
    return [_runc(), _skopeo_auth()]


def _runc() -> ComponentStatus:
    name, how = "runc-rootless", f"apt-get install runc; user namespaces must be allowed ({ASK})"
    runc = shutil.which("runc") or shutil.which("runc", path="/usr/sbin:/sbin")
    if runc is None:
        return ComponentStatus(name, False, False, None, "runc is not on PATH", how)
    try:
        result = subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True, timeout=TIMEOUT)
        working, problem = result.returncode == 0, result.stderr.decode(errors="replace").strip()
    except (OSError, subprocess.TimeoutExpired) as error:
        working, problem = False, str(error)
    detail = f"{runc}; user namespaces work" if working else f"user namespaces are not available: {problem[:150]}"
    return ComponentStatus(name, True, working, None, detail, how)


def _skopeo_auth() -> ComponentStatus:
    name, how = "skopeo-auth", f"export XDG_RUNTIME_DIR to a directory of your own (mode 0700); {ASK}"
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if not runtime:
        detail = "XDG_RUNTIME_DIR is not set, so skopeo has no auth file it may write (it defaults to /run/containers)"
        return ComponentStatus(name, False, False, None, detail, how)
    try:
        info = os.stat(runtime)
    except OSError as error:
        return ComponentStatus(name, True, False, None, f"XDG_RUNTIME_DIR={runtime}: {error.strerror}", how)
    if info.st_uid != os.getuid() or not os.access(runtime, os.W_OK):
        return ComponentStatus(name, True, False, None, f"XDG_RUNTIME_DIR={runtime} is not yours to write", how)
    return ComponentStatus(name, True, True, None, f"{runtime}/containers/auth.json", how)
