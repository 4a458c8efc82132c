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
  (:mod:`coupa_plugin.coupa._redis_pacing`).

The password comes from the URL or from the environment variable the tenant names
(``shared_state_password_env``, one of ``COUPA_SHARED_STATE_PASSWORD[_…]``): a password set
for one tenant's Redis is never sent to another's. It is held as a :class:`Secret` and appears
in no repr, message or log (URLs are shown without it; every error text is scrubbed of it by
value, whatever produced it). Every call is bounded in time and size
(:mod:`coupa_plugin.connector._redis_wire`); a ``rediss://`` URL verifies the server's
certificate and host name, against ``shared_state_ca_file`` when given.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final, TypeVar
from urllib.parse import quote, unquote, urlsplit

import attrs

from coupa_plugin.connector._errors import StoreUnavailable
from coupa_plugin.connector._provisioning.journal import state_key
from coupa_plugin.coupa import Secret, excerpt
from coupa_plugin.host.errors import ConfigurationError, ProvisioningError

if TYPE_CHECKING:
    import redis

__all__ = [
    "ACL_RULES",
    "PASSWORD_ENV",
    "RedisStore",
    "SharedStateURL",
    "cleartext_warning",
    "connect",
    "describe_error",
    "pace_key",
    "parse_password_env",
    "parse_shared_state",
    "scoped",
]

log = logging.getLogger("coupa_plugin.connector.shared_state")
T = TypeVar("T")

PASSWORD_ENV: Final = "COUPA_SHARED_STATE_PASSWORD"  # noqa: S105 (a variable name)
# the variables a tenant may name: the plugin's own, never any other secret of the process
_PASSWORD_ENV_RE: Final = re.compile(PASSWORD_ENV + r"(?:_[A-Z0-9_]{1,64})?")
PREFIX: Final = "coupa-plugin:v1"
# What a Redis ACL user of one tenant needs: its keys and the commands the plugin sends (those
# its Lua scripts call included; CLIENT SETINFO is redis-py's, refused harmlessly by a Redis
# older than 7.2); docs/operations.md quotes it, a test runs the plugin through it.
ACL_RULES: Final = (
    f"resetkeys ~{PREFIX}:* -@all +ping +select +get +set +del +hget +hset +hdel +hgetall "
    "+hmget +pttl +pexpire +blpop +rpush +evalsha +eval +script|load +time +multi +exec "
    "+client|setinfo"
)
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
    ca_file: str | None = None

    @property
    def loopback(self) -> bool:
        """True for ``localhost`` and loopback addresses: cleartext never leaves the host."""
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def scrub(self, text: str) -> str:
        """``text`` without the password, in any form an error may quote it (plain, as a
        bytes repr, URL-quoted)."""
        if self.password:
            plain = self.password.reveal()
            for form in sorted(
                {plain, repr(plain.encode())[2:-1], quote(plain, safe="")}, key=len, reverse=True
            ):
                text = text.replace(form, "**********")
        return text

    @property
    def display(self) -> str:
        """The URL without user or password."""
        scheme = "rediss" if self.tls else "redis"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/{self.db}"

    def __str__(self) -> str:
        return self.display


def parse_shared_state(key: str, value: object) -> SharedStateURL:
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
    password = unquote(parts.password) if parts.password else None
    return SharedStateURL(
        tls=parts.scheme == "rediss",
        host=parts.hostname,
        port=port,
        db=int(path or 0),
        username=unquote(parts.username) if parts.username else None,
        password=Secret(password) if password else None,
    )


def parse_password_env(key: str, value: object) -> str:
    """The name of the environment variable holding a tenant's Redis password: one of the
    plugin's own (``COUPA_SHARED_STATE_PASSWORD`` or ``COUPA_SHARED_STATE_PASSWORD_<NAME>``),
    so settings can never send another secret of the process to a Redis."""
    if not isinstance(value, str):
        raise ConfigurationError(f"{key}: expected a string, got {type(value).__name__}")
    if not _PASSWORD_ENV_RE.fullmatch(value):
        raise ConfigurationError(
            f"{key}: expected {PASSWORD_ENV} or {PASSWORD_ENV}_<NAME> (capital letters, digits "
            "and underscores)"
        )
    return value


def scoped(
    url: SharedStateURL,
    *,
    ca_file: str | None = None,
    password_env: str | None = None,
    environ: Callable[[str], str | None] = os.environ.get,
) -> SharedStateURL:
    """``url`` with the tenant's CA bundle and the password from the variable the tenant
    named (the URL's own password otherwise: no variable is read unless named)."""
    if ca_file is not None and not url.tls:
        raise ConfigurationError(
            "shared_state_ca_file: only meaningful with a rediss:// (TLS) shared_state"
        )
    password = url.password
    if password_env is not None:
        if password is not None:
            raise ConfigurationError(
                "shared_state_password_env: the shared_state URL has a password already; "
                "keep one of them"
            )
        value = environ(password_env)
        if not value:
            raise ConfigurationError(
                f"shared_state_password_env: the environment variable {password_env} is not "
                "set or empty"
            )
        password = Secret(value)
    return attrs.evolve(url, ca_file=ca_file, password=password)


def cleartext_warning(url: SharedStateURL) -> str | None:
    """What to warn about a ``redis://`` URL to another host: its password and every
    journal entry cross the network unencrypted."""
    if url.tls or url.loopback:
        return None
    return (
        f"shared_state {url.display} is not encrypted (redis://): the Redis password and the "
        "shared state cross the network in cleartext; use rediss://"
    )


def connect(url: SharedStateURL, *, timeout_s: float = _IO_TIMEOUT_S) -> redis.Redis:
    """A client for ``url`` (no connection is opened yet) whose every call ends within
    ``timeout_s`` or the calling thread's deadline, whichever comes first, and whose replies
    are size-capped; ConfigurationError when the ``redis`` package is missing or the CA
    bundle cannot be loaded."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from coupa_plugin.connector._redis_wire import BoundedConnection, tls_context
    except ImportError:
        raise ConfigurationError(
            "shared_state needs the redis client: pip install 'coupa-plugin[redis]'"
        ) from None
    try:
        tls = tls_context(url.ca_file) if url.tls else None
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ConfigurationError(
            f"shared_state_ca_file: cannot load the CA bundle ({type(exc).__name__})"
        ) from None
    pool = redis.ConnectionPool(
        connection_class=BoundedConnection,
        tls=tls,
        timeout_s=timeout_s,
        host=url.host,
        port=url.port,
        db=url.db,
        username=url.username,
        password=url.password.reveal() if url.password else None,
        socket_timeout=timeout_s,
        socket_connect_timeout=min(_CONNECT_TIMEOUT_S, timeout_s),
        # no health_check_interval: redis-py 5.0 recurses without end when its health check
        # meets a server that wants a password; a stale pooled connection is retried instead
        protocol=2,  # every redis-py from 5 on, alike (8 would speak RESP3 by default)
        # one immediate reconnect for a stale pooled connection; beyond that an outage (or a
        # timeout: the deadline has passed) is reported at once, never slept through
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    )
    return redis.Redis(connection_pool=pool)


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
        call_timeout_s: float = _IO_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``call_timeout_s``: the bound of each call of ``client`` (:func:`connect`'s
        ``timeout_s``); a blocking wait for a lock stays well within it."""
        self._redis = client
        self._url = url
        self._ns = f"{PREFIX}:{state_key(tenant_id, instance)}"
        self._ttl_ms = max(1, round(lock_ttl_s * 1000))
        self._lock_wait_s = lock_wait_s
        self._block_s = call_timeout_s / 2
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
        """Any failure of a call (Redis's errors, and whatever a reply the client cannot
        parse raises) as a typed error naming the Redis, never the password."""
        import redis

        try:
            yield
        except redis.AuthenticationError:
            raise ConfigurationError(
                f"shared_state: {self._url.display} refused the credentials ({what})"
            ) from None
        except (StoreUnavailable, ConfigurationError):
            raise
        except Exception as exc:  # noqa: BLE001 - a garbage reply may raise anything
            raise StoreUnavailable(
                f"{self.where} is unavailable while {what} ({describe_error(exc, self._url)})"
            ) from None

    def ensure(self) -> None:
        try:
            with self._calling("checking it before any write"):
                self._redis.ping()
        except StoreUnavailable as exc:
            raise ProvisioningError(f"{exc}; nothing was written") from None

    def entries(self, prefix: str) -> Iterator[tuple[str, bytes | None]]:
        with self._calling("reading the journal"):
            raw = _checked(self._redis.hgetall(f"{self._ns}:journal"), dict, "the journal")
            found = {
                _checked(name, bytes, "a journal entry's name").decode("utf-8", "replace"): (
                    _checked(data, bytes, "a journal entry")
                )
                for name, data in raw.items()
            }
        for name in sorted(found):
            if name.startswith(prefix) and name.endswith(".json"):
                yield name, found[name]

    def put_entry(self, name: str, data: bytes) -> None:
        with self._calling("writing the journal"):
            _checked(self._redis.hset(f"{self._ns}:journal", name, data), int, "HSET's answer")

    def remove_entry(self, name: str) -> None:
        with self._calling("writing the journal"):
            _checked(self._redis.hdel(f"{self._ns}:journal", name), int, "HDEL's answer")

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
            facts = self._redis.get(f"{self._ns}:facts")
            return None if facts is None else _checked(facts, bytes, "the learnt facts")

    def write_facts(self, data: bytes) -> None:
        with self._calling("writing the learnt facts"):
            if self._redis.set(f"{self._ns}:facts", data) is not True:
                raise _GarbageReply("SET's answer is not OK")

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
            ttl_ms = _checked(self._redis.pttl(key), int, "the lock's expiry")
            wait_s = min(left, max(ttl_ms, 10) / 1000 if ttl_ms > 0 else 0.01, 5.0, self._block_s)
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


class _GarbageReply(Exception):
    """A reply of the wrong shape (a server that is not Redis, or not well)."""


def _checked(value: object, kind: type[T], what: str) -> T:
    """``value`` when it is a ``kind``, else :class:`_GarbageReply` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, kind):
        raise _GarbageReply(f"{what} is not what Redis sends ({type(value).__name__})")
    return value


def describe_error(exc: BaseException, url: SharedStateURL) -> str:
    """``exc`` as a short, single-line, printable text without the password."""
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:  # noqa: BLE001 - a hostile value may not even render
        text = type(exc).__name__
    text = url.scrub(text)  # first: spacing and characters exactly as the password has them
    return excerpt("".join(c if c.isprintable() else "?" for c in text[:2000]), 200)
