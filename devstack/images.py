"""Container images without a registry: a Debian base built from Debian's packages, and
the Kafka, Redis and saga-worker images on it.

    python -m devstack.images build    # `make images`: engine if missing, then every image
    python -m devstack.images engine   # installs and starts a Docker engine if none answers
    python -m devstack.images compose  # a `docker compose` (v2) plugin, built from its module
    python -m devstack.images stop-engine  # stops the dockerd `engine` or `build` started

Where a registry answers, none of this is needed: docker-compose.yml and the test
fixtures default to the official images (apache/kafka, redis, python:3.11-slim). Where
none does, `build` makes local ones, named in docker/local.env, which select them:

    docker compose --env-file docker/local.env up      # or export its lines
    SAGA_TEST_SERVICES=testcontainers ... pytest        # with the same variables

- the engine: Debian's docker.io (and debootstrap), installed as root with apt-get when
  no `dockerd` is installed, started in the background when none answers;
- the base: `debootstrap --variant=minbase bookworm` from the machine's own Debian
  mirror (its apt sources, copied into the image), imported as SAGA_DEBIAN_IMAGE; built
  only when missing (`--fresh` builds it again);
- Kafka: the broker's jars from .cache (devstack fetches them from Maven Central) with a
  start script that reads the official image's settings (docker/kafka/run);
- Redis: Debian's redis-server (docker/redis);
- saga-worker: the Dockerfile FROM the base, its Python packages installed from wheels
  built here (docker/wheels), so the build needs no index either.

Every failure a user can fix ends in one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from devstack.stack import (
    DEVSTACK,
    ROOT,
    RUNTIME,
    StackError,
    kafka_libs,
    read_pid,
    read_versions,
    stop_pid,
)

DOCKER_DIR = ROOT / "docker"
LOCAL_ENV = DOCKER_DIR / "local.env"
WHEELS = DOCKER_DIR / "wheels"
ENGINE_WAIT_S = 60.0
ENGINE_PID = RUNTIME / "dockerd.pid"
COMPOSE_VERSION = "v2.40.3"  # github.com/docker/compose/v2, built by `compose`
COMPOSE_PLUGIN = Path.home() / ".docker" / "cli-plugins" / "docker-compose"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (comments and blank lines skipped), as docker compose reads them."""
    found: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


def local_images() -> dict[str, str]:
    """The local image names (docker/local.env), each overridable from the environment."""
    return {key: os.environ.get(key) or value for key, value in read_env_file(LOCAL_ENV).items()}


def run(cmd: Sequence[str], what: str, *, env: Mapping[str, str] | None = None) -> None:
    """Runs `cmd` with its output shown; a failure is one line naming `what`."""
    print(f"+ {' '.join(cmd)}", flush=True)
    done = subprocess.run(list(cmd), env=dict(env) if env else None, check=False)  # noqa: S603
    if done.returncode != 0:
        raise StackError(f"{what} failed (exit {done.returncode}); its output is above")


# -- the engine --------------------------------------------------------------


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],  # noqa: S607
            capture_output=True,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def apt_install(packages: Sequence[str]) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError(
            f"{', '.join(packages)} missing: install them (Debian: apt-get install "
            f"{' '.join(packages)}), or run this as root on Debian"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {', '.join(packages)} from Debian's packages", flush=True)
    install = ["apt-get", "install", "-y", "-qq", *packages]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode == 0:  # noqa: S603
        return
    run(["apt-get", "update", "-qq"], "apt-get update", env=env)
    run(install, f"apt-get install {' '.join(packages)}", env=env)


def ensure_engine() -> None:
    """A Docker engine that answers: Debian's docker.io installed and started if needed."""
    if engine_answers():
        return
    if shutil.which("dockerd") is None:
        apt_install(["docker.io"])
    if shutil.which("docker") is None:
        raise StackError("no docker client after installing docker.io")
    log = RUNTIME / "dockerd.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"starting dockerd in the background (log: {log})", flush=True)
    with log.open("ab") as out:
        daemon = subprocess.Popen(  # noqa: S603 - outlives us; `stop-engine` stops it
            [shutil.which("dockerd") or "dockerd"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    ENGINE_PID.write_text(str(daemon.pid))
    deadline = time.monotonic() + ENGINE_WAIT_S
    while time.monotonic() < deadline:
        if engine_answers():
            return
        time.sleep(0.5)
    raise StackError(f"dockerd did not answer within {ENGINE_WAIT_S:g}s; see {log}")


def stop_engine() -> None:
    """Stops the dockerd that `ensure_engine` started, if it still runs; no other."""
    if read_pid(ENGINE_PID) is None:
        print("no dockerd started by this project is running")
        return
    stop_pid(ENGINE_PID, "dockerd", grace_s=30)


def image_exists(name: str) -> bool:
    done = subprocess.run(  # noqa: S603
        ["docker", "image", "inspect", name],  # noqa: S607
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


# -- the base ------------------------------------------------------------------


def apt_sources() -> tuple[str, Path | None]:
    """The Debian mirror this machine uses, and its deb822 sources file if it has one.

    SAGA_DEBIAN_MIRROR overrides the mirror (then the sources file is not copied).
    """
    forced = os.environ.get("SAGA_DEBIAN_MIRROR")
    if forced:
        return forced, None
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.exists() and (found := deb822_mirror(deb822.read_text())):
        return found, deb822
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists() and (found := sources_list_mirror(legacy.read_text())):
        return found, None
    return DEFAULT_MIRROR, None


def deb822_mirror(text: str) -> str | None:
    """The first URI of the first stanza that serves SUITE itself (not its updates)."""
    for stanza in text.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            key, colon, value = line.partition(":")
            if colon and not line.startswith(("#", " ", "\t")):
                fields[key.strip()] = value.split()
        if SUITE in fields.get("Suites", []) and fields.get("URIs"):
            return fields["URIs"][0]
    return None


def sources_list_mirror(text: str) -> str | None:
    for line in text.splitlines():
        words = [w for w in line.split() if not w.startswith("[")]  # no [options]
        if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
            return words[1]
    return None


def build_base(name: str) -> None:
    if shutil.which("debootstrap") is None:
        apt_install(["debootstrap"])
    mirror, sources = apt_sources()
    with tempfile.TemporaryDirectory(prefix="saga-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(
            ["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror],
            f"debootstrap of Debian {SUITE} from {mirror}",
        )
        etc = rootfs / "etc"
        if sources is not None:
            shutil.copy(sources, etc / "apt" / "sources.list.d" / sources.name)
            (etc / "apt" / "sources.list").unlink(missing_ok=True)
        # As Debian's own container images: no services started by package scripts,
        # no recommended packages, no package lists or archives kept in layers.
        policy = rootfs / "usr" / "sbin" / "policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        (etc / "apt" / "apt.conf.d" / "90container").write_text(
            'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n'
            'Acquire::Languages "none";\n'
        )
        for leftovers in (
            rootfs / "var" / "cache" / "apt",
            rootfs / "var" / "lib" / "apt" / "lists",
        ):
            for path in leftovers.glob("*"):
                if path.is_file():
                    path.unlink()
        print(f"+ tar -C {rootfs} -c . | docker import - {name}", flush=True)
        tar = subprocess.Popen(  # noqa: S603
            ["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],  # noqa: S607
            stdout=subprocess.PIPE,
        )
        imported = subprocess.run(  # noqa: S603
            ["docker", "import", "--change", 'CMD ["bash"]', "-", name],  # noqa: S607
            stdin=tar.stdout,
            check=False,
        )
        if tar.stdout is not None:
            tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise StackError(f"importing the Debian root filesystem as {name} failed")


# -- images on the base --------------------------------------------------------


def build_kafka(name: str, base: str) -> None:
    libs = kafka_libs()
    with tempfile.TemporaryDirectory(prefix="saga-kafka-image-") as tmp:
        context = Path(tmp)
        try:  # hard links where the cache shares the file system, else copies
            shutil.copytree(libs, context / "libs", copy_function=os.link)
        except OSError:
            shutil.rmtree(context / "libs", ignore_errors=True)
            shutil.copytree(libs, context / "libs")
        (context / "libs" / ".complete").unlink(missing_ok=True)
        for item in ("Dockerfile", "run"):
            shutil.copy2(DOCKER_DIR / "kafka" / item, context / item)
        shutil.copy2(DEVSTACK / "log4j2.properties", context / "log4j2.properties")
        docker_build(name, context, BASE_IMAGE=base)


def build_redis(name: str, base: str) -> None:
    docker_build(name, DOCKER_DIR / "redis", BASE_IMAGE=base)


def docker_build(name: str, context: Path, **build_args: str) -> None:
    args = [f"--build-arg={key}={value}" for key, value in build_args.items()]
    run(["docker", "build", "-q", "-t", name, *args, str(context)], f"building {name}")


def build_wheels() -> None:
    """The project's dependencies (and its build backend) as wheels, for an index-free build."""
    for old in WHEELS.glob("*.whl"):
        old.unlink()
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(WHEELS)]
    run(
        [*pip_wheel, str(ROOT), "setuptools>=77", "wheel"],
        "building wheels of saga-worker's dependencies",
    )


def build_project(name: str, base: str) -> None:
    build_wheels()
    docker_build(name, ROOT, BASE_IMAGE=base, PIP_OFFLINE="1")


def build(*, fresh: bool = False) -> dict[str, str]:
    """Builds every local image (the base only when missing or `fresh`); returns their names."""
    images = local_images()
    kafka_version = read_versions()["KAFKA_VERSION"]
    if not images["SAGA_KAFKA_IMAGE"].endswith(f":{kafka_version}"):
        raise StackError(
            f"SAGA_KAFKA_IMAGE {images['SAGA_KAFKA_IMAGE']} is not tagged with the broker's "
            f"version, {kafka_version} (devstack/versions.env)"
        )
    ensure_engine()
    base = images["SAGA_DEBIAN_IMAGE"]
    steps = []
    started = time.monotonic()
    if fresh or not image_exists(base):
        build_base(base)
        steps.append(f"base {time.monotonic() - started:.0f}s")
    for key, builder in (
        ("SAGA_KAFKA_IMAGE", build_kafka),
        ("SAGA_REDIS_IMAGE", build_redis),
        ("SAGA_IMAGE", build_project),
    ):
        began = time.monotonic()
        builder(images[key], base)
        steps.append(f"{images[key]} {time.monotonic() - began:.0f}s")
    print(f"images built in {time.monotonic() - started:.0f}s ({', '.join(steps)})")
    return images


# -- docker compose ----------------------------------------------------------------


def compose_answers() -> bool:
    """A compose v2 plugin the docker CLI finds (~/.docker/cli-plugins, or the system's)."""
    for command in (["docker", "compose", "version"], [str(COMPOSE_PLUGIN), "version"]):
        try:
            done = subprocess.run(command, capture_output=True, check=False)  # noqa: S603
        except OSError:  # no docker client yet, or no plugin there
            continue
        if done.returncode == 0:
            return True
    return False


def ensure_compose() -> None:
    """`docker compose` v2: built from its Go module into the CLI's plugin folder if missing."""
    if compose_answers():
        return
    go = shutil.which("go")
    if go is None:
        raise StackError(
            "docker compose missing and no Go toolchain to build it; install the "
            "docker-compose-plugin package of your distribution or Docker's"
        )
    module = f"github.com/docker/compose/v2@{COMPOSE_VERSION}"
    print(f"building docker compose {COMPOSE_VERSION} from its Go module", flush=True)
    found = subprocess.run(  # noqa: S603
        [go, "mod", "download", "-json", module],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        raise StackError(f"go mod download {module} failed: {found.stderr.strip()[-300:]}")
    source = Path(json.loads(found.stdout)["Dir"])
    with tempfile.TemporaryDirectory(prefix="saga-compose-") as tmp:
        tree = Path(tmp) / "compose"
        shutil.copytree(source, tree)
        for path in [tree, *tree.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)  # the module cache is read-only
        COMPOSE_PLUGIN.parent.mkdir(parents=True, exist_ok=True)
        version_flag = f"-X github.com/docker/compose/v2/internal.Version={COMPOSE_VERSION}"
        plugin = str(COMPOSE_PLUGIN)
        done = subprocess.run(  # noqa: S603
            [go, "build", "-trimpath", "-ldflags", f"-s -w {version_flag}", "-o", plugin, "./cmd"],
            cwd=tree,
            check=False,
        )
        if done.returncode != 0:
            raise StackError("building docker compose failed; its output is above")
    if not compose_answers():
        raise StackError(f"docker compose does not answer after installing {COMPOSE_PLUGIN}")


def main(argv: Sequence[str]) -> int:
    try:
        return _main(argv)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _main(argv: Sequence[str]) -> int:
    command = argv[0] if argv else "build"
    if command == "build":
        images = build(fresh="--fresh" in argv[1:])
        print("local images; select them with docker/local.env:")
        for key, value in images.items():
            print(f"  {key}={value}")
    elif command == "engine":
        ensure_engine()
    elif command == "compose":
        ensure_compose()  # no engine needed: it can build while `build` runs
    elif command == "stop-engine":
        stop_engine()
    else:
        raise StackError(f"unknown command {command!r}; use build, engine, compose or stop-engine")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
