"""What scripts/docker_check.py and scripts/systemd_check.py share: the check list they print, running a
command, and a Debian bookworm root made with debootstrap (cached between runs) that trusts this host's extra
CA certificates (for a TLS-intercepting proxy: pip inside the root must trust it as this host does)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("SMPPENGINE_ROOTFS_CACHE", "/var/tmp/smppengine-rootfs"))
MIRROR = "http://deb.debian.org/debian"

results: list[dict[str, Any]] = []


def check(name: str, ok: bool, detail: str = "") -> bool:
    """Record and print one check (PASS/FAIL line); returns ``ok``."""
    results.append({"check": name, "ok": ok, "detail": detail})
    print(f"{'PASS' if ok else 'FAIL'}  {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def summary(script: str, **extra: Any) -> int:
    """Print the JSON summary line (last line of the output); the exit status: 0 when every check passed."""
    ok = all(r["ok"] for r in results)
    print(json.dumps({script: "pass" if ok else "fail", **extra, "checks": len(results),
                      "failed": [r["check"] for r in results if not r["ok"]]}))
    return 0 if ok else 1


def sh(*cmd: str, check_rc: bool = True, timeout: float = 1800, **kw: Any) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check_rc and res.returncode != 0:
        raise SystemExit(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def bookworm_root(name: str, packages: str, marker: str, needs: tuple[str, ...] = ("debootstrap",)) -> Path:
    """``CACHE/name``: a Debian bookworm root with ``packages`` (debootstrap --variant=minbase, made once: kept
    while ``marker`` exists in it), trusting this host's extra CA certificates."""
    root = CACHE / name
    if not (root / marker).exists():
        missing = [tool for tool in needs if shutil.which(tool) is None]
        if missing:
            raise SystemExit(f"missing {', '.join(missing)}: apt-get install debootstrap (and systemd-container "
                             "for systemd-nspawn)")
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"debootstrap bookworm into {root} (a few minutes)", flush=True)
        sh("debootstrap", "--variant=minbase", f"--include={packages}", "bookworm", str(root), MIRROR)
    # a cached root made before a package joined the list gets it now
    wanted = packages.split(",")
    listed = sh("chroot", str(root), "dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *wanted,
                check_rc=False).stdout.splitlines()
    installed = {line.split()[0] for line in listed if line.endswith(" installed")}
    missing = [p for p in wanted if p not in installed]
    if missing:
        print(f"installing {', '.join(missing)} in {root}", flush=True)
        sh("chroot", str(root), "/bin/sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get "
           f"install -y -qq --no-install-recommends {' '.join(missing)} && apt-get clean")
    extra = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    if extra:
        for crt in extra:
            shutil.copy(crt, root / "usr/local/share/ca-certificates" / crt.name)
        sh("chroot", str(root), "update-ca-certificates")
    return root
