"""ocilab: explore OCI container images, from Python and from the command line."""

__version__ = "0.1.0"
