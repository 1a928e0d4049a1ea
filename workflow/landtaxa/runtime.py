"""What every job of the workflow inherits: this checkout's package and the user's plugins.

The rules run steps as ``python -m landtaxa ...``, possibly inside a per-rule conda
environment that does not have landtaxa installed. Exporting the package's folder on
PYTHONPATH for child processes makes every job find this very checkout of the code.

Plugins are the user's own Python modules (config key ``plugins``: module names, or paths of
``.py`` files) that register encoders (:func:`landtaxa.learning.encoders.register_encoder`) or
clustering methods (:func:`landtaxa.clustering.clusters.register_method`). The workflow imports them
where it starts and hands them to its jobs in the ``LANDTAXA_PLUGINS`` environment variable,
which every step reads before it runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)
PLUGINS_ENV = "LANDTAXA_PLUGINS"


def expose_package() -> None:
    """Prepend this package's parent folder to PYTHONPATH (once) for child processes."""
    current = os.environ.get("PYTHONPATH", "")
    parts = [p for p in current.split(os.pathsep) if p]
    if PACKAGE_PARENT not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([PACKAGE_PARENT, *parts])


def load_plugins(plugins: Sequence[str]) -> None:
    """Import each plugin (a module name, or the path of a ``.py`` file), so that it registers what it adds."""
    for plugin in plugins:
        try:
            if plugin.endswith(".py"):
                path = Path(plugin).resolve()
                spec = importlib.util.spec_from_file_location(f"landtaxa_plugin_{path.stem}", path)
                if spec is None or spec.loader is None or not path.is_file():
                    raise ImportError(f"no Python file at {path}")
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            else:
                importlib.import_module(plugin)
        except Exception as err:  # noqa: BLE001 - any failure of the user's module is reported as one
            raise ValueError(f"{plugin}: the plugin cannot be loaded (config key plugins): {err}") from err


def export_plugins(plugins: Sequence[str]) -> None:
    """Hand the plugins to child processes (the workflow's jobs), as absolute paths where they are files."""
    names = [str(Path(p).resolve()) if p.endswith(".py") else p for p in plugins]
    if names:
        os.environ[PLUGINS_ENV] = os.pathsep.join(names)
    else:
        os.environ.pop(PLUGINS_ENV, None)


def inherited_plugins() -> list[str]:
    """The plugins the workflow handed to this process."""
    return [p for p in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if p]
