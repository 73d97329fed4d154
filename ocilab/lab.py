"""The helpers the lesson notebooks use beside the top-level ``ocilab`` names, from one public place.

A notebook's Set up cell imports what it needs from here
(``from ocilab.lab import RegistryServer, collect_garbage``) instead of from
the modules that define them; each name is the same object as in its module.
"""

from __future__ import annotations

from ocilab.operations import handmade
from ocilab.operations.artifact import attach
from ocilab.operations.layout_gc import collect_layout
from ocilab.operations.raw_layer import RawEntry, raw_layer_image
from ocilab.operations.registry_server import RegistryServer
from ocilab.operations.registry_storage import collect_garbage, storage_map
from ocilab.operations.unpack_layers import unpack_through
from ocilab.present.bundle import as_root, config_table, if_runc, outcome
from ocilab.present.compare import compressed_sizes, config_changes, layer_matches
from ocilab.present.descriptors import descriptor_table
from ocilab.present.dirtree import directory_tree
from ocilab.present.disk import DiskLog, blobs
from ocilab.present.engine import engine, if_engine, images, in_engine, prune
from ocilab.present.http import requests_table
from ocilab.present.jsonview import show_json
from ocilab.present.lesson import noise, tar_members, upload_blobs, write_files
from ocilab.stores.registry.recording import RecordingTransport

__all__ = [
    "DiskLog",
    "RawEntry",
    "RecordingTransport",
    "RegistryServer",
    "as_root",
    "attach",
    "blobs",
    "collect_garbage",
    "collect_layout",
    "compressed_sizes",
    "config_changes",
    "config_table",
    "descriptor_table",
    "directory_tree",
    "handmade",
    "engine",
    "if_engine",
    "in_engine",
    "if_runc",
    "images",
    "layer_matches",
    "noise",
    "outcome",
    "prune",
    "raw_layer_image",
    "requests_table",
    "show_json",
    "storage_map",
    "tar_members",
    "unpack_through",
    "upload_blobs",
    "write_files",
]
