"""The sandbox's data: a Coupa tenant in memory, and a seeded generator of realistic tenants.

Records are stored the way Coupa renders them in JSON (kebab-case keys). Associations on a user
(roles, content, account and approval groups) are stored as id lists; user-group membership is
stored once, as membership records, and rendered onto users and groups from there.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import attrs

__all__ = [
    "ACCOUNT_TYPE_FLAGS",
    "ASSOCIATIONS",
    "LICENSE_FLAGS",
    "TenantState",
    "generate_tenant",
    "now_iso",
]

SANDBOX_CLIENT_ID: Final = "sandbox-client"
"""The OAuth client every generated tenant knows (with every scope)."""
SANDBOX_CLIENT_SECRET: Final = "sandbox-secret"

# License flags of the R39 user record plus two seen only in newer payloads. "navi-agent-user"
# stands for a flag no client has heard of yet. The sandbox is a Coupa and imports nothing of
# the client, so this list is Coupa's side of the wire; tests/contract/test_facts.py holds it
# against the client's coupa.models.KNOWN_LICENSE_FLAGS.
LICENSE_FLAGS: Final = (
    "purchasing-user",
    "expense-user",
    "sourcing-user",
    "inventory-user",
    "contracts-user",
    "clm-advanced-user",
    "analytics-user",
    "aic-user",
    "spend-guard-user",
    "ccw-user",
    "risk-assess-user",
    "supply-chain-user",
    "travel-user",
    "treasury-user",
    "invoicing-user",
    "category-planner-user",
    "intake-user",
    "navi-agent-user",
)
# Flags newer than R38: shown only when named in ``fields`` under ``Quirks.hide_new_fields``.
NEW_FLAGS: Final = frozenset({"category-planner-user", "intake-user", "navi-agent-user"})
ACCOUNT_TYPE_FLAGS: Final = ("api-user", "supplier-user", "support-user", "msp-user")
# user key -> (catalog name, rendered fields)
ASSOCIATIONS: Final = {
    "roles": "roles",
    "user-groups": "user_groups",
    "content-groups": "business_groups",
    "account-groups": "account_groups",
    "approval-groups": "user_groups",
}
_LICENSE_RATES: Final = {
    "purchasing-user": 0.55,
    "expense-user": 0.7,
    "sourcing-user": 0.04,
    "inventory-user": 0.03,
    "contracts-user": 0.05,
    "clm-advanced-user": 0.01,
    "analytics-user": 0.08,
    "aic-user": 0.005,
    "spend-guard-user": 0.01,
    "ccw-user": 0.01,
    "risk-assess-user": 0.01,
    "supply-chain-user": 0.02,
    "travel-user": 0.1,
    "treasury-user": 0.005,
    "invoicing-user": 0.15,
    "category-planner-user": 0.0,
    "intake-user": 0.02,
    "navi-agent-user": 0.03,
}
_ROLES: Final = [
    (2, "Admin", "Full system access to setup and maintain the application", True),
    (
        3,
        "User",
        "Standard role for all users who need to create and/or approve requisitions",
        False,
    ),
    (4, "Buyer", "Manages purchase orders and suppliers", False),
    (5, "Accounts Payable", "Processes invoices and payments", False),
    (6, "Central Receiving", "Receives goods for other users", False),
    (7, "Accounting Supervisor", "Reviews accounting setup", False),
    (8, "Edit as Approver", "Can edit documents while approving", False),
    (9, "Inventory Manager", "Manages inventory", False),
    (10, "Expense Administrator", "Administers expense policies", False),
    (11, "Integration Operator", "Runs integrations", False),
    (10101, "Split Accounting", "", False),
    (10102, "Legacy Auditor", "Retired role kept for history; nobody holds it", False),
    (10103, "Catalog Manager", "Maintains catalogs", False),
    (10104, "Contract Manager", "Maintains contracts", False),
    (10105, "Security Officer", "Reviews security settings", False),
]
_UNHELD_ROLES: Final = frozenset({10102, 11})
_FIRST: Final = (
    "Ada",
    "Ben",
    "Cleo",
    "Dev",
    "Eva",
    "Finn",
    "Gia",
    "Hugo",
    "Ines",
    "Jon",
    "Kai",
    "Lena",
    "Milo",
    "Nia",
    "Omar",
    "Pia",
    "Quin",
    "Rosa",
    "Sami",
    "Tara",
    "Uma",
    "Vik",
    "Wen",
    "Xia",
    "Yara",
    "Zed",
)
_LAST: Final = (
    "Andersen",
    "Brown",
    "Chen",
    "Diaz",
    "Evans",
    "Fischer",
    "Garcia",
    "Hansen",
    "Ito",
    "Jones",
    "Kim",
    "Lopez",
    "Muller",
    "Novak",
    "Okafor",
    "Patel",
    "Quist",
    "Rossi",
    "Silva",
    "Tanaka",
    "Ueda",
    "Varga",
    "Weber",
    "Xu",
    "Young",
    "Zhang",
)
_BASE_TIME: Final = datetime(2019, 1, 1, 8, 0, tzinfo=UTC)


def now_iso() -> str:
    """Coupa's timestamp form: ``YYYY-MM-DDTHH:MM:SS+00:00``."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat()


@attrs.define
class TenantState:
    """All records of one sandbox tenant. Mutations go through methods holding :attr:`lock`."""

    users: dict[int, dict[str, Any]] = attrs.field(factory=dict)
    roles: dict[int, dict[str, Any]] = attrs.field(factory=dict)
    user_groups: dict[int, dict[str, Any]] = attrs.field(factory=dict)
    business_groups: dict[int, dict[str, Any]] = attrs.field(factory=dict)
    account_groups: dict[int, dict[str, Any]] = attrs.field(factory=dict)
    memberships: dict[int, tuple[int, int]] = attrs.field(factory=dict)
    groups_of: dict[int, set[int]] = attrs.field(factory=dict)
    members_of: dict[int, dict[int, int]] = attrs.field(factory=dict)
    clients: dict[str, tuple[str, frozenset[str]]] = attrs.field(factory=dict)
    client_users: dict[str, int] = attrs.field(factory=dict)
    lock: threading.RLock = attrs.field(factory=threading.RLock)
    version: int = 0
    _next_ids: dict[str, itertools.count[int]] = attrs.field(factory=dict)

    def next_id(self, table: str) -> int:
        if table not in self._next_ids:
            existing: Iterable[int] = getattr(self, table)
            self._next_ids[table] = itertools.count(max(existing, default=0) + 1)
        return next(self._next_ids[table])

    def touch(self) -> None:
        self.version += 1

    def add_client(
        self, client_id: str, secret: str, scopes: Iterable[str], user_id: int | None = None
    ) -> None:
        """Register an OAuth client; writes it makes are recorded as ``user_id``'s."""
        self.clients[client_id] = (secret, frozenset(scopes))
        if user_id is not None:
            self.client_users[client_id] = user_id

    # -- user-group membership: the single source of truth for "user-groups" -------------------

    def add_membership(self, user_id: int, group_id: int) -> int:
        existing = self.members_of.setdefault(group_id, {}).get(user_id)
        if existing is not None:
            return existing
        membership_id = self.next_id("memberships")
        self.memberships[membership_id] = (user_id, group_id)
        self.groups_of.setdefault(user_id, set()).add(group_id)
        self.members_of[group_id][user_id] = membership_id
        return membership_id

    def remove_membership(self, membership_id: int) -> tuple[int, int] | None:
        pair = self.memberships.pop(membership_id, None)
        if pair is not None:
            user_id, group_id = pair
            self.groups_of.get(user_id, set()).discard(group_id)
            self.members_of.get(group_id, {}).pop(user_id, None)
        return pair

    def access_of(self, user_id: int) -> dict[str, Any]:
        """Ground truth for one user: what they hold, keyed by the plugin's entitlement types,
        plus ``active`` and ``firstname``."""
        user = self.users[user_id]
        return {
            "role": set(user["roles"]),
            "group": set(self.groups_of.get(user_id, set())),
            "content_group": set(user["content-groups"]),
            "account_group": set(user["account-groups"]),
            "approval_group": set(user["approval-groups"]),
            "license": {
                key
                for key, value in user.items()
                if key.endswith("-user") and value is True and key not in ACCOUNT_TYPE_FLAGS
            },
            "active": user["active"],
            "firstname": user["firstname"],
        }

    def set_user_groups(self, user_id: int, group_ids: Iterable[int]) -> None:
        wanted = set(group_ids)
        current = set(self.groups_of.get(user_id, set()))
        for group_id in current - wanted:
            self.remove_membership(self.members_of[group_id][user_id])
        for group_id in sorted(wanted - current):
            self.add_membership(user_id, group_id)


def _role(rid: int, name: str, description: str, *, omnipotent: bool) -> dict[str, Any]:
    stamp = _iso(_BASE_TIME - timedelta(days=900))
    return {
        "id": rid,
        "name": name,
        "description": description,
        "omnipotent": omnipotent,
        "system-role": rid < 10000,
        "created-at": stamp,
        "updated-at": stamp,
    }


def _skewed_sizes(rng: random.Random, count: int, population: int) -> list[int]:
    """Group sizes with a heavy tail: a few huge groups, many small ones."""
    sizes = []
    for rank in range(1, count + 1):
        share = 0.6 / rank**1.1
        sizes.append(max(1, min(population, int(population * share * rng.uniform(0.7, 1.3)))))
    rng.shuffle(sizes)
    return sizes


def blank_user(user_id: int, stamp: str) -> dict[str, Any]:
    """A user record with every field the sandbox keeps, each at Coupa's default for a new
    user: the one template the generator and ``POST /api/users`` start from."""
    return {
        "id": user_id,
        "created-at": stamp,
        "updated-at": stamp,
        "login": None,
        "email": None,
        "firstname": None,
        "lastname": None,
        "fullname": None,
        "middlename": None,
        "employee-number": None,
        "active": True,
        "authentication-method": "coupa_credentials",
        "sso-identifier": None,
        "account-security-type": 0,
        "business-group-security-type": 0,
        "mention-name": None,
        "default-locale": None,
        "phone-work": None,
        "phone-mobile": None,
        "country-of-residence": None,
        "salesforce-id": None,
        "supplier-id": None,
        "api-user": False,
        "supplier-user": False,
        "support-user": False,
        "msp-user": False,
        "manager": None,
        "custom-fields": {},
        "created-by": None,
        "updated-by": None,
        "roles": [],
        "content-groups": [],
        "account-groups": [],
        "approval-groups": [],
        **dict.fromkeys(LICENSE_FLAGS, False),
    }


def generate_tenant(users: int = 200, seed: int = 0) -> TenantState:  # noqa: C901 - one step per generated resource kind
    """A realistic tenant of ``users`` users (plus a support and an integration account).

    Roles include Admin (id 2, omnipotent) and User (id 3) and roles nobody holds; user groups
    have skewed sizes; about 8 % of users are inactive; license flags are set at realistic
    rates, including one flag that clients do not know yet. Same ``seed``, same tenant.
    """
    rng = random.Random(seed)
    state = TenantState()
    for rid, name, description, omnipotent in _ROLES:
        state.roles[rid] = _role(rid, name, description, omnipotent=omnipotent)

    state.business_groups[1] = {
        "id": 1,
        "name": "Everyone",
        "description": "All users can see documents assigned to this group",
        "created-at": _iso(_BASE_TIME),
        "updated-at": _iso(_BASE_TIME),
    }
    regions = ["EMEA", "North America", "APAC", "LATAM", "Finance Restricted", "HR Restricted"]
    for i, name in enumerate(regions, start=2):
        state.business_groups[i] = {
            "id": i,
            "name": name,
            "description": f"{name} documents",
            "created-at": _iso(_BASE_TIME),
            "updated-at": _iso(_BASE_TIME),
        }
    account_names = ["US Operations", "UK Operations", "Germany", "Japan", "Capital Projects"]
    for i, name in enumerate(account_names, start=1):
        state.account_groups[i] = {
            "id": i,
            "name": name,
            "description": f"{name} accounts",
            "active": True,
            "created-at": _iso(_BASE_TIME),
            "updated-at": _iso(_BASE_TIME),
        }

    group_count = max(4, min(2_000, users // 40 + 4))
    departments = [
        "Finance",
        "Procurement",
        "IT",
        "Sales",
        "Marketing",
        "Legal",
        "HR",
        "R&D",
        "Facilities",
        "Logistics",
    ]
    for gid in range(1, group_count + 1):
        approver = gid % 5 == 0
        name = f"{departments[gid % len(departments)]} {'Approvers' if approver else 'Team'} {gid}"
        state.user_groups[gid] = {
            "id": gid,
            "name": name,
            "description": f"{name} ({'approval' if approver else 'work'} group)",
            "active": gid % 17 != 0,
            "can-approve": approver,
            "open": gid % 3 == 0,
            "type": None,
            "mention-name": name.lower().replace(" ", "_"),
            "created-at": _iso(_BASE_TIME),
            "updated-at": _iso(_BASE_TIME),
        }

    total = users + 2
    span = (datetime(2026, 10, 1, tzinfo=UTC) - _BASE_TIME).total_seconds()
    for uid in range(1, total + 1):
        created = _BASE_TIME + timedelta(seconds=span * (uid - 1) / total)
        updated = created + timedelta(
            seconds=rng.random() * (span - (created - _BASE_TIME).total_seconds())
        )
        support = uid == 1
        api = uid == 2 or (uid > 2 and rng.random() < 0.003)
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        login = (
            "coupasupport"
            if support
            else ("integration" if uid == 2 else f"{first.lower()}.{last.lower()}{uid}")
        )
        record = blank_user(uid, _iso(created))
        record.update(
            {
                "updated-at": _iso(updated),
                "login": login,
                "email": f"{login}@example.com",
                "firstname": first,
                "lastname": last,
                "fullname": f"{first} {last}",
                "employee-number": None if support or api else f"E{100000 + uid}",
                "active": support or api or rng.random() > 0.08,
                "authentication-method": rng.choice(["saml", "saml", "saml", "coupa_credentials"]),
                "business-group-security-type": 1 if rng.random() < 0.3 else 0,
                "mention-name": login.replace(".", "_"),
                "api-user": api,
                "support-user": support,
            }
        )
        if record["authentication-method"] == "saml":
            record["sso-identifier"] = record["email"]
        for flag in LICENSE_FLAGS:
            record[flag] = not (support or api) and rng.random() < _LICENSE_RATES[flag]
        if uid > 10 and rng.random() < 0.85:
            record["manager"] = rng.randrange(3, uid)
        roles = [] if support else [3]
        if support or rng.random() < 0.002 or uid in (3, 4):
            roles.append(2)
        for rid, rate in (
            (4, 0.06),
            (5, 0.04),
            (6, 0.02),
            (7, 0.01),
            (8, 0.03),
            (9, 0.01),
            (10, 0.01),
            (10101, 0.02),
            (10103, 0.01),
            (10104, 0.01),
            (10105, 0.002),
        ):
            if rng.random() < rate:
                roles.append(rid)
        if api:
            roles = [2]
        record["roles"] = sorted(set(roles))
        record["content-groups"] = (
            sorted({1} | {bg for bg in range(2, 2 + len(regions)) if rng.random() < 0.08})
            if record["business-group-security-type"] == 1
            else []
        )
        record["account-groups"] = sorted(a for a in state.account_groups if rng.random() < 0.05)
        record["approval-groups"] = []
        state.users[uid] = record

    human = [uid for uid in state.users if uid > 2]
    for gid, size in zip(
        state.user_groups, _skewed_sizes(rng, group_count, len(human)), strict=True
    ):
        for uid in sorted(rng.sample(human, min(size, len(human)))):
            state.add_membership(uid, gid)
            if state.user_groups[gid]["can-approve"] and rng.random() < 0.3:
                state.users[uid]["approval-groups"].append(gid)
    for uid in human:
        state.users[uid]["approval-groups"].sort()
    for rid in _UNHELD_ROLES:
        for record in state.users.values():
            if rid in record["roles"]:
                record["roles"].remove(rid)
    state.add_client(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, _ALL_SCOPES, user_id=2)
    return state


_ALL_SCOPES: Final = frozenset(
    {
        "core.business_entity.read",
        "core.common.read",
        "core.user_group.read",
        "core.user_group.write",
        "core.user.read",
        "core.user.write",
        "email",
        "login",
        "offline_access",
        "openid",
        "profile",
        "core.accounting.read",
    }
)
