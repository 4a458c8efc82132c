"""Chaos benchmark for provisioning: random operations against the loopback sandbox with injected
write and read faults, administrators changing users between calls, and worker processes killed
in the middle of a request (recoveries included). Every outcome is checked against a model of
what people mean.

    python -m benchmarks.chaos_provisioning                 # 1,000 operations per semantics
    python -m benchmarks.chaos_provisioning --ops 200 --seed 3 --semantics merge

The sandbox serves from this process on loopback (a real HTTP server); operations run in a worker
process through the plugin's ``provision`` hook. A kill is the sandbox sending SIGKILL to the
worker when the chosen request arrives (``before``: it is not applied) or after it was applied
(``after``). A new worker (a new process over the same ``state_dir``) takes over; its first
call, whoever it is about, recovers what the dead one left, and a kill is sometimes armed for
that call too (a recovery killed in its turn). Repairs run at hook calls (the self-repair thread
is off here: its writes could not be told from those of the operation in flight).

The model of intent: an administrator's change is one item added or removed, and means just
that; what our rewrite removed is expected back unless that item was removed after our put-back
had given it back. Writes are counted per user, so a call that repaired another user is not
taken for one that wrote. Retries run
without waiting (stamina's testing mode, 3 attempts), so a read path that is down shows quickly.

Counted, and all must be 0:

* grants lost: something the model says the user holds is missing, at a moment when no rewrite
  of that user is journaled (a journaled rewrite may hold less until it is recovered);
* grants appearing unasked: the user holds something nobody asked for (checked always);
* wrong statuses: ``unchanged`` although a write was sent, ``applied`` with nothing written, or
  a result that did not do what it was asked;
* unstated failures: a ProvisioningError after a write that neither states what the user holds
  now (the lists as Coupa has them) nor says the state could not be read (with the last state
  seen and the writes sent).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from coupa_plugin.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    CoupaSandbox,
    Operations,
    Quirks,
    SandboxServer,
    generate_tenant,
)
from coupa_plugin.sandbox._app import SandboxRequest, SandboxResponse

USER_ROLE = 3  # what the sandbox gives an emptied user under empty_roles_become_user
KINDS = ("role", "group", "content_group", "account_group", "approval_group")
LIST_KEYS = {
    "role": "roles",
    "group": "user-groups",
    "content_group": "content-groups",
    "account_group": "account-groups",
    "approval_group": "approval-groups",
}
CHOICES = {
    "role": [3, 4, 5, 8],
    "group": [1, 2, 3],
    "content_group": [1, 2, 3],
    "account_group": [1, 2],
    "approval_group": [1, 2],
}
FLAGS = ["sourcing-user", "travel-user", "expense-user"]


# -- the worker process ------------------------------------------------------------------------


def _worker(conn: Connection, section: dict[str, Any]) -> None:
    import threading

    import stamina

    from coupa_plugin.host.errors import PluginError
    from coupa_plugin.host.model import ProvisionRequest, Tenant
    from coupa_plugin.plugin import CoupaPlugin

    stamina.set_testing(True, attempts=3, cap=True)

    def hook_calls_only(_stop: threading.Event, _seconds: float) -> bool:
        # repairs run at hook calls only: a write the self-repair thread made while an
        # operation was in flight would be counted as that operation's (the thread is tested
        # on its own in tests/connector/test_finish_and_repair.py)
        return True

    plugin = CoupaPlugin(repair_wait=hook_calls_only)
    tenant = Tenant(id="chaos", plugins={"coupa": section})
    while True:
        try:
            op = conn.recv()
        except EOFError:
            return
        if op is None:
            return
        try:
            if op.get("configure"):
                status = plugin.configure(tenant=tenant)
                conn.send(("ok", {"warnings": list(status.warnings) if status else []}))
                continue
            result = plugin.provision(tenant=tenant, request=ProvisionRequest(**op))
            assert result is not None
            conn.send(
                (
                    "ok",
                    {
                        "status": result.status,
                        "changes": list(result.changes),
                        "message": result.message,
                    },
                )
            )
        except PluginError as exc:
            conn.send(("error", {"type": type(exc).__name__, "message": str(exc)}))
        except Exception as exc:  # noqa: BLE001 - counted: only PluginErrors may escape a hook
            conn.send(("raw", {"type": type(exc).__name__, "message": str(exc)}))


class Worker:
    def __init__(self, section: dict[str, Any]) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, section), daemon=True)
        self.proc.start()
        child.close()

    def call(self, op: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """The worker's answer, or None when it died."""
        try:
            self.conn.send(op)
            answer: tuple[str, dict[str, Any]] = self.conn.recv()
            return answer
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self.proc.join(timeout=5)
            return None

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()


# -- killing a worker from the sandbox ---------------------------------------------------------


class Killer:
    """Wraps the sandbox's ``handle`` to SIGKILL the worker at a chosen request, and counts
    the writes that reached each user."""

    def __init__(self, sandbox: CoupaSandbox) -> None:
        self.sandbox = sandbox
        self.inner: Callable[[SandboxRequest], SandboxResponse] = sandbox.handle
        self.count = 0
        self.at: int | None = None
        self.point = "after"
        self.pid: int | None = None
        self.kills = 0
        self.writes: Counter[int] = Counter()
        self.emptied: set[int] = set()  # users whose roles a write of ours left empty
        sandbox.handle = self.handle  # type: ignore[method-assign]

    def _user_of(self, request: SandboxRequest) -> int | None:
        parts = request.path.strip("/").split("/")
        if len(parts) >= 3 and parts[:2] == ["api", "users"] and parts[2].isdigit():
            return int(parts[2])
        if parts[:2] == ["api", "user_group_memberships"]:
            if request.method == "POST":
                with contextlib.suppress(ValueError, AttributeError):
                    body = json.loads(request.body or b"{}")
                    body = body.get("user-group-membership", body)
                    return int(body.get("user-id") or body.get("user_id"))
            elif len(parts) == 3 and parts[2].isdigit():
                pair = self.sandbox.state.memberships.get(int(parts[2]))
                return pair[0] if pair else None
        return None

    def _count(self, request: SandboxRequest) -> None:
        if request.method in {"POST", "PUT", "PATCH", "DELETE"} and request.path != "/api/graphql":
            uid = self._user_of(request)
            if uid is not None:
                self.writes[uid] += 1
                body = (request.body or b"").replace(b" ", b"")
                if b'"roles":[]' in body or b'"roles":null' in body:
                    self.emptied.add(uid)

    def arm(self, pid: int, in_requests: int, point: str) -> None:
        self.pid, self.at, self.point = pid, self.count + in_requests, point

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if request.path.startswith("/api/"):
            self._count(request)
            self.count += 1
            if self.at is not None and self.count == self.at and self.pid:
                self.at = None
                if self.point == "before":
                    self._kill()
                    return SandboxResponse(0, {}, b"", drop=True)
                response = self.inner(request)
                self._kill()
                return SandboxResponse(0, {}, b"", drop=True) if response else response
        return self.inner(request)

    def _kill(self) -> None:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)
        self.kills += 1


# -- the model ---------------------------------------------------------------------------------


class Chaos:
    def __init__(
        self,
        semantics: str,
        seed: int,
        ops: int,
        *,
        default_role: bool,
        kills: float = 0.12,
        admin: float = 0.08,
    ) -> None:
        self.rng = random.Random(seed)
        self.ops = ops
        self.kills = kills
        self.admin = admin
        self.default_role = default_role
        state = generate_tenant(users=10, seed=seed)
        for gid in (1, 2):
            state.user_groups[gid]["can-approve"] = True
        self.users = [u for u in state.users if u > 2]
        for uid in self.users:  # siblings to lose
            user = state.users[uid]
            user["roles"] = sorted({*user["roles"], 3, 4, 5})
            user["account-groups"] = [1, 2]
            user["approval-groups"] = [1, 2]
            user["content-groups"] = [1, 2, 3]
            state.set_user_groups(uid, [1, 2, 3])
        self.sandbox = CoupaSandbox(
            state,
            quirks=Quirks(
                list_put=semantics,  # type: ignore[arg-type]
                empty_roles_become_user=default_role,
            ),
            operations=Operations(rate_limit=False, error_rate=0.02, seed=seed),
        )
        self.killer = Killer(self.sandbox)
        self.server = SandboxServer(self.sandbox).start()
        self.state_dir = Path(tempfile.mkdtemp(prefix="coupa-chaos-"))
        self.section = {
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
            "base_url": self.server.url,
            "allow_insecure_base_url": True,
            "requests_per_second": 10_000,
            "state_dir": str(self.state_dir),
        }
        self.model = {uid: state.access_of(uid) for uid in self.users}
        self.open: dict[int, set[tuple[str, Any]]] = {uid: set() for uid in self.users}
        self.counts: Counter[str] = Counter()
        self.problems: list[str] = []
        self.worker = Worker(self.section)

    # -- helpers ---------------------------------------------------------------------------

    def truth(self, uid: int) -> dict[str, Any]:
        return self.sandbox.state.access_of(uid)

    def journaled(self, uid: int) -> bool:
        return any(
            not p.name.endswith(".done.json")
            for p in (self.state_dir / "journal").rglob(f"{uid}-*.json")
        )

    def problem(self, kind: str, detail: str) -> None:
        self.counts[kind] += 1
        if len(self.problems) < 20:
            self.problems.append(f"{kind}: {detail}")

    def check(self, uid: int, where: str) -> None:
        """Compare Coupa with the model, ignoring undecided items."""
        actual, expected = self.truth(uid), self.model[uid]
        undecided = self.open[uid]
        pending = self.journaled(uid)
        for field, value in expected.items():
            if (field, None) in undecided:
                continue
            got = actual[field]
            if not isinstance(value, set):
                if got != value:
                    self.problem("wrong state", f"{where}: user {uid} {field} {got!r} != {value!r}")
                continue
            items = {i for f, i in undecided if f == field}
            missing, extra = (value - got) - items, (got - value) - items
            if extra == {USER_ROLE} and field == "role" and self._given_by_coupa(uid):
                value.add(USER_ROLE)  # Coupa's rule after our write emptied the roles
                self.counts["User role given by Coupa after an emptying write"] += 1
                extra = set()
            if extra:
                self.problem("grants appearing unasked", f"{where}: user {uid} {field} {extra}")
            if missing and not (pending and field in LIST_KEYS):
                self.problem("grants lost", f"{where}: user {uid} {field} {missing}")

    def _given_by_coupa(self, uid: int) -> bool:
        """The User role came from Coupa: it gives one to a user whose roles a write of ours
        left empty (a clear, or a revoke of the last role), with ``--default-role``."""
        return self.default_role and uid in self.killer.emptied

    def adopt(self, uid: int) -> None:
        """A call for the user succeeded (its recovery ran): decide undecided items."""
        actual = self.truth(uid)
        for field, item in list(self.open[uid]):
            if item is None:
                self.model[uid][field] = actual[field]
            elif item in actual[field]:
                self.model[uid][field].add(item)
            else:
                self.model[uid][field].discard(item)
        self.open[uid].clear()

    def restart(self) -> None:
        self.worker.proc.join(timeout=5)
        self.worker = Worker(self.section)
        self.counts["workers restarted"] += 1

    # -- one step --------------------------------------------------------------------------

    def random_op(self) -> tuple[dict[str, Any], int, str, Any]:
        uid = self.rng.choice(self.users)
        roll = self.rng.random()
        if roll < 0.7:
            kind = self.rng.choice(KINDS)
            item = self.rng.choice(CHOICES[kind])
            action = self.rng.choice(["grant", "revoke", "revoke"])
            entitlement = f"{kind}:{item}:member"
            op = {"action": action, "entitlement_id": entitlement, "principal_id": str(uid)}
            return op, uid, kind, item
        if roll < 0.82:
            flag = self.rng.choice(FLAGS)
            action = self.rng.choice(["grant", "revoke"])
            op = {
                "action": action,
                "entitlement_id": f"license:{flag}:assigned",
                "principal_id": str(uid),
            }
            return op, uid, "license", flag
        if roll < 0.92:
            action = self.rng.choice(["enable_account", "disable_account"])
            return {"action": action, "principal_id": str(uid)}, uid, "active", None
        name = self.rng.choice(["Ann", "Bo", "Cy"])
        op = {
            "action": "update_account",
            "principal_id": str(uid),
            "attributes": {"firstname": name},
        }
        return op, uid, "firstname", None

    def expect(self, uid: int, field: str, item: Any, op: dict[str, Any]) -> Any:
        """The model's value of ``field`` once ``op`` succeeded."""
        value = self.model[uid][field]
        if field == "active":
            return op["action"] == "enable_account"
        if field == "firstname":
            return op["attributes"]["firstname"]
        return value | {item} if op["action"] == "grant" else value - {item}

    def admin_change(self) -> None:
        """An administrator adds or removes one item of a list, as Coupa shows it: they mean
        that item, nothing else (what an interrupted rewrite took from the user is still
        owed to them)."""
        uid = self.rng.choice(self.users)
        kind = self.rng.choice(KINDS)
        current = self.truth(uid)[kind]
        item = self.rng.choice(CHOICES[kind])
        wanted = current ^ {item}
        self.sandbox.admin_update(uid, {LIST_KEYS[kind]: [{"id": i} for i in sorted(wanted)]})
        # what the change did, as Coupa took it (a user left without roles gets the User role
        # back under --default-role: that removal did not take)
        if item in self.truth(uid)[kind]:
            self.model[uid][kind].add(item)
        else:
            self.model[uid][kind].discard(item)
        self.open[uid].discard((kind, item))
        self.counts["admin changes"] += 1

    def step(self) -> None:  # noqa: C901 - one branch per kind of random operation
        if self.rng.random() < self.admin:
            self.admin_change()
        op, uid, field, item = self.random_op()
        ops = self.sandbox.ops
        fault = self.rng.random()
        if fault < 0.10:
            ops.fail_writes = {self.sandbox.writes + self.rng.randint(1, 3): "error"}
            self.counts["write faults armed"] += 1
        elif fault < 0.16:
            ops.fail_writes = {
                self.sandbox.writes + self.rng.randint(1, 3): self.rng.choice(
                    ["drop_before_apply", "drop_after_apply"]
                )
            }
            self.counts["write faults armed"] += 1
        elif fault < 0.22:
            ops.user_reads_fail_after_write = self.sandbox.writes + 1
            self.counts["read faults armed"] += 1
        elif fault < 0.22 + self.kills:
            point = self.rng.choice(["before", "after"])
            self.killer.arm(self.worker.proc.pid or 0, self.rng.randint(1, 10), point)
        writes = self.killer.writes[uid]
        before = self.truth(uid)
        answer = self.worker.call(op)
        ops.fail_writes, ops.user_reads_fail_after_write = {}, None
        self.killer.at = None
        wrote = self.killer.writes[uid] > writes
        self.counts["operations"] += 1
        if answer is None:
            self.counts["workers killed"] += 1
            self.open[uid].add((field, item))
            self.restart()
            if self.rng.random() < 0.3:  # the new worker's first call (its recovery) dies too
                self.killer.arm(self.worker.proc.pid or 0, self.rng.randint(1, 4), "after")
                self.counts["recoveries armed to die"] += 1
            self.check(uid, f"after a kill during {op}")
            return
        kind, payload = answer
        if kind == "raw":
            self.problem("raw exceptions", f"{op}: {payload}")
            self.open[uid].add((field, item))
            return
        if kind == "error":
            self.counts[f"errors: {payload['type']}"] += 1
            self._check_error(uid, op, payload["message"], wrote=wrote, before=before)
            self._coupas_default_role(uid, payload["message"])
            self.open[uid].add((field, item))
            self.check(uid, f"after a failed {op}")
            return
        status = payload["status"]
        self.counts[f"status {status}"] += 1
        if status == "unchanged" and wrote:
            self.problem("wrong statuses", f"{op}: unchanged, but a write was sent")
        if status == "applied" and not wrote:
            self.problem("wrong statuses", f"{op}: applied, but nothing was written")
        if "interrupted rewrite" in payload["message"]:
            self.counts["recoveries reported"] += 1
        self.open[uid].discard((field, item))
        self.adopt(uid)
        expected = self.expect(uid, field, item, op)
        self.model[uid][field] = expected
        self._coupas_default_role(uid, payload["message"])
        expected = self.model[uid][field]
        actual = self.truth(uid)[field]
        if actual != expected:
            self.problem("wrong statuses", f"{op}: {status}, yet {field} is {actual!r}")
            self.model[uid][field] = actual
        for other in self.users:  # a call repairs the tenant's stripped users, whoever it is for
            self.check(other, f"after {op} (user {other})")

    def _coupas_default_role(self, uid: int, message: str) -> None:
        """Coupa gives a user whose roles were cleared the User role (``--default-role``); a
        merging Coupa then keeps it through the put-back, and the call says so: that role is
        Coupa's doing, stated, not a grant appearing unasked."""
        if not self.default_role or "this call did not write" not in message:
            return
        given = self.truth(uid)["role"] - self.model[uid]["role"]
        if given == {USER_ROLE}:
            self.model[uid]["role"].add(USER_ROLE)
            self.counts["User role given by Coupa, stated"] += 1

    def _check_error(
        self, uid: int, op: dict[str, Any], message: str, *, wrote: bool, before: dict[str, Any]
    ) -> None:
        if "nothing was written" in message or "refused" in message:
            if wrote or self.truth(uid) != before:
                self.problem("unstated failures", f"{op}: says nothing was written: {message}")
            return
        if not wrote and self.truth(uid) == before:
            return
        if "could not be read" in message:
            if "writes sent" not in message:
                self.problem("unstated failures", f"{op}: {message}")
            return
        truth = self.sandbox.state.users[uid]
        groups = sorted(self.sandbox.state.groups_of.get(uid, set()))
        lists = {key: sorted(truth[key]) for key in LIST_KEYS.values() if key != "user-groups"}
        lists["user-groups"] = groups
        stated = all(
            f"{key} [{', '.join(str(i) for i in ids)}]" in message for key, ids in lists.items()
        )
        if f"User {uid} now holds" not in message or not stated:
            self.problem("unstated failures", f"{op}: {message}")

    def finish(self) -> None:
        """Faults off: a fresh worker's configure recovers every entry; the model must match."""
        self.restart()
        answer = self.worker.call({"configure": True})
        if answer is None or answer[0] != "ok":
            self.problem("final configure failed", repr(answer))
        for uid in self.users:
            if self.journaled(uid):
                self.problem("entries left", f"user {uid}")
            self.adopt_final(uid)
        self.worker.stop()
        self.server.stop()

    def adopt_final(self, uid: int) -> None:
        self.adopt(uid)
        self.check(uid, "at the end")


def run(
    semantics: str,
    seed: int,
    ops: int,
    *,
    default_role: bool = False,
    kills: float = 0.12,
    admin: float = 0.08,
) -> dict[str, Any]:
    chaos = Chaos(semantics, seed, ops, default_role=default_role, kills=kills, admin=admin)
    started = time.monotonic()
    try:
        for n in range(ops):
            chaos.step()
            if (n + 1) % 100 == 0:
                print(
                    f"  {semantics}: {n + 1}/{ops} operations, "
                    f"{chaos.counts['workers killed']} kills, "
                    f"{sum(v for k, v in chaos.counts.items() if k in _ZERO)} problems",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        chaos.finish()
    counts = dict(sorted(chaos.counts.items()))
    for key in _ZERO:
        counts.setdefault(key, 0)
    return {
        "semantics": semantics,
        "seed": seed,
        "seconds": round(time.monotonic() - started, 1),
        "counts": counts,
        "first problems": chaos.problems,
    }


_ZERO = (
    "grants lost",
    "grants appearing unasked",
    "wrong statuses",
    "unstated failures",
    "raw exceptions",
    "wrong state",
    "entries left",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--semantics", choices=["replace", "merge", "both"], default="both")
    parser.add_argument(
        "--default-role",
        action="store_true",
        help="Coupa gives a user whose roles were cleared the User role (empty_roles_become_user)",
    )
    parser.add_argument(
        "--kills",
        type=float,
        default=0.12,
        help="share of operations armed to kill the worker (at a random request of the call)",
    )
    parser.add_argument(
        "--admin",
        type=float,
        default=0.08,
        help="share of operations an administrator's change (one item) comes before",
    )
    args = parser.parse_args()
    modes = ["replace", "merge"] if args.semantics == "both" else [args.semantics]
    results = [
        run(
            mode,
            args.seed,
            args.ops,
            default_role=args.default_role,
            kills=args.kills,
            admin=args.admin,
        )
        for mode in modes
    ]
    print(json.dumps(results, indent=2))
    bad = sum(r["counts"][k] for r in results for k in _ZERO)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
