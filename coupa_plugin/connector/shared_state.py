"""Shared state on Redis, for workers of one tenant on several machines (setting
``shared_state``).

What lives there, under keys namespaced by a hash of the tenant id and the Coupa instance
(``coupa-plugin:v1:<key>:…``; nothing secret, never the tenant's name):

* ``…:journal`` (a hash): the provisioning journal, one sealed entry per rewrite, the same
  bytes the local backend writes to files and validated by the same code when read;
  ``…:journal:rejected`` keeps entries set aside.
* ``…:facts``: the sealed record of what provisioning learnt (list semantics, the API user).
* ``…:lock:<user id>``: the per-user lock, with an expiry renewed while its holder lives, so a
  dead worker's lock frees itself; ``…:lock:<user id>:free`` wakes a waiting worker.
* ``coupa-plugin:v1:pace:<hash of the instance>``: the pacer's state
  (:mod:`coupa_plugin.coupa.redis_pacing`).

The password comes from the URL or from ``COUPA_SHARED_STATE_PASSWORD``; it is held as a
:class:`Secret` and appears in no repr, message or log (URLs are shown without it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final, cast
from urllib.parse import unquote, urlsplit

import attrs

from coupa_plugin.connector.provisioning.journal import state_key
from coupa_plugin.connector.provisioning.store import StoreUnavailable
from coupa_plugin.coupa import Secret
from coupa_plugin.host.errors import ConfigurationError, ProvisioningError

if TYPE_CHECKING:
    import redis

__all__ = [
    "PASSWORD_ENV",
    "RedisStore",
    "SharedStateURL",
    "connect",
    "pace_key",
    "parse_shared_state",
]

log = logging.getLogger("coupa_plugin.connector.shared_state")

PASSWORD_ENV: Final = "COUPA_SHARED_STATE_PASSWORD"  # noqa: S105 (a variable name)
PREFIX: Final = "coupa-plugin:v1"
LOCK_TTL_S: Final = 30.0
_CONNECT_TIMEOUT_S: Final = 3.0
_IO_TIMEOUT_S: Final = 10.0

# Delete the lock only when we still hold it, then wake one waiter.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('DEL', KEYS[2])
  redis.call('RPUSH', KEYS[2], '1')
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return 1
end
return 0
"""
# Extend the lock's expiry only when we still hold it.
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


@attrs.frozen
class SharedStateURL:
    """A validated ``redis://`` or ``rediss://`` URL; its repr and str omit the password."""

    tls: bool
    host: str
    port: int
    db: int
    username: str | None = attrs.field(default=None, repr=False)
    password: Secret | None = attrs.field(default=None, repr=False)

    @property
    def display(self) -> str:
        """The URL without user or password."""
        scheme = "rediss" if self.tls else "redis"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/{self.db}"

    def __str__(self) -> str:
        return self.display


def parse_shared_state(
    key: str, value: object, environ: Callable[[str], str | None] = os.environ.get
) -> SharedStateURL:
    """``redis://[[user]:password@]host[:port][/db]`` (``rediss://`` for TLS) or a clear
    ConfigurationError that never repeats the password."""
    if not isinstance(value, str):
        raise ConfigurationError(f"{key}: expected a string, got {type(value).__name__}")
    try:
        parts = urlsplit(value.strip())
        port = parts.port or 6379
    except ValueError:
        raise ConfigurationError(
            f"{key}: expected redis://host[:port][/db] or rediss://…"
        ) from None
    if parts.scheme not in ("redis", "rediss"):
        shown = parts.scheme[:20] if parts.scheme.isalnum() else "?"
        raise ConfigurationError(
            f"{key}: expected a redis:// or rediss:// URL (got {shown}://); "
            "without shared_state, the state stays in local files"
        )
    if not parts.hostname:
        raise ConfigurationError(f"{key}: missing host")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{key}: query parameters and fragments are not supported")
    path = parts.path.strip("/")
    if path and not (path.isascii() and path.isdigit() and int(path) < 10_000):
        raise ConfigurationError(f"{key}: the path must be a database number such as /0")
    password = unquote(parts.password) if parts.password else environ(PASSWORD_ENV)
    return SharedStateURL(
        tls=parts.scheme == "rediss",
        host=parts.hostname,
        port=port,
        db=int(path or 0),
        username=unquote(parts.username) if parts.username else None,
        password=Secret(password) if password else None,
    )


def connect(url: SharedStateURL) -> redis.Redis:
    """A client for ``url`` (no connection is opened yet); ConfigurationError when the
    ``redis`` package is missing."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise ConfigurationError(
            "shared_state needs the redis client: pip install 'coupa-plugin[redis]'"
        ) from None
    return redis.Redis(
        host=url.host,
        port=url.port,
        db=url.db,
        username=url.username,
        password=url.password.reveal() if url.password else None,
        ssl=url.tls,
        socket_timeout=_IO_TIMEOUT_S,
        socket_connect_timeout=_CONNECT_TIMEOUT_S,
        health_check_interval=30,
        # one immediate reconnect for a stale pooled connection; beyond that an outage is
        # reported at once (the caller has its own time budget), never slept through
        retry=Retry(NoBackoff(), 1),
    )


def pace_key(instance: str) -> str:
    """The pacer's key for one Coupa instance (Coupa's limit is per instance)."""
    return f"{PREFIX}:pace:" + hashlib.sha256(instance.encode()).hexdigest()[:24]


class RedisStore:
    """The provisioning state of one tenant on one Coupa instance, in Redis."""

    def __init__(
        self,
        client: redis.Redis,
        url: SharedStateURL,
        tenant_id: str,
        instance: str,
        *,
        lock_ttl_s: float = LOCK_TTL_S,
        lock_wait_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = client
        self._url = url
        self._ns = f"{PREFIX}:{state_key(tenant_id, instance)}"
        self._ttl_ms = max(1, round(lock_ttl_s * 1000))
        self._lock_wait_s = lock_wait_s
        self._clock = clock
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)

    def __repr__(self) -> str:
        return f"RedisStore({self._url.display})"

    @property
    def where(self) -> str:
        return f"shared state {self._url.display}"

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        import redis

        try:
            yield
        except redis.AuthenticationError:
            raise ConfigurationError(
                f"shared_state: {self._url.display} refused the credentials ({what})"
            ) from None
        except redis.RedisError as exc:
            problem = f"{type(exc).__name__}: {exc}"[:200]
            if self._url.password:
                problem = problem.replace(self._url.password.reveal(), "**********")
            raise StoreUnavailable(
                f"{self.where} is unavailable while {what} ({problem})"
            ) from None

    def ensure(self) -> None:
        try:
            with self._calling("checking it before any write"):
                self._redis.ping()
        except StoreUnavailable as exc:
            raise ProvisioningError(f"{exc}; nothing was written") from None

    def entries(self, prefix: str) -> Iterator[tuple[str, bytes | None]]:
        with self._calling("reading the journal"):
            raw = cast("dict[bytes, bytes]", self._redis.hgetall(f"{self._ns}:journal"))
        found = {name.decode("utf-8", "replace"): data for name, data in raw.items()}
        for name in sorted(found):
            if name.startswith(prefix) and name.endswith(".json"):
                yield name, found[name]

    def put_entry(self, name: str, data: bytes) -> None:
        with self._calling("writing the journal"):
            self._redis.hset(f"{self._ns}:journal", name, data)

    def remove_entry(self, name: str) -> None:
        with self._calling("writing the journal"):
            self._redis.hdel(f"{self._ns}:journal", name)

    def set_aside(self, name: str) -> None:
        with self._calling("setting a journal entry aside"):
            data = self._redis.hget(f"{self._ns}:journal", name)
            pipe = self._redis.pipeline(transaction=True)
            if data is not None:
                pipe.hset(f"{self._ns}:journal:rejected", name, data)
            pipe.hdel(f"{self._ns}:journal", name)
            pipe.execute()

    def read_facts(self) -> bytes | None:
        with self._calling("reading the learnt facts"):
            return cast("bytes | None", self._redis.get(f"{self._ns}:facts"))

    def write_facts(self, data: bytes) -> None:
        with self._calling("writing the learnt facts"):
            self._redis.set(f"{self._ns}:facts", data)

    @contextmanager
    def user_lock(self, user_id: int) -> Iterator[None]:
        key = f"{self._ns}:lock:{user_id}"
        token = uuid.uuid4().hex
        with self._calling("taking the user's lock"):
            self._acquire(key, token)
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._keep, args=(key, token, stop), name="coupa-lock-renew", daemon=True
        )
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            try:
                with self._calling("releasing the user's lock"):
                    self._release(keys=[key, f"{key}:free"], args=[token, self._ttl_ms])
            except (StoreUnavailable, ConfigurationError) as exc:
                # the expiry frees it; what the call itself raised or returned stands
                log.warning("could not release a user's lock", extra={"error": str(exc)})

    def _acquire(self, key: str, token: str) -> None:
        """Take the lock; while another worker holds it, block in Redis until it is released
        (or expires), never longer than ``lock_wait_s`` in all."""
        deadline = self._clock() + self._lock_wait_s
        while not self._redis.set(key, token, nx=True, px=self._ttl_ms):
            left = deadline - self._clock()
            if left <= 0:
                raise StoreUnavailable(
                    f"another worker held the lock of this user for over "
                    f"{self._lock_wait_s:g} s in {self.where}"
                )
            ttl_ms = self._redis.pttl(key)
            wait_s = min(left, max(ttl_ms, 10) / 1000 if ttl_ms > 0 else 0.01, 5.0)
            self._redis.blpop([f"{key}:free"], timeout=wait_s)

    def _keep(self, key: str, token: str, stop: threading.Event) -> None:
        """Renew the lock every third of its expiry while its holder runs."""
        while not stop.wait(self._ttl_ms / 3000):
            try:
                self._renew(keys=[key], args=[token, self._ttl_ms])
            except Exception as exc:  # noqa: BLE001 - the expiry frees the lock anyway
                log.warning(
                    "could not renew a user's lock",
                    extra={"error": type(exc).__name__, "where": self._url.display},
                )

    def close(self) -> None:
        self._redis.close()

