"""The console's web application: pages over the CLI's operations, and its actions.

Every action is a POST carrying the page's CSRF token (security.py), refused in
read-only mode, and logged with who did what and what came of it. Pages never act.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiokafka.errors import KafkaError
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from saga_worker.app import App
from saga_worker.cli.dlq import (
    DeadLetterReadError,
    Selection,
    parse_letter_id,
    read_letters,
    replay,
)
from saga_worker.cli.operations import (
    Operations,
    Outcome,
    dead_letter_topic,
    replayable_topics,
)
from saga_worker.console import pages
from saga_worker.console.reads import overview
from saga_worker.console.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    REALM,
    Credentials,
    csrf_ok,
    new_csrf_token,
)
from saga_worker.errors import StoreUnavailableError
from saga_worker.runtime.redis_client import make_redis
from saga_worker.settings import Settings

log = logging.getLogger("saga_worker.console")

LETTERS_LISTED = 200
FLASHES_KEPT = 100
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make Origin "null"
    "Cache-Control": "no-store",
}


@dataclass
class Console:
    """What every request needs: the settings, the app, the operations, the flash notes."""

    settings: Settings
    app: App
    credentials: Credentials
    read_only: bool
    ops: Operations | None = None
    flashes: OrderedDict[str, str] | None = None

    def flash(self, text: str) -> str:
        """Keeps a note for the page an action redirects to; returns its id."""
        flashes = self.flashes if self.flashes is not None else OrderedDict()
        self.flashes = flashes
        key = new_csrf_token()[:12]
        flashes[key] = text
        while len(flashes) > FLASHES_KEPT:
            flashes.popitem(last=False)
        return key

    def operations(self) -> Operations:
        assert self.ops is not None, "the console's lifespan has not started"
        return self.ops


def create_app(console: Console) -> Starlette:
    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        redis = make_redis(console.settings)
        console.ops = Operations(console.settings, redis, console.app)
        try:
            yield
        finally:
            await redis.aclose()

    h = Handlers(console)
    saga_action = _only_verbs(h.action("saga", h.saga_action))
    return Starlette(
        routes=[
            Route("/", h.overview),
            Route("/sagas", h.sagas),
            Route("/sagas/{saga_id:path}/{verb:str}", saga_action, methods=["POST"]),
            Route("/sagas/{saga_id:path}", h.saga),
            Route("/dead-letters", h.letters),
            Route("/dead-letters/replay", h.action("replay", h.replay_action), methods=["POST"]),
            Mount("/static", StaticFiles(directory=Path(__file__).with_name("static"))),
        ],
        middleware=[Middleware(Guard, credentials=console.credentials)],
        exception_handlers={
            KafkaError: _unavailable,
            DeadLetterReadError: _unavailable,
            RedisError: _unavailable,
            StoreUnavailableError: _unavailable,
        },
        lifespan=lifespan,
    )


async def _unavailable(request: Request, exc: Exception) -> Response:
    """Kafka or Redis did not answer: one line, 503, as the CLI would say it."""
    service = "Redis" if isinstance(exc, RedisError | StoreUnavailableError) else "Kafka"
    log.warning("console page failed", extra={"path": request.url.path, "error": str(exc)})
    return PlainTextResponse(f"{service}: {exc}", status_code=503)


class Handlers:
    """The pages (GET) and the actions (POST) of one console."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.templates = Jinja2Templates(env=_environment())

    def render(
        self, request: Request, name: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        console = self.console
        flashes: Mapping[str, str] = console.flashes or {}
        token = request.cookies.get(CSRF_COOKIE) or new_csrf_token()
        response = self.templates.TemplateResponse(
            request,
            name,
            {
                **context,
                "csrf": token,
                "csrf_field": CSRF_FIELD,
                "read_only": console.read_only,
                "refresh_s": console.settings.saga_console_refresh_s,
                "flash": flashes.get(request.query_params.get("flash", "")),
            },
            status_code=status,
        )
        if CSRF_COOKIE not in request.cookies:
            response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict")
        return response

    async def overview(self, request: Request) -> Response:
        c = self.console
        found = await overview(c.operations(), c.settings, c.app)
        return self.render(request, "overview.html", pages.overview_context(found))

    async def sagas(self, request: Request) -> Response:
        ops, app = self.console.operations(), self.console.app
        try:
            query = pages.SagaQuery.parse(request.query_params, app)
        except ValueError as exc:
            context = pages.sagas_context(None, str(exc), app, ops.now())
            return self.render(request, "sagas.html", context, 400)
        found = await query.run(ops)
        return self.render(request, "sagas.html", pages.sagas_context(query, found, app, ops.now()))

    async def saga(self, request: Request) -> Response:
        ops = self.console.operations()
        saga_id = request.path_params["saga_id"]
        state = await ops.find(saga_id)
        if state is None:
            return self.render(request, "missing.html", {"what": saga_id}, 404)
        context = await pages.saga_context(ops, self.console.app, state)
        return self.render(request, "saga.html", context)

    async def letters(self, request: Request) -> Response:
        settings = self.console.settings
        found = await read_letters(
            settings.kafka, dead_letter_topic(settings), newest=LETTERS_LISTED
        )
        context = pages.letters_context(found, request.query_params)
        return self.render(request, "letters.html", context)

    def action(
        self, name: str, act: Callable[[Request, Any, str], Awaitable[tuple[str, str]]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A POST: read-only and CSRF checked, the outcome logged and shown as a note."""

        async def endpoint(request: Request) -> Response:
            form = await request.form()
            who = str(request.scope.get("console.who", "anonymous"))
            if self.console.read_only:
                return _refused(name, who, "the console is read-only")
            if not csrf_ok(request, form.get(CSRF_FIELD)):
                return _refused(name, who, "missing or wrong CSRF token")
            back, outcome = await act(request, form, who)
            target = request.path_params.get("saga_id") or form.getlist("letter")
            log.info(
                "console action",
                extra={"who": who, "action": request.url.path.rsplit("/", 1)[-1],
                       "target": target, "outcome": outcome},
            )  # fmt: skip
            note = self.console.flash(outcome)
            return RedirectResponse(f"{back}?flash={note}", status_code=303)

        return endpoint

    async def saga_action(self, request: Request, form: Any, who: str) -> tuple[str, str]:
        ops = self.console.operations()
        saga_id, verb = request.path_params["saga_id"], request.path_params["verb"]
        back = f"/sagas/{quote(saga_id)}"
        outcome: Outcome
        if verb == "retry":
            outcome = await ops.retry(saga_id)
        elif verb == "abort":
            reason = str(form.get("reason") or "").strip() or f"aborted by {who} in the console"
            outcome = await ops.abort(saga_id, reason)
        else:
            try:
                step, body = pages.signal_of(form)
            except ValueError as exc:
                return back, f"signal refused: {exc}"
            outcome = await ops.signal(saga_id, step, body)
        return back, pages.outcome_text(verb, saga_id, outcome)

    async def replay_action(self, request: Request, form: Any, who: str) -> tuple[str, str]:
        try:
            ids = frozenset(parse_letter_id(str(x)) for x in form.getlist("letter"))
        except ValueError as exc:
            return "/dead-letters", f"nothing replayed: {exc}"
        if not ids:
            return "/dead-letters", "nothing replayed: no dead letter was selected"
        settings = self.console.settings
        result = await replay(
            settings.kafka,
            dead_letter_topic(settings),
            Selection(ids),
            replayable_topics(settings, self.console.app),
            force=form.get("force") == "on",
        )
        return "/dead-letters", pages.replay_text(result)


def _only_verbs(
    endpoint: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def guarded(request: Request) -> Response:
        if request.path_params["verb"] not in ("retry", "abort", "signal"):
            return PlainTextResponse("no such action", status_code=404)
        return await endpoint(request)

    return guarded


def _refused(action: str, who: str, why: str) -> Response:
    log.warning("console action refused", extra={"who": who, "action": action, "why": why})
    return PlainTextResponse(f"refused: {why}", status_code=403)


class Guard(BaseHTTPMiddleware):
    """Credentials first (when set), then the security headers on every answer."""

    def __init__(self, app: Any, credentials: Credentials) -> None:
        super().__init__(app)
        self.credentials = credentials

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        client = request.client.host if request.client else "?"
        if self.credentials.required:
            who = self.credentials.who(request.headers.get("authorization"))
            if who is None:
                denied = PlainTextResponse("credentials needed", status_code=401)
                denied.headers["WWW-Authenticate"] = REALM
                return denied
            request.scope["console.who"] = f"{who}@{client}"
        else:
            request.scope["console.who"] = f"anonymous@{client}"
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("saga_worker.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
    )
    env.filters.update(pages.FILTERS)
    return env
