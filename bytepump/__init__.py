"""bytepump: move bytes between file descriptors with Linux splice(2).

The data never enters the Python VM: no ``bytes`` objects, no garbage
collection, no user-space copy. See ``splice_to``, and ``splice_from`` for
edge includes; ``bytepump.aio`` has the asyncio versions.
"""

import importlib
from typing import Any

from ._errors import (
    DownstreamTimeout,
    HTTPStatusError,
    IncompleteBody,
    ProtocolError,
    SpliceUnsupported,
    Timeout,
    UpstreamTimeout,
)
from ._http1 import ResponseHead
from .edge import OriginResponse, fetch, skip_headers, splice_from
from .pump import splice_to
from .zipstream import ZipStreamer

__version__ = "0.1.0"

__all__ = [
    "DownstreamTimeout",
    "HTTPStatusError",
    "IncompleteBody",
    "OriginResponse",
    "ProtocolError",
    "ResponseHead",
    "SpliceUnsupported",
    "Timeout",
    "UpstreamTimeout",
    "ZipStreamer",
    "__version__",
    "fetch",
    "skip_headers",
    "splice_from",
    "splice_to",
]


def __getattr__(name: str) -> Any:
    # bytepump.aio and bytepump.wsgi work after a plain ``import bytepump``
    # without making every user pay for importing asyncio or threading.
    if name in ("aio", "wsgi"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'bytepump' has no attribute {name!r}")
