from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from smppengine.broker import Mosquitto
from smppengine.simulator import Simulator

from .helpers import PG_SCHEMAS, drop_pg_schemas, pg_store_url


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    """A private mosquitto on a free port (fails loudly when mosquitto is not installed)."""
    m = Mosquitto(workdir=str(tmp_path / "mqtt"))
    (tmp_path / "mqtt").mkdir()
    await m.start()
    yield m
    await m.stop()


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    s = Simulator(credentials={"acme": "secret"})
    await s.start()
    yield s
    await s.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A store URL for each backend: a fresh SQLite file, or a fresh PostgreSQL schema (dropped afterwards).
    PostgreSQL not running is a failure, never a skip."""
    if request.param == "sqlite":
        yield str(tmp_path / "store.db")
        return
    url = pg_store_url()
    yield url
    await drop_pg_schemas([url.rsplit("schema=", 1)[1]])


@pytest.fixture(scope="session", autouse=True)
def _drop_integration_pg_schemas() -> Iterator[None]:
    """With SMPPENGINE_TEST_STORE=postgresql, drop the schemas the integration tests used."""
    yield
    if PG_SCHEMAS:
        asyncio.run(drop_pg_schemas(PG_SCHEMAS.values()))
