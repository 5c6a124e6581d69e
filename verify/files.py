"""Writing output files atomically: a file kinkcheck writes (certificate, network file, exported
test or model, survey output) is either complete or absent, never half-written."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def replace_atomic(path, write, suffix: str = ".tmp") -> None:
    """Call ``write(tmp)`` for a temporary file next to ``path``, give it the mode an ordinary new
    file gets (0666 minus the umask; mkstemp makes 0600), then move it into place: never
    half-written. ``suffix``: for writers that look at the file name."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=suffix, dir=str(path.parent))
    os.close(fd)
    try:
        write(tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_atomic(path, data: dict) -> None:
    """Write JSON to ``path`` atomically (``replace_atomic``)."""
    replace_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=1) + "\n"))
