"""bytepump: move bytes between file descriptors with Linux splice(2).

The data never enters the Python VM: no ``bytes`` objects, no garbage
collection, no user-space copy. See ``splice_to``.
"""

from ._errors import (
    DownstreamTimeout,
    HTTPStatusError,
    IncompleteBody,
    ProtocolError,
    SpliceUnsupported,
    Timeout,
    UpstreamTimeout,
)
from .pump import splice_to

__version__ = "0.1.0"

__all__ = [
    "DownstreamTimeout",
    "HTTPStatusError",
    "IncompleteBody",
    "ProtocolError",
    "SpliceUnsupported",
    "Timeout",
    "UpstreamTimeout",
    "__version__",
    "splice_to",
]
