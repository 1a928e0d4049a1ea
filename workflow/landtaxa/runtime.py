"""Making the package importable by the workflow's jobs.

The rules run steps as ``python -m landtaxa ...``, possibly inside a per-rule conda
environment that does not have landtaxa installed. Exporting the package's folder on
PYTHONPATH for child processes makes every job find this very checkout of the code.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


def expose_package() -> None:
    """Prepend this package's parent folder to PYTHONPATH (once) for child processes."""
    current = os.environ.get("PYTHONPATH", "")
    parts = [p for p in current.split(os.pathsep) if p]
    if PACKAGE_PARENT not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([PACKAGE_PARENT, *parts])
