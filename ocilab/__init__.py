"""ocilab: explore OCI container images, from Python and from the command line.

    >>> import ocilab
    >>> image = ocilab.open("oci:/tmp/layout:v1")
    >>> image.layers_frame()
"""

from ocilab.api import doctor, open, resolve, validate
from ocilab.errors import OcilabError
from ocilab.stores.image import Image, ImageIndex

__version__ = "0.1.0"
__all__ = ["Image", "ImageIndex", "OcilabError", "doctor", "open", "resolve", "validate"]
