"""Layer 1, the image model: pure, standard library only, no I/O beyond the streams it is handed."""

from ocilab.model.config import HistoryEntry, ImageConfig, parse_config
from ocilab.model.descriptor import Descriptor, Platform, parse_descriptor
from ocilab.model.digest import Digest, VerifyingReader, read_all
from ocilab.model.jsondoc import MAX_DOCUMENT_BYTES, load_object
from ocilab.model.manifest import Index, Manifest, parse_index, parse_manifest, parse_root
from ocilab.model.reference import Reference

__all__ = [
    "Descriptor",
    "Digest",
    "HistoryEntry",
    "ImageConfig",
    "Index",
    "MAX_DOCUMENT_BYTES",
    "Manifest",
    "Platform",
    "Reference",
    "VerifyingReader",
    "load_object",
    "parse_config",
    "parse_descriptor",
    "parse_index",
    "parse_manifest",
    "parse_root",
    "read_all",
]
