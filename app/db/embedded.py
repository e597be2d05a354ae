"""The embedded PostgreSQL used when no DATABASE_URL is given (pgserver, data under .data/).

pgserver ships a PostgreSQL 16 in its wheel; started with cleanup_mode=None it keeps running
after this process exits, so `make run` and `make test` share one server and later calls
only look it up. It listens on a Unix socket inside the data directory.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def embedded_database_url(data_dir: str | os.PathLike[str], database: str = "postgres") -> str:
    # imported lazily: only the embedded default needs it
    from pgserver.postgres_server import get_server

    root = Path(data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    server = get_server(root / "pg", cleanup_mode=None)
    logger.info("embedded postgres ready", extra={"pgdata": str(root / "pg")})
    return str(server.get_uri(database))
