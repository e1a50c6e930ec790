from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smppengine.broker import Mosquitto
from smppengine.simulator import Simulator


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
