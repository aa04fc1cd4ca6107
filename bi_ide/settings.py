"""Where things live: the store file, the hub address and the token, from the environment.

``BI_IDE_DB``     the DuckDB file (default: ``data/workbench.duckdb`` in the project folder)
``BI_IDE_HUB``    the hub's URL; when set, ``bi_ide.connect()`` talks to it instead of the file
``BI_IDE_TOKEN``  the API token for the hub (default: the one in ``data/hub.token``)
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PORT = 5006


def project_root(start: Path | None = None) -> Path:
    """The workbench checkout around ``start`` (or the current folder), else the current folder.

    A notebook runs in ``notebooks/``; walking up keeps it on the same ``data/`` as the CLI.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "bi_ide" / "__init__.py").is_file() and (folder / "apps").is_dir():
            return folder
    return here


def data_dir() -> Path:
    return project_root() / "data"


def db_path() -> Path:
    env = os.environ.get("BI_IDE_DB")
    return Path(env).expanduser().resolve() if env else data_dir() / "workbench.duckdb"


def token_file(db: Path | None = None) -> Path:
    """The local token `bi-ide init` writes, beside the store file."""
    return (db or db_path()).parent / "hub.token"


def hub_url() -> str | None:
    url = os.environ.get("BI_IDE_HUB", "").strip()
    return url.rstrip("/") or None


def hub_token() -> str | None:
    token = os.environ.get("BI_IDE_TOKEN", "").strip()
    if token:
        return token
    f = token_file()
    return f.read_text().strip() if f.is_file() else None
