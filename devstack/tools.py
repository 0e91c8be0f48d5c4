"""Tools from Debian's packages that some checks need, installed when missing.

- `chromium`: the browser the console's tests drive (tests/console), from `apt-get
  install chromium` as root, like devstack/images.py installs docker.io.
- `promtool CHECK...`: runs Prometheus's rule checker on the alert rules. Debian's
  `prometheus` package has it; installing that package would also set up (and try to
  start) the Prometheus server, so its .deb is unpacked under .cache/prometheus instead
  and only promtool is taken from it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from devstack.images import apt_install, run
from devstack.stack import StackError

ROOT = Path(__file__).resolve().parents[1]
UNPACKED = ROOT / ".cache" / "prometheus"
CHROMIUM = os.environ.get("SAGA_CHROMIUM", "/usr/bin/chromium")


def ensure_chromium() -> None:
    if not Path(CHROMIUM).exists():
        apt_install(["chromium"])


def promtool() -> str:
    """Where promtool is: on PATH, or from Debian's prometheus package unpacked here."""
    found = shutil.which("promtool") or str(UNPACKED / "usr" / "bin" / "promtool")
    if Path(found).exists():
        return found
    if shutil.which("apt-get") is None:
        raise StackError("promtool missing: install Prometheus's promtool (Debian: prometheus)")
    downloads = UNPACKED.parent / "debs"
    downloads.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("fetching promtool from Debian's prometheus package", flush=True)
    fetch = ["apt-get", "download", "-qq", "prometheus"]
    if subprocess.run(fetch, cwd=downloads, env=env, check=False).returncode != 0:  # noqa: S603
        run(["apt-get", "update", "-qq"], "apt-get update", env=env)
        run(fetch, "apt-get download prometheus", env=env)
    (deb,) = sorted(downloads.glob("prometheus_*.deb"))[-1:]
    run(["dpkg-deb", "-x", str(deb), str(UNPACKED)], "unpacking the prometheus package")
    return found


def main(argv: Sequence[str]) -> int:
    try:
        if argv[:1] == ["chromium"]:
            ensure_chromium()
            return 0
        if argv[:1] == ["promtool"]:
            return subprocess.run([promtool(), *argv[1:]], check=False).returncode  # noqa: S603
        raise StackError("usage: python -m devstack.tools chromium | promtool ARGS...")
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
