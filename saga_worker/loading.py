"""Loads the user's app from `module:object`, as `saga-worker ... --app` and SAGA_APP name it.

The object is an `App`, or a function without arguments that returns one. The
current directory is importable, so `--app sagas:app` finds `./sagas.py`. Any
failure is an `AppLoadError` whose message is one line naming what is wrong.
"""

from __future__ import annotations

import importlib
import os
import sys

from saga_worker.app import App
from saga_worker.errors import AppLoadError


def load_app(spec: str) -> App:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise AppLoadError(f"app {spec!r}: expected module:object, e.g. myproject.sagas:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise AppLoadError(f"app {spec!r}: no module named {exc.name!r}") from exc
        raise AppLoadError(f"app {spec!r}: importing {module_name} failed: {exc}") from exc
    except Exception as exc:
        raise AppLoadError(
            f"app {spec!r}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from exc
    found = getattr(module, attribute, None)
    if found is None:
        raise AppLoadError(f"app {spec!r}: module {module_name} has no {attribute!r}")
    if callable(found) and not isinstance(found, App):
        found = found()
    if not isinstance(found, App):
        raise AppLoadError(f"app {spec!r} is a {type(found).__name__}, not a saga_worker.App")
    return found
