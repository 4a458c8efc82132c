"""Switches for Coupa behaviour the documentation leaves open, and operational realism."""

from __future__ import annotations

from typing import Final, Literal

import attrs

__all__ = [
    "CRASH_POINTS",
    "R39_READ_ONLY_FLAGS",
    "R39_SCHEMA_LACKS",
    "WRITE_FAILURES",
    "Operations",
    "Quirks",
]

WRITE_FAILURES: Final = frozenset(
    {"error", "error_after_apply", "drop_before_apply", "drop_after_apply"}
)
CRASH_POINTS: Final = frozenset({"before", "after"})
# Fields the sandbox's records carry that Coupa's R39 schema does not have ("table.key"):
# intake-user first appears in a later release, R39's AccountGroup has neither a description
# nor an active flag.
R39_SCHEMA_LACKS: Final = frozenset(
    {"users.intake-user", "account_groups.description", "account_groups.active"}
)
# License flags R39 marks readOnly on User.
R39_READ_ONLY_FLAGS: Final = frozenset({"category-planner-user"})


@attrs.define(kw_only=True)
class Quirks:
    """Undocumented Coupa behaviours; a correct client works under every combination.

    * ``list_put``: a non-empty ``roles`` / ``user-groups`` / ``content-groups`` /
      ``account-groups`` / ``approval-groups`` list on ``PUT /api/users/:id`` either
      ``replace``s the user's list or ``merge``s into it. An empty list (or null) always clears.
    * ``membership_bumps_updated_at``: whether a change through the membership API, the
      business-group routes or a group's ``users`` list bumps the user's ``updated-at``.
    * ``retry_after``: whether a 429 carries a ``Retry-After`` header.
    * ``page_cap`` / ``graphql_page_cap``: the most rows one REST page / GraphQL collection
      returns (Coupa documents 50 for REST; GraphQL is undocumented).
    * ``sticky_licenses``: license flags whose ``false`` is silently ignored on PUT (reported
      by third parties for Contracts and Purchasing).
    * ``hide_new_fields``: newer fields (``category-planner-user``, ``intake-user`` and the
      flag no client knows yet) appear only when named in ``fields`` (as Coupa documents).
    * ``schema_lacks``: ``"table.key"`` fields this tenant's release does not have
      (:data:`R39_SCHEMA_LACKS` for an R39 tenant): never rendered, writes to them ignored.
    * ``refuse_unknown_fields``: a ``fields=`` name the tenant's schema lacks is answered with
      400 naming it (Coupa does not document whether it drops or refuses one).
    * ``graphql_read_scopes_only``: GraphQL refuses a token that carries any write scope
      (Coupa documents read scopes only for GraphQL).
    * ``read_only_flags``: license flags whose writes are silently ignored
      (:data:`R39_READ_ONLY_FLAGS`: R39 marks them readOnly).
    * ``empty_roles_become_user``: a user whose roles are cleared gets the ``User`` role.
    * ``membership_delete``: whether ``DELETE /api/user_group_memberships/:id`` is enabled.
    * ``business_group_routes``: whether the per-user business-group add/remove routes exist.
    * ``token_scope_field``: whether the token response names the granted scopes.
    * ``invalid_scope_status``: the status of an ``invalid_scope`` token error.
    * ``graphql_ordering``: what a GraphQL collection does with ``order_by`` / ``dir`` in its
      ``query:`` (undocumented): ``honoured`` as in REST, ``ignored`` (ascending ids anyway)
      or ``refused`` (an error for that field, which voids the whole answer's data).
    * ``fields_refuse_flags``: license flags (``intake-user``, …) that a ``fields=`` naming
      them on ``/api/users`` is refused for (400 naming them, as a release whose ``fields=``
      validation lags its records does), while unfiltered user records still carry them
      (whatever ``hide_new_fields`` says).
    """

    list_put: Literal["replace", "merge"] = "replace"
    membership_bumps_updated_at: bool = False
    retry_after: bool = True
    page_cap: int = 50
    graphql_page_cap: int = 50
    sticky_licenses: frozenset[str] = frozenset()
    hide_new_fields: bool = False
    schema_lacks: frozenset[str] = frozenset()
    refuse_unknown_fields: bool = False
    graphql_read_scopes_only: bool = False
    read_only_flags: frozenset[str] = frozenset()
    empty_roles_become_user: bool = False
    membership_delete: bool = True
    business_group_routes: bool = True
    token_scope_field: bool = False
    invalid_scope_status: int = 400
    graphql_ordering: Literal["honoured", "ignored", "refused"] = "honoured"
    fields_refuse_flags: frozenset[str] = frozenset()


@attrs.define(kw_only=True)
class Operations:
    """Rate limit, latency and faults. Faults are decided from ``seed`` and the request, so the
    same requests meet the same faults whatever the thread interleaving.

    ``fail_writes`` maps the ordinal of a write (1 = the first POST/PUT/PATCH/DELETE under
    ``/api``) to ``error`` (500, nothing applied), ``error_after_apply`` (applied, then
    answered 500), ``drop_before_apply`` (connection dropped, nothing applied) or
    ``drop_after_apply`` (applied, then the connection is dropped).
    """

    rate_limit: bool = True
    rate_per_s: float = 25.0
    burst: int = 20
    latency_s: tuple[float, float] = (0.0, 0.0)
    error_rate: float = 0.0
    drop_rate: float = 0.0
    malformed_rate: float = 0.0
    fail_writes: dict[int, str] = attrs.field(factory=dict)
    crash_at: dict[int, str] = attrs.field(factory=dict)
    crash_at_write: dict[int, str] = attrs.field(factory=dict)
    user_reads_fail_after_write: int | None = None
    seed: int = 0
    token_ttl_s: float = 86_399.0
