"""The deployment files: the systemd unit verifies, the compose file and Dockerfile agree with the contract."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is needed for this test (apt-get install systemd)"
    exe = shutil.which("smppengine")
    assert exe is not None, "pip install -e . first"
    unit = (DEPLOY / "smppengine.service").read_text()
    for key in ("Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID", "StateDirectory=smppengine",
                "ProtectSystem=strict", "NoNewPrivileges=yes", "DynamicUser=yes"):
        assert key in unit
    # verify checks that ExecStart exists: point it at this machine's smppengine
    copy = tmp_path / "smppengine.service"
    copy.write_text(unit.replace("/usr/local/bin/smppengine", exe))
    res = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stderr.strip() == "", res.stderr


def test_docker_files_are_consistent() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for key in ("ARG BASE=python:3.11-slim", "FROM ${BASE}", "USER smppengine", "VOLUME /var/lib/smppengine",
                "/etc/smppengine/config.toml", "HEALTHCHECK", "/healthz"):
        assert key in dockerfile, key
    compose = (DEPLOY / "docker-compose.yml").read_text()
    assert "eclipse-mosquitto" in compose and "mosquitto.conf" in compose
    assert (DEPLOY / "mosquitto.conf").exists()
    cfg = tomllib.loads((DEPLOY / "config.toml").read_text())
    assert cfg["engine"]["store"].startswith("/var/lib/smppengine/")
    assert cfg["mqtt"]["url"] == "mqtt://mosquitto:1883" and cfg["http"]["listen"] == "0.0.0.0:9180"


def test_grafana_dashboard_only_uses_metrics_the_engine_exports() -> None:
    import re

    from smppengine.engine import Engine
    from tests.helpers import make_config, smsc

    dash = orjson.loads((DEPLOY / "grafana-dashboard.json").read_bytes())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = {m for e in exprs for m in re.findall(r"smppengine_[a-z_]+", e)}
    engine = Engine(make_config("unused.db", "mqtt://127.0.0.1:1", [smsc("a", 1)]))
    engine.metrics.submit_sent("a", "a/0")
    engine.metrics.resp("a", "a/0", "submit_sm_resp", 0)
    engine.metrics.part_submitted("a", "1", 1.0)
    engine.metrics.receipt("a", "1", "DELIVRD", "matched")
    engine.metrics.requests.labels("accepted").inc()
    engine.metrics.mo.labels("a").inc()
    engine.metrics.store_stats({"queue": [{"state": "queued", "smsc": "", "count": 1}]})
    text = engine.metrics.scrape().decode()
    exported = set(re.findall(r"^(?:# TYPE )?(smppengine_[a-z_]+)", text, re.M))   # families without samples too
    assert used and used <= exported, used - exported
