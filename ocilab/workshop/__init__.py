"""Workshops: a JupyterHub on this machine for a room of learners, each with a rootless toolchain of their own.

``up`` makes one unix user per learner (the lessons in their home, a shared
read-only venv from the system's Python), writes the hub's config and starts
it; ``status`` says who runs what on which port; ``reset`` puts every learner
back at the start of the lessons; ``down`` stops everything, and ``down(...,
purge=True)`` also removes what ``up`` created, as its record lists it.
"""

from ocilab.workshop.lifecycle import down, reset, start_servers, status, stop_servers, up
from ocilab.workshop.record import Learner, Record, default_root

__all__ = ["Learner", "Record", "default_root", "down", "reset", "start_servers", "status", "stop_servers", "up"]
