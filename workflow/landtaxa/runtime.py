"""What every job of the workflow inherits: this checkout's package, the user's plugins, the HTTP settings.

The rules run steps as ``python -m landtaxa ...``, possibly inside a per-rule conda
environment that does not have landtaxa installed. Exporting the package's folder on
PYTHONPATH for child processes makes every job find this very checkout of the code.

Plugins are the user's own Python modules (config key ``plugins``: module names, or paths of
``.py`` files) that register encoders (:func:`landtaxa.learning.encoders.register_encoder`) or
clustering methods (:func:`landtaxa.clustering.clusters.register_method`). The workflow imports them
where it starts and hands them to its jobs in the ``LANDTAXA_PLUGINS`` environment variable,
which every step reads before it runs.

HTTP settings (config keys ``http_headers``, ``http`` and ``sign_hrefs``) travel the same way, in ``LANDTAXA_HTTP``,
and only as the config gives them: a header value ``env:NAME`` stays that reference until the
process that sends the request reads ``NAME`` from its own environment (:func:`resolve_headers`).
So a secret is never part of a rule's parameters or shell command, and Snakemake never writes it
into ``.snakemake/``, a log or a result. :func:`apply_http` turns them into GDAL's documented
configuration options (``GDAL_HTTP_MAX_RETRY``, ``GDAL_HTTP_RETRY_DELAY``, ``GDAL_HTTP_TIMEOUT``,
``GDAL_HTTP_CONNECTTIMEOUT``, ``GDAL_HTTP_HEADERS``) in the environment of the job, where every
``/vsicurl/`` read of the job (VRT sources and mask assets included) takes them. A signing hook
(``sign_hrefs``, e.g. ``planetary_computer:sign``) is loaded by :func:`use_signer` in every process
that opens remote assets, which signs each href just before GDAL opens it (:func:`sign`): signed
URLs, and the tokens in them, stay in memory and are fresh in every job.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)
PLUGINS_ENV = "LANDTAXA_PLUGINS"
HTTP_ENV = "LANDTAXA_HTTP"
#: the ``http`` settings when the config gives none (the schema's defaults, for a step run by hand)
HTTP_DEFAULTS = {"retries": 5, "retry_delay": 1.0, "timeout": 60, "connect_timeout": 10}
ENV_PREFIX = "env:"


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


def resolve_headers(headers: dict | None, where: str = "config key http_headers") -> dict[str, str]:
    """The headers to send: each ``env:NAME`` value replaced by the variable ``NAME`` of this process.

    A variable that is not set raises ValueError naming the header and the variable (never a value).
    """
    out = {}
    for name, value in (headers or {}).items():
        value = str(value)
        if value.startswith(ENV_PREFIX):
            variable = value[len(ENV_PREFIX):].strip()
            if not variable or variable not in os.environ:
                raise ValueError(f"{where}.{name}: the environment variable {variable!r} is not set in this "
                                 "process; export it before running snakemake (jobs inherit it)")
            value = os.environ[variable]
        out[str(name)] = value
    return out


def literal_secrets(headers: dict | None) -> list[str]:
    """The headers given as literal values whose name says they carry a credential (written as they are into
    Snakemake's records and this process's environment): give those as ``env:NAME`` instead."""
    secret = ("authorization", "token", "key", "cookie", "secret", "password")
    return [name for name, value in (headers or {}).items()
            if not str(value).startswith(ENV_PREFIX) and any(s in str(name).lower() for s in secret)]


def gdal_http_options(http: dict | None, headers: dict[str, str]) -> dict[str, str]:
    """GDAL's configuration options for the ``http`` settings and the (resolved) ``headers``."""
    http = {**HTTP_DEFAULTS, **(http or {})}
    options = {"GDAL_HTTP_MAX_RETRY": str(int(http["retries"])), "GDAL_HTTP_RETRY_DELAY": f"{http['retry_delay']:g}",
               "GDAL_HTTP_TIMEOUT": str(int(http["timeout"])),
               "GDAL_HTTP_CONNECTTIMEOUT": str(int(http["connect_timeout"]))}
    if headers:  # lines ending in CRLF: GDAL then splits on them only, so a value may hold commas
        options["GDAL_HTTP_HEADERS"] = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return options


def http_environment(headers: dict | None, http: dict | None, sign: str | None = None) -> dict[str, str]:
    """The environment variable that hands the HTTP settings to a child process, ``env:`` references unresolved."""
    return {HTTP_ENV: json.dumps({"headers": headers or {}, "http": http or {}, "sign": sign}, sort_keys=True)}


def export_http(headers: dict | None, http: dict | None, sign: str | None = None) -> None:
    """Hand the HTTP settings to child processes (the workflow's jobs), ``env:`` references unresolved."""
    os.environ.update(http_environment(headers, http, sign))


def inherited_http() -> tuple[dict, dict, str | None]:
    """The ``http_headers`` (unresolved), ``http`` and ``sign_hrefs`` settings the workflow handed to this process."""
    given = json.loads(os.environ.get(HTTP_ENV) or "{}")
    return given.get("headers") or {}, given.get("http") or {}, given.get("sign")


def apply_http() -> dict[str, str]:
    """Set GDAL's HTTP options in this process's environment from the inherited settings (retries and time-outs
    always; headers when given, ``env:`` values read here) and load the signing hook; returns the options.
    ValueError when a variable or the hook is missing."""
    headers, http, signer = inherited_http()
    options = gdal_http_options(http, resolve_headers(headers))
    use_signer(signer)
    os.environ.update(options)
    return options


_signer: Callable[[str], str] | None = None


def use_signer(name: str | None) -> None:
    """Load the signing hook ``name`` (``module:function``, ``module.function`` or ``file.py:function``; None: no
    signing) for this process's remote reads. ValueError naming config key sign_hrefs when it cannot load."""
    global _signer
    if not name:
        _signer = None
        return
    module, sep, attribute = name.rpartition(":") if ":" in name else name.rpartition(".")
    try:
        if module.endswith(".py"):
            path = Path(module).resolve()
            spec = importlib.util.spec_from_file_location(f"landtaxa_signer_{path.stem}", path)
            if spec is None or spec.loader is None or not path.is_file():
                raise ImportError(f"no Python file at {path}")
            loaded = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(loaded)
        else:
            loaded = importlib.import_module(module)
        hook = getattr(loaded, attribute)
    except Exception as err:  # noqa: BLE001 - a missing package, a typo, an error inside the module
        raise ValueError(f"config key sign_hrefs: {name} cannot be loaded ({err!r}); give module:function, e.g. "
                         "planetary_computer:sign (pip install planetary-computer)") from err
    if not callable(hook) or not sep:
        raise ValueError(f"config key sign_hrefs: {name} is not a function (give module:function)")
    _signer = hook


def signing() -> bool:
    """Whether a signing hook is in use in this process."""
    return _signer is not None


def sign(url: str) -> str:
    """``url`` signed by the hook in use (as it is without one)."""
    return str(_signer(url)) if _signer is not None else url
