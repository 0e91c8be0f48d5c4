"""The package's metadata: one version everywhere, the license and the development group."""

from __future__ import annotations

import tomllib
from importlib.metadata import metadata
from pathlib import Path

from typer.testing import CliRunner

import saga_worker
from saga_worker.cli.commands import app

ROOT = Path(__file__).resolve().parents[2]


def test_one_version_for_the_package_the_module_and_the_command() -> None:
    assert metadata("saga-worker")["Version"] == saga_worker.__version__
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"saga-worker {saga_worker.__version__}\n"


def test_the_license_is_an_spdx_expression_with_its_text_shipped() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    # setuptools' default license-files globs ship it (and, unlike an explicit list, do
    # not fail a build from a tree without it, such as the Dockerfile's).
    assert "LICENSE" in (metadata("saga-worker").get_all("License-File") or [])
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert not any(c.startswith("License ::") for c in project["classifiers"])


def test_development_tools_are_a_group_not_an_extra_users_get() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "dev" not in pyproject["project"].get("optional-dependencies", {})
    assert any(d.startswith("pytest") for d in pyproject["dependency-groups"]["dev"])
    assert "--group dev" in (ROOT / "Makefile").read_text()
