"""The pacer of :mod:`.ratelimit` with its state in Redis, shared by workers on many machines.

Each update runs as one Lua script, so it is atomic across every worker: the script applies
the same rules as :meth:`RateLimiter._take` and :meth:`RateLimiter._throttle` (tests replay
one sequence of events through both and compare), with the parameters sent on every call.
Times are the workers' wall clocks corrected by their offset to the Redis server's clock
(measured on first contact), so workers whose clocks differ still share one timeline.

When Redis cannot be reached the pacer keeps going on its own, from the last state it saw, at
the configured rate (a warning is logged once per outage, and Redis is tried again every
``retry_s``): workers then pace independently, as without a shared state, and reconverge
through their reactions to 429s. Pacing never blocks provisioning or a sync on Redis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

from coupa_plugin.coupa.ratelimit import (
    ACCEL_S,
    CUT,
    PAUSE_AT,
    PAUSE_S,
    RECOVER_PER_S,
    TAU_S,
    PaceState,
    RateLimiter,
)

__all__ = ["PACE_SCRIPT", "RedisRateLimiter"]

log = logging.getLogger("coupa_plugin.coupa.ratelimit")

_EXPIRE_MS: Final = 24 * 3600 * 1000

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
        self._down_since: float | None = None
        self._state = PaceState(tat=0.0, hold_until=0.0, floor=rate, throttled=0)

    def _now(self) -> float:
        return self._local_clock() + (self._offset or 0.0)

    def _measure_offset(self) -> None:
        before = self._local_clock()
        seconds, micros = self._redis.time()
        after = self._local_clock()
        self._offset = seconds + micros / 1e6 - (before + after) / 2

    # -- one atomic step in Redis, or the same rules locally while Redis is away -------------

    def run_script(
        self, op: str, now: float, sent_at: float | None = None, retry_after: float | None = None
    ) -> tuple[PaceState, float]:
        """Apply ``op`` at ``now`` in Redis: the new state and, for ``take``, the send time.
        Raises the client's error when Redis cannot be reached."""
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
        tat, hold, floor, throttled, sent_rate, sent, send_at = (float(v) for v in raw)
        return PaceState(tat, hold, floor, int(throttled), sent_rate, sent), send_at

    def _shared(
        self, op: str, sent_at: float | None = None, retry_after: float | None = None
    ) -> float | None:
        """Run ``op`` in Redis and keep the state; None when Redis is away (then the caller
        applies the rules to the local state)."""
        import redis

        local_now = self._local_clock()
        if self._down_since is not None and local_now - self._down_since < self._retry_s:
            return None
        try:
            if self._offset is None:
                self._measure_offset()
            state, send_at = self.run_script(op, self._now(), sent_at, retry_after)
        except redis.RedisError as exc:
            if self._down_since is None:
                log.warning(
                    "shared pacing unavailable: pacing alone until Redis answers again",
                    extra={"error": type(exc).__name__},
                )
            self._down_since = local_now
            return None
        if self._down_since is not None:
            log.warning("shared pacing available again")
            self._down_since = None
        with self._lock:
            self._state = state
        return send_at

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
