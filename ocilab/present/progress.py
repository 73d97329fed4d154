"""Progress bars for long work (copy, push, pull): ``tqdm.auto``, a widget in a notebook, a bar in a terminal.

When bars are shown, decided once here:

- never with ``quiet``, nor when ``OCILAB_PROGRESS`` is ``0``/``off``/``false``,
  nor in CI (``CI=true``): logs and nbval's recorded outputs stay free of
  timings that change on every run (``make test`` runs nbval with
  ``OCILAB_PROGRESS=off``, so committed notebook outputs never hold a bar);
- otherwise in a Jupyter kernel (as widgets) and when stderr is a terminal.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

from ocilab.model import Descriptor
from ocilab.operations.copy import CopyObserver

PROGRESS_ENV = "OCILAB_PROGRESS"
_OFF = {"0", "off", "false", "no"}


def progress_enabled(quiet: bool = False) -> bool:
    """True when bars should be drawn (see the module docstring for the rule)."""
    if quiet or os.environ.get(PROGRESS_ENV, "").lower() in _OFF or os.environ.get("CI", "").lower() == "true":
        return False
    return in_kernel() or sys.stderr.isatty()


def in_kernel() -> bool:
    """True inside a Jupyter kernel (where output belongs on stdout, and bars are widgets)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ipython = shell.get_ipython()
    return ipython is not None and "IPKernelApp" in getattr(ipython, "config", {})


class BarObserver(CopyObserver):
    """One overall bar (bytes of every blob considered) and one bar per blob while it streams."""

    def __init__(self, description: str = "copy") -> None:
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self._description = description
        self._overall: Any = None
        self._bars: dict[str, Any] = {}
        self._lock = threading.Lock()

    def planned(self, blobs: Sequence[Descriptor]) -> None:
        total = sum({blob.digest: blob.size for blob in blobs}.values())
        self._overall = self._bar(total, self._description, leave=True)

    def advanced(self, descriptor: Descriptor, count: int) -> None:
        with self._lock:
            key = str(descriptor.digest)
            bar = self._bars.get(key)
            if bar is None:
                bar = self._bars[key] = self._bar(descriptor.size, descriptor.digest.short, leave=False)
        bar.update(count)

    def finished(self, descriptor: Descriptor, outcome: str) -> None:
        with self._lock:
            bar = self._bars.pop(str(descriptor.digest), None)
        if bar is not None:
            bar.close()
        if self._overall is not None:
            self._overall.update(descriptor.size)
            self._overall.set_postfix_str(f"{descriptor.digest.short} {outcome}", refresh=False)

    def close(self) -> None:
        with self._lock:
            bars, self._bars = list(self._bars.values()), {}
        for bar in bars:
            bar.close()
        if self._overall is not None:
            self._overall.close()

    def _bar(self, total: int, description: str, leave: bool) -> Any:
        return self._tqdm(
            total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024, leave=leave, file=sys.stderr
        )


def observer(quiet: bool = False, description: str = "copy") -> CopyObserver:
    """Bars when they should be shown, else an observer that ignores everything."""
    return BarObserver(description) if progress_enabled(quiet) else CopyObserver()
