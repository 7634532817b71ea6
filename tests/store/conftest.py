"""`store_url`: a fresh, migrated database for each store test, on each backend (`[sqlite]`: a
file in the test's tmp_path; `[postgres]`: a new database on the test server)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aiservice.store.database import SQLITE_FILE_NAME
from aiservice.store.migrate import upgrade_database
from support import PostgresDatabases


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_databases: PostgresDatabases
) -> str:
    url = (
        f"sqlite+aiosqlite:///{tmp_path / SQLITE_FILE_NAME}"
        if request.param == "sqlite"
        else postgres_databases.create()
    )
    # Alembic runs its own event loop: a thread of its own, as in the server's lifespan.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(upgrade_database, url).result()
    return url
