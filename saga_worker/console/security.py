"""Who may use the console, and how an action proves it came from the console's own page.

- Exposure: beyond loopback the console refuses to start without credentials.
- Credentials (optional on loopback): HTTP Basic with SAGA_CONSOLE_USER and
  SAGA_CONSOLE_PASSWORD, or SAGA_CONSOLE_TOKEN, sent as `Authorization: Bearer` or as
  the Basic password under any user name (which then names who acted). Compared in
  constant time; never logged.
- CSRF: double-submit. Every page sets a random token in a SameSite=Strict cookie and
  in its forms; a POST whose form token is missing or differs is refused, and so is one
  whose Origin is not the console's own.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request

from saga_worker.errors import ConfigurationError
from saga_worker.settings import Settings

CSRF_COOKIE = "saga_console_csrf"
CSRF_FIELD = "csrf"
REALM = 'Basic realm="saga-worker console", charset="UTF-8"'


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Credentials:
    token: str | None = None
    user: str | None = None
    password: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> Credentials:
        token, password = settings.saga_console_token, settings.saga_console_password
        return cls(
            token.get_secret_value() if token else None,
            settings.saga_console_user,
            password.get_secret_value() if password else None,
        )

    @property
    def required(self) -> bool:
        return self.token is not None or self.password is not None

    def who(self, authorization: str | None) -> str | None:
        """The name an `Authorization` header proves, or None if it proves nothing."""
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and _same(value.strip(), self.token):
            return "token"
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = (
                base64.b64decode(value.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not sep:
            return None
        if _same(user, self.user) and _same(password, self.password):
            return user
        return f"{user or 'token'} (token)" if _same(password, self.token) else None


def check_exposure(host: str, credentials: Credentials) -> None:
    """Refuses to serve beyond loopback to anyone who can reach the address."""
    if not is_loopback(host) and not credentials.required:
        raise ConfigurationError(
            f"the console would listen on {host}, beyond loopback, without credentials:"
            " set SAGA_CONSOLE_TOKEN (or SAGA_CONSOLE_USER and SAGA_CONSOLE_PASSWORD),"
            " or listen on 127.0.0.1"
        )


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(request: Request, submitted: object) -> bool:
    """The form's token matches the cookie's, and the request comes from this origin."""
    cookie = request.cookies.get(CSRF_COOKIE)
    if not isinstance(submitted, str) or not cookie or not _same(submitted, cookie):
        return False
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


def _same(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode(), expected.encode())
