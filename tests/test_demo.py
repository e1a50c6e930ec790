"""The README's first command as a new user runs it: `smppengine run` with no config, then `smppengine send`."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import orjson


async def test_zero_setup_demo_delivers_the_contract_example(tmp_path: Path) -> None:
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smppengine.cli", "run", cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert demo.stderr is not None
    try:
        banner = b""
        async with asyncio.timeout(30):
            while b"Ctrl-C stops" not in banner:
                line = await demo.stderr.readline()
                assert line, f"demo exited early: {banner.decode(errors='replace')}"
                banner += line
        url = re.search(rb"send --url (mqtt://\S+)", banner)
        assert url, banner
        send = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "smppengine.cli", "send", "--url", url.group(1).decode(), "--id", "order-1234-otp",
            "--to", "+447700900123", "--from", "ACME", "--text", "Your code is 123456",
            stdout=asyncio.subprocess.PIPE, cwd=tmp_path)
        out, _ = await asyncio.wait_for(send.communicate(), 30)
        assert send.returncode == 0, out
        events = [orjson.loads(line) for line in out.decode().splitlines()[1:]]
        assert [e["state"] for e in events] == ["queued", "submitted", "delivered"]
        assert events[-1]["smsc"] == "sim" and len(events[-1]["smsc_message_ids"]) == 1
    finally:
        demo.terminate()
        assert await asyncio.wait_for(demo.wait(), 30) == 0
    assert (tmp_path / "smppengine-demo.db").exists()
