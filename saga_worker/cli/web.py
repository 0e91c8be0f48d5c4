"""`saga-worker console`: the web console (saga_worker/console), from the CLI's settings.

Starlette, Jinja2 and uvicorn come with the `console` extra; without them the command
says how to install them, in one line.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from saga_worker.cli.commands import AppOption, app, load_app_or_exit, settings_or_exit
from saga_worker.errors import ConfigurationError
from saga_worker.observability.logs import configure_logging

log = logging.getLogger("saga_worker.console")


@app.command()
def console(
    host: Annotated[
        str | None, typer.Option(help="address to listen on (default SAGA_CONSOLE_HOST)")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="port to listen on (default SAGA_CONSOLE_PORT)")
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="pages only: no retry, abort, signal or replay")
    ] = False,
    app_spec: AppOption = None,
) -> None:
    """Serve the operator console: overview, sagas, one saga's timeline, dead letters."""
    try:
        import uvicorn  # noqa: PLC0415 - an optional extra

        from saga_worker.console.security import Credentials, check_exposure  # noqa: PLC0415
        from saga_worker.console.server import Console, create_app  # noqa: PLC0415
    except ImportError as exc:
        typer.echo(
            f"error: the console needs its extra ({exc.name} is missing):"
            " pip install 'saga-worker[console]'",
            err=True,
        )
        raise typer.Exit(2) from exc
    settings = settings_or_exit()
    configure_logging(settings.saga_log_level)
    the_app = load_app_or_exit(app_spec, settings)
    bind = host or settings.saga_console_host
    credentials = Credentials.of(settings)
    try:
        check_exposure(bind, credentials)
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    only_read = read_only or settings.saga_console_read_only
    web = create_app(Console(settings, the_app, credentials, only_read))
    listen = port or settings.saga_console_port
    log.info(
        "console listening",
        extra={
            "url": f"http://{bind}:{listen}/",
            "read_only": only_read,
            "credentials": "required" if credentials.required else "none (loopback)",
        },
    )
    uvicorn.run(web, host=bind, port=listen, log_level="warning", access_log=False)
