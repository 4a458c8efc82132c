"""The SCIM service provider: scim2-server's WSGI application over :class:`CoupaStorage`,
behind a bearer token, served by a threaded WSGI server, with a background full refresh.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, Final, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from scim2_models import Resource, UnauthorizedException
from scim2_server.applications.wsgi import WSGIApplication
from scim2_server.requests import ScimRequest

from coupa_plugin.host.errors import ConfigurationError, PluginError
from coupa_plugin.refhost._manager import PluginHooks
from coupa_plugin.refhost._scim import LOGGER, TOKEN_ENV
from coupa_plugin.refhost._scim.directory import Directory
from coupa_plugin.refhost._scim.schema import build_provider
from coupa_plugin.refhost._scim.storage import CoupaStorage, member_patch

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["DEFAULT_REFRESH_S", "TOKEN_ENV", "ScimFacade"]

log = logging.getLogger(LOGGER)

DEFAULT_REFRESH_S: Final = 900.0
# how often the idle HTTP loop looks for a stop request (the most ``stop`` waits for it)
STOP_POLL_S: Final = 0.1


class _BearerApplication(WSGIApplication):
    """scim2-server's WSGI application, refusing requests without the bearer token.

    ``/ServiceProviderConfig`` stays open, as RFC 7643 §5 lets it (scim2-server's rule)."""

    def __init__(self, storage: CoupaStorage, token: str, public_url: str | None) -> None:
        super().__init__(storage, build_provider())
        self.storage: CoupaStorage = storage
        self._expected = f"Bearer {token}".encode()
        self._public_url = public_url.rstrip("/") if public_url else None

    def get_base_url(self, environ: WSGIEnvironment) -> str:  # type: ignore[override]
        """The URL clients reach (behind a proxy: ``public_url``), for locations and $ref."""
        return self._public_url or super().get_base_url(environ)

    def check_auth(self, request: ScimRequest) -> None:
        given = (request.header("Authorization") or "").encode()
        if not hmac.compare_digest(given, self._expected):
            raise UnauthorizedException(detail="a valid bearer token is required")

    def read_request(self, environ: WSGIEnvironment) -> ScimRequest:
        request = super().read_request(environ)
        if request.method == "POST" and request.path.rstrip("/") == "/Users":
            request.body = _active_by_default(request.body)
        # a membership PATCH is served from the named members alone, unless the client
        # checks the group's version or asks for the group back
        whole = request.header("If-Match") is not None or any(
            key in request.query for key in ("attributes", "excludedAttributes")
        )
        if request.method == "PATCH" and request.path.strip("/").startswith("Groups/"):
            request.body = _without_null_members(request.body)
        patch = member_patch(request.path, request.body) if request.method == "PATCH" else None
        self.storage.expect(None if whole else patch)
        return request


def _active_by_default(body: bytes) -> bytes:
    """Every Coupa user is active or not, so the schema requires ``active``; a create that
    leaves it out gets Coupa's default, an active user."""
    try:
        document = json.loads(body)
    except ValueError:
        return body  # scim2-server answers the syntax error
    if not isinstance(document, dict) or "active" in document:
        return body
    return json.dumps({**document, "active": True}).encode()


def _without_null_members(body: bytes) -> bytes:
    """A group PATCH with the null sub-attributes of its members dropped: Entra ID names a
    member to remove as ``{"$ref": null, "value": "7"}``, and a null is unassigned (RFC 7643
    §2.5), not a ``$ref`` the member must match."""
    try:
        document = json.loads(body)
    except ValueError:
        return body  # scim2-server answers the syntax error
    operations = document.get("Operations") if isinstance(document, dict) else None
    if not isinstance(operations, list):
        return body
    changed = False
    for op in operations:
        values = op.get("value") if isinstance(op, dict) else None
        for member in values if isinstance(values, list) else ():
            if isinstance(member, dict) and None in member.values():
                for key in [k for k, v in member.items() if v is None]:
                    del member[key]
                changed = True
    return json.dumps(document).encode() if changed else body


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        # the request line carries filter values (logins); keep it at debug, path only
        log.debug("%s %s", self.command, self.path.split("?", 1)[0])


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class ScimFacade:
    """One tenant's SCIM service provider.

    ``start`` configures the plugin, reads the whole tenant (so the first answer is complete),
    starts serving and starts the background refresh every ``refresh_every_s`` seconds.
    ``wait`` waits for the stop event up to a timeout and says whether it was set (a test
    passes one that lets a refresh happen when it says so).
    """

    def __init__(
        self,
        hooks: PluginHooks,
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        refresh_every_s: float = DEFAULT_REFRESH_S,
        public_url: str | None = None,
        wait: Callable[[threading.Event, float], bool] | None = None,
    ) -> None:
        if not token:
            raise ConfigurationError(f"{TOKEN_ENV} is empty: set the bearer token clients send")
        if refresh_every_s <= 0:
            raise ConfigurationError("the refresh interval must be positive")
        self.hooks = hooks
        self.directory = Directory(hooks)
        self.storage = CoupaStorage(self.directory, hooks, self.model_for)
        self.application = _BearerApplication(self.storage, token, public_url)
        self._address = (host, port)
        self._refresh_every_s = refresh_every_s
        self._wait = wait or (lambda event, timeout: event.wait(timeout))
        self._stop = threading.Event()
        self._server: _ThreadingServer | None = None
        self._threads: list[threading.Thread] = []

    def __repr__(self) -> str:
        return f"ScimFacade(tenant={self.hooks.tenant.id!r}, url={self.url!r})"

    def model_for(self, name: str) -> type[Resource[Any]]:
        """The model of the ``User`` or ``Group`` resource type as the facade publishes it."""
        model = self.application.provider.model_for(name)
        if model is None:  # pragma: no cover - the provider declares both
            raise LookupError(name)
        return cast(type[Resource[Any]], model)

    @property
    def url(self) -> str | None:
        """The SCIM base URL (``…/v2``) once serving."""
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v2"

    def start(self) -> ScimFacade:
        if self.hooks.configure() is None:
            raise ConfigurationError(f"the plugin is not enabled for tenant {self.hooks.tenant.id}")
        self.directory.refresh_all()
        server = make_server(
            *self._address,
            self.application,
            server_class=_ThreadingServer,
            handler_class=_Handler,
        )
        self._server = server
        self._threads = [
            threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": STOP_POLL_S},
                name="scim-http",
                daemon=True,
            ),
            threading.Thread(target=self._refresh_loop, name="scim-refresh", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def _refresh_loop(self) -> None:
        while not self._wait(self._stop, self._refresh_every_s):
            try:
                self.directory.refresh_all()
            except PluginError as exc:
                log.warning(
                    "background refresh failed (%s: %s); serving the previous copy",
                    type(exc).__name__,
                    exc,
                    extra={"tenant": self.hooks.tenant.id},
                )

    def serve_until_stopped(self) -> None:
        """Block until :meth:`stop` (or Ctrl-C in the caller)."""
        self._stop.wait()

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads = []

    def __enter__(self) -> ScimFacade:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
