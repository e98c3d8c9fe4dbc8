"""Database engines from URLs, with a missing driver named as the extra that brings it.

SQLAlchemy imports a dialect's driver only when an engine is made; without it a user
would meet `No module named 'psycopg'` as an internal error, far from the fix.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from crmflow.errors import ConfigError

# What to install for each driver a URL may name: (package, how).
_INSTALL = {
    "psycopg": "pip install 'crmflow[postgres]'",
    "psycopg2": "pip install 'crmflow[postgres]' and write postgresql+psycopg:// in the URL",
    "pymysql": "pip install pymysql",
    "mysqldb": "pip install mysqlclient",
}


def engine_for(url: str, role: str, **options: Any) -> Engine:
    """`create_engine(url, **options)`; a bad URL or a missing driver is a ConfigError
    that names `role` (crm, state) and what to install."""
    try:
        return create_engine(url, **options)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        how = _INSTALL.get(missing, f"pip install {missing}" if missing else "install it")
        raise ConfigError(
            f"{role}: the database driver {missing or '?'} is not installed ({how})"
        ) from None
    except NoSuchModuleError:
        scheme = url.split(":", 1)[0]
        raise ConfigError(
            f"{role}: no database driver for {scheme}:// (use sqlite:///FILE or "
            "postgresql+psycopg://USER@HOST/DB)"
        ) from None
    except ArgumentError:
        raise ConfigError(
            f"{role}: not a database URL (use sqlite:///FILE or postgresql+psycopg://USER@HOST/DB)"
        ) from None
