"""The pure parts of `make images` (devstack/images.py): which mirror, which images."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack import images

DEB822 = """Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.example.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.example.org/debian-security
Suites: bookworm-security
Components: main
"""


def test_the_mirror_is_the_one_serving_bookworm_itself() -> None:
    assert images.deb822_mirror(DEB822) == "http://deb.example.org/debian"
    security_first = "\n\n".join(reversed(DEB822.split("\n\n")))
    assert images.deb822_mirror(security_first) == "http://deb.example.org/debian"
    assert images.deb822_mirror(DEB822.replace("bookworm", "trixie")) is None


def test_a_one_line_sources_list_names_its_mirror() -> None:
    text = (
        "# deb http://commented.example.org/debian bookworm main\n"
        "deb [arch=amd64] http://deb.example.org/debian bookworm main\n"
        "deb http://deb.example.org/debian-security bookworm-security main\n"
    )
    assert images.sources_list_mirror(text) == "http://deb.example.org/debian"
    assert images.sources_list_mirror("") is None


def test_a_mirror_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGA_DEBIAN_MIRROR", "http://mine.example.org/debian")
    assert images.apt_sources() == ("http://mine.example.org/debian", None)


def test_local_images_come_from_local_env_unless_the_environment_names_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = tmp_path / "local.env"
    env.write_text("# comment\n\nSAGA_KAFKA_IMAGE=a/kafka:1\nSAGA_REDIS_IMAGE=a/redis:2\n")
    monkeypatch.setattr(images, "LOCAL_ENV", env)
    monkeypatch.setenv("SAGA_REDIS_IMAGE", "b/redis:3")
    assert images.local_images() == {
        "SAGA_KAFKA_IMAGE": "a/kafka:1",
        "SAGA_REDIS_IMAGE": "b/redis:3",
    }


def test_an_unknown_command_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert images.main(["shrink"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "use build, engine, compose or stop-engine" in err
