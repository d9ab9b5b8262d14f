"""Smoke test of an installed bytepump, run from outside the source tree.

scripts/check-package runs it in a fresh virtualenv holding only the built
wheel, so a module or data file missing from the package fails here.
"""

import hashlib
import importlib.metadata
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading

import bytepump


def main() -> None:
    here = pathlib.Path(bytepump.__file__).resolve().parent
    assert "site-packages" in str(here), f"not the installed copy: {here}"
    assert (here / "py.typed").is_file(), "py.typed is not in the package"
    version = importlib.metadata.version("bytepump")
    assert bytepump.__version__ == version, (bytepump.__version__, version)

    data = os.urandom(3 * 1024 * 1024 + 17)
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp, "src.bin")
        src.write_bytes(data)

        # A file into a socket, read back on the other end.
        left, right = socket.socketpair()
        received = hashlib.sha256()

        def drain() -> None:
            while chunk := right.recv(1 << 16):
                received.update(chunk)

        reader = threading.Thread(target=drain)
        reader.start()
        with src.open("rb") as f:
            sent = bytepump.splice_to(f, left, timeout=10)
        left.close()
        reader.join(10)
        right.close()
        assert sent == len(data), sent
        assert received.digest() == hashlib.sha256(data).digest()

        # The console script: --version and a copy.
        script = pathlib.Path(sys.executable).with_name("bytepump")
        shown = subprocess.run(
            [str(script), "--version"], capture_output=True, text=True, check=True
        )
        assert shown.stdout.strip() == version, shown.stdout
        dst = pathlib.Path(tmp, "dst.bin")
        subprocess.run([str(script), "copy", str(src), str(dst)], check=True)
        assert dst.read_bytes() == data
    print(f"bytepump {version} on {sys.implementation.name}: installed package works")


if __name__ == "__main__":
    main()
