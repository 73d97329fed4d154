"""An image config turned into a runtime-spec ``config.json``, by the image-spec's conversion rules (conversion.md).

From the image: ``process.args`` = Entrypoint + Cmd, ``process.env`` = Env
(PATH added only when the image sets none), ``process.cwd`` = WorkingDir
(``/`` by default), ``process.user`` resolved by ``passwd.resolve_user``,
one tmpfs mount per ``Volumes`` entry (so application data is not written to
the rootfs), and the annotations conversion.md lists (os, architecture,
variant, os.version, os.features, author, created, stopSignal,
exposedPorts), with ``Labels`` taking precedence. Everything else is the
defaults ``runc spec`` writes (or ``runc spec --rootless``: a user namespace
mapping root to the caller, no network namespace, /sys bound rather than
mounted, no device cgroup rules), except ``terminal``, which is false: ocilab
runs containers with their output captured, not on a terminal.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from typing import Any

from ocilab.errors import ValidationError
from ocilab.model import ImageConfig
from ocilab.operations.passwd import ProcessUser

OCI_VERSION = "1.0.2-dev"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOSTNAME = "ocilab"
ANNOTATION = "org.opencontainers.image."
CAPABILITIES = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
_NOSUID_NOEXEC_NODEV = ["nosuid", "noexec", "nodev"]


def process_args(config: ImageConfig, command: Sequence[str] | None = None) -> list[str]:
    """Entrypoint + Cmd; ``command`` replaces Cmd (as ``docker run IMAGE CMD...`` does).

    Empty when the image has neither (as umoci writes it): such a bundle runs only with a command.
    """
    section = config.container_config
    return [*(section.get("Entrypoint") or []), *(command if command else section.get("Cmd") or [])]


def runtime_config(
    config: ImageConfig,
    user: ProcessUser,
    rootless: bool = False,
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The runtime-spec document for a bundle of this image, with ``user`` already resolved."""
    section = config.container_config
    env = list(section.get("Env") or [])
    if not any(variable.startswith("PATH=") for variable in env):
        env.insert(0, DEFAULT_PATH)
    cwd = section.get("WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise ValidationError("config.WorkingDir", f"{cwd!r} is not an absolute path")
    process = {
        "terminal": False,
        "user": user.to_json(),
        "args": process_args(config, command),
        "env": env,
        "cwd": cwd,
        "capabilities": {kind: list(CAPABILITIES) for kind in ("bounding", "effective", "permitted", "ambient")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    }
    return {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": "rootfs"},
        "hostname": HOSTNAME,
        "mounts": _mounts(rootless) + _volumes(section.get("Volumes") or {}),
        "annotations": image_annotations(config),
        "linux": _linux(rootless),
    }


def image_annotations(config: ImageConfig) -> dict[str, str]:
    """The implicit annotations of conversion.md, then ``Labels`` over them (labels take precedence)."""
    section = config.container_config
    platform = config.platform
    implicit = {
        "os": platform.os,
        "architecture": platform.architecture,
        "variant": platform.variant,
        "os.version": platform.os_version,
        "os.features": ",".join(platform.os_features) or None,
        "author": config.author,
        "created": config.created,
        "stopSignal": section.get("StopSignal"),
        "exposedPorts": ",".join(sorted(section.get("ExposedPorts") or {})) or None,
    }
    result = {ANNOTATION + key: value for key, value in implicit.items() if value is not None}
    result.update(section.get("Labels") or {})
    return result


def _mounts(rootless: bool) -> list[dict[str, Any]]:
    devpts = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    sysfs: dict[str, Any] = {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": [*_NOSUID_NOEXEC_NODEV, "ro"],
    }
    if rootless:
        sysfs = {
            "destination": "/sys",
            "type": "none",
            "source": "/sys",
            "options": ["rbind", *_NOSUID_NOEXEC_NODEV, "ro"],
        }
    else:
        devpts.append("gid=5")
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": devpts},
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": [*_NOSUID_NOEXEC_NODEV, "mode=1777", "size=65536k"],
        },
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": list(_NOSUID_NOEXEC_NODEV)},
        sysfs,
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": [*_NOSUID_NOEXEC_NODEV, "relatime", "ro"],
        },
    ]


def _volumes(volumes: dict[str, Any]) -> list[dict[str, Any]]:
    """One tmpfs per volume: data written there stays out of the rootfs, as conversion.md asks."""
    mounts = []
    for destination in sorted(volumes):
        clean = posixpath.normpath(destination)
        if not destination.startswith("/") or ".." in destination.split("/") or clean == "/":
            raise ValidationError(
                f"config.Volumes.{destination}", "a volume must be an absolute path below /, without '..'"
            )
        mounts.append(
            {"destination": clean, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755"]}
        )
    return mounts


def _linux(rootless: bool) -> dict[str, Any]:
    namespaces = ["pid", "network", "ipc", "uts", "mount"]
    linux: dict[str, Any] = {}
    if rootless:
        namespaces = [kind for kind in namespaces if kind != "network"] + ["user"]
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    else:
        linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    linux["namespaces"] = [{"type": kind} for kind in namespaces]
    linux["maskedPaths"] = list(MASKED_PATHS)
    linux["readonlyPaths"] = list(READONLY_PATHS)
    return linux
