"""The pacer of :mod:`.ratelimit` with its state in Redis, shared by workers on many machines.

Each update runs as one Lua script, so it is atomic across every worker: the script applies
the same rules as :meth:`RateLimiter._take` and :meth:`RateLimiter._throttle` (tests replay
one sequence of events through both and compare), with the parameters sent on every call.
Times are the workers' wall clocks corrected by their offset to the Redis server's clock
(measured on first contact), so workers whose clocks differ still share one timeline.

When Redis cannot be reached the pacer keeps going on its own, from the last state it saw, at
the configured rate (a warning is logged once per outage, and Redis is tried again every
``retry_s``): workers then pace independently, as without a shared state, and reconverge
through their reactions to 429s. Pacing never blocks provisioning or a sync on Redis: each
call to Redis ends within ``call_timeout_s`` (and the caller's deadline).

What Redis answers is checked like a Coupa answer: every number finite, times no further
ahead than a hold window can reach (``hold_until`` at most :data:`MAX_HOLD_S` ahead, the next
slot at most :data:`MAX_AHEAD_S`), rates within the settings' range. A state that fails (one
someone wrote into Redis, or a server that is not Redis) is deleted and treated as Redis away:
pacing alone, one warning, tried again every ``retry_s``; never a hang or an untyped error.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from coupa_plugin.coupa._errors import InvalidPaceState
from coupa_plugin.coupa._ratelimit import (
    ACCEL_S,
    CUT,
    MAX_RATE,
    MIN_RATE,
    PAUSE_AT,
    PAUSE_S,
    RECOVER_PER_S,
    TAU_S,
    PaceState,
    RateLimiter,
)
from coupa_plugin.coupa._transport import deadline

__all__ = [
    "MAX_AHEAD_S",
    "MAX_HOLD_S",
    "PACE_SCRIPT",
    "RedisRateLimiter",
    "parse_pace_reply",
]

log = logging.getLogger("coupa_plugin.coupa.ratelimit")

_EXPIRE_MS: Final = 24 * 3600 * 1000
MAX_HOLD_S: Final = 60.0  # Retry-After is capped at 60 s: no hold window reaches further
MAX_AHEAD_S: Final = 2 * MAX_HOLD_S  # how far ahead the next slot may be booked
_MAX_SENT_RATE: Final = 100 * MAX_RATE
_MAX_OFFSET_S: Final = 86_400.0  # a Redis clock a day off is not a clock
_MAX_NUMBER_CHARS: Final = 40

# ARGV: op ('take' | 'throttle' | 'read'), now, target, burst, min_rate, recover_per_s, cut,
# sent_at ('' when unknown), retry_after ('' when none), expire_ms, accel_s, pause_at, pause_s,
# tau_s. Returns the state (and send_at).
PACE_SCRIPT: Final = """
local now = tonumber(ARGV[2])
local target, burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local min_rate, recover, cut = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local accel, pause_at_share = tonumber(ARGV[11]), tonumber(ARGV[12])
local pause_s, tau = tonumber(ARGV[13]), tonumber(ARGV[14])
local s = redis.call('HMGET', KEYS[1], 'tat', 'hold_until', 'floor', 'throttled',
                     'sent_rate', 'sent_at')
local tat = tonumber(s[1]) or 0
local hold = tonumber(s[2]) or 0
local floor = tonumber(s[3]) or target
local throttled = tonumber(s[4]) or 0
local sent_rate = tonumber(s[5]) or 0
local sent_at = tonumber(s[6]) or 0

local function climb(t)
  return floor + recover * target * math.max(0, t) * (1.0 + t / accel)
end

local function rate_at(at)
  if floor >= target or at <= hold then
    return math.min(floor, target)
  end
  local t = at - hold
  local pause_at = pause_at_share * floor / cut
  local grown = climb(t)
  if grown > pause_at then
    grown = math.max(pause_at, climb(t - pause_s))
  end
  return math.min(target, grown)
end

local function measured(at)
  return sent_rate * math.exp(-math.max(0, at - sent_at) / tau)
end

local function f(x) return string.format('%.17g', x) end
local send_at = now
local op = ARGV[1]
if op == 'take' then
  local rate = rate_at(now)
  local interval = 1.0 / rate
  local b = 1
  if rate >= target then b = burst end
  local start = math.max(tat, now, hold)
  send_at = math.max(now, hold, start - (b - 1) * interval)
  sent_rate = measured(now) + 1.0 / tau
  sent_at = now
  tat = start + interval
elseif op == 'throttle' then
  throttled = throttled + 1
  local sent = tonumber(ARGV[8])
  if not (sent ~= nil and sent < hold) then
    local h = now + (tonumber(ARGV[9]) or 1.0)
    floor = math.max(min_rate, math.min(rate_at(now), measured(now)) * cut)
    hold = math.max(h, hold)
    tat = h
  end
end
if op ~= 'read' then
  redis.call('HSET', KEYS[1], 'tat', f(tat), 'hold_until', f(hold), 'floor', f(floor),
             'throttled', throttled, 'sent_rate', f(sent_rate), 'sent_at', f(sent_at))
  redis.call('PEXPIRE', KEYS[1], ARGV[10])
end
return {f(tat), f(hold), f(floor), tostring(throttled), f(sent_rate), f(sent_at), f(send_at)}
"""


def _number(value: object, what: str) -> float:
    if isinstance(value, bytes | bytearray) and len(value) <= _MAX_NUMBER_CHARS:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number
    raise InvalidPaceState(f"{what} is not a finite number")


def _within(value: float, low: float, high: float, what: str) -> float:
    if not low <= value <= high:
        raise InvalidPaceState(f"{what} is out of range")
    return value


def parse_pace_reply(raw: object, now: float) -> tuple[PaceState, float]:
    """The state and send time in the script's reply, checked: numbers finite, times at most
    :data:`MAX_HOLD_S` (the hold) or :data:`MAX_AHEAD_S` (the next slot) ahead of ``now``,
    the floor within the settings' range of rates. :raises InvalidPaceState: naming the
    first value that fails."""
    if not isinstance(raw, Sequence) or isinstance(raw, bytes | str) or len(raw) != 7:
        raise InvalidPaceState("the reply is not the pacer's state")
    names = ("tat", "hold_until", "floor", "throttled", "sent_rate", "sent_at", "send_at")
    tat, hold, floor, throttled, sent_rate, sent_at, send_at = (
        _number(value, name) for value, name in zip(raw, names, strict=True)
    )
    _within(hold, 0.0, now + MAX_HOLD_S, "hold_until")
    _within(tat, 0.0, now + MAX_AHEAD_S, "tat")
    _within(send_at, 0.0, now + MAX_AHEAD_S, "send_at")
    _within(sent_at, 0.0, now + MAX_HOLD_S, "sent_at")
    _within(floor, MIN_RATE, MAX_RATE, "floor")
    _within(sent_rate, 0.0, _MAX_SENT_RATE, "sent_rate")
    if not (throttled.is_integer() and 0 <= throttled < 2**53):
        raise InvalidPaceState("throttled is not a count")
    return PaceState(tat, hold, floor, int(throttled), sent_rate, sent_at), send_at


class RedisRateLimiter(RateLimiter):
    """:class:`RateLimiter` whose state is one Redis hash per Coupa instance (``key``);
    ``rate`` is the instance's whole budget, shared by every worker."""

    def __init__(
        self,
        client: Any,
        key: str,
        rate: float,
        burst: int = 5,
        *,
        min_rate: float = 1.0,
        recover_per_s: float = RECOVER_PER_S,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        retry_s: float = 5.0,
        call_timeout_s: float = 1.0,
    ) -> None:
        self._local_clock = clock or time.time
        # None until measured on first contact; injected clocks are taken as the server's
        self._offset: float | None = None if clock is None else 0.0
        super().__init__(
            rate,
            burst,
            min_rate=min_rate,
            recover_per_s=recover_per_s,
            clock=self._now,
            sleep=sleep,
        )
        self._redis = client
        self.key = key
        self._script = client.register_script(PACE_SCRIPT)
        self._retry_s = retry_s
        self._call_timeout_s = call_timeout_s
        self._down_since: float | None = None
        self._state = PaceState(tat=0.0, hold_until=0.0, floor=rate, throttled=0)

    def _now(self) -> float:
        return self._local_clock() + (self._offset or 0.0)

    def _measure_offset(self) -> None:
        before = self._local_clock()
        seconds, micros = self._redis.time()
        after = self._local_clock()
        offset = float(seconds) + float(micros) / 1e6 - (before + after) / 2
        if not abs(offset) <= _MAX_OFFSET_S:  # nan included
            raise ValueError("the Redis server's clock is more than a day off")
        self._offset = offset

    # -- one atomic step in Redis, or the same rules locally while Redis is away -------------

    def run_script(
        self, op: str, now: float, sent_at: float | None = None, retry_after: float | None = None
    ) -> tuple[PaceState, float]:
        """Apply ``op`` at ``now`` in Redis: the new state and, for ``take``, the send time.
        Raises the client's error when Redis cannot be reached, :class:`InvalidPaceState`
        when what it answers fails :func:`parse_pace_reply`."""
        raw = self._script(
            keys=[self.key],
            args=[
                op,
                repr(now),
                repr(self.target),
                self.burst,
                repr(self.min_rate),
                repr(self.recover_per_s),
                repr(CUT),
                "" if sent_at is None else repr(sent_at),
                "" if retry_after is None else repr(retry_after),
                _EXPIRE_MS,
                repr(ACCEL_S),
                repr(PAUSE_AT),
                repr(PAUSE_S),
                repr(TAU_S),
            ],
        )
        return parse_pace_reply(raw, now)

    def _shared(
        self, op: str, sent_at: float | None = None, retry_after: float | None = None
    ) -> float | None:
        """Run ``op`` in Redis and keep the state; None when Redis is away or its state is
        invalid (then the caller applies the rules to the local state)."""
        local_now = self._local_clock()
        if self._down_since is not None and local_now - self._down_since < self._retry_s:
            return None
        try:
            with deadline(self._call_timeout_s):
                if self._offset is None:
                    self._measure_offset()
                state, send_at = self.run_script(op, self._now(), sent_at, retry_after)
        except InvalidPaceState as exc:
            self._reset()
            self._away(local_now, f"the shared pacing state is invalid ({exc}; reset)", exc)
            return None
        except Exception as exc:  # noqa: BLE001 - whatever the client raises on a garbage reply
            self._away(local_now, "shared pacing unavailable", exc)
            return None
        with self._lock:
            back = self._down_since is not None
            self._down_since = None
            self._state = state
        if back:
            log.warning("shared pacing available again")
        return send_at

    def _reset(self) -> None:
        """Delete the shared state (best effort): the next try starts from a fresh one."""
        with contextlib.suppress(Exception), deadline(self._call_timeout_s):
            self._redis.delete(self.key)

    def _away(self, local_now: float, why: str, exc: Exception) -> None:
        """Pace alone until Redis is tried again; warn once per outage, naming the kind of
        error only (its text may quote what the server sent)."""
        with self._lock:  # threads failing at once still warn once
            first = self._down_since is None
            self._down_since = local_now
        if first:
            log.warning(
                f"{why}: pacing alone until Redis answers again",
                extra={"error": type(exc).__name__, "key": self.key},
            )

    def _update_take(self, now: float) -> float:
        send_at = self._shared("take")
        return super()._update_take(now) if send_at is None else send_at

    def _current(self) -> PaceState:
        self._shared("read")
        return self._state

    def throttled_by_server(self, retry_after: float | None) -> None:
        sent_at = getattr(self._local, "sent_at", None)
        if self._shared("throttle", sent_at, retry_after) is None:
            super().throttled_by_server(retry_after)
