"""Where xpnet keeps what it makes once and reuses: ``$XPNET_CACHE``, else ``~/.cache/xpnet``.

MNIST's ``mnist.npz`` (``nn.data``) and the compiled CPU kernels (``backends.cpu_kernels``) live there.
"""

import os
from pathlib import Path


def cache_root():
    return Path(os.environ.get("XPNET_CACHE") or Path.home() / ".cache" / "xpnet")
