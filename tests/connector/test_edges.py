"""Strict parsing at the edges: ids and entitlement ids, server records, settings, private
files, the sandbox's exposure warning and the last guard of provision."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from coupa_plugin.connector._mapping import parse_entitlement_id, parse_id
from coupa_plugin.connector._provisioning.per_item import PerItem
from coupa_plugin.connector._settings import parse_settings
from coupa_plugin.coupa import ClientConfig, CoupaClient, CoupaResponseError, PagingError, Secret
from coupa_plugin.coupa._client import GraphQLError
from coupa_plugin.coupa._errors import RecordError
from coupa_plugin.coupa._models import Role, UserGroup, structure, structure_user
from coupa_plugin.coupa._ratelimit import SharedRateLimiter
from coupa_plugin.host.errors import ConfigurationError, NotFoundError, ProvisioningError
from coupa_plugin.host.model import ProvisionRequest
from coupa_plugin.refhost._errors import UnusableSnapshotError
from coupa_plugin.refhost._snapshot import SnapshotStore
from coupa_plugin.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    CoupaSandbox,
    Operations,
    SandboxServer,
    generate_tenant,
)
from coupa_plugin.sandbox._server import SandboxTransport, is_loopback
from tests.kit import plugin_for, scratch_dir, tenant

ARABIC_FIVE, FULLWIDTH_FIVE, ARABIC_ONE = "\u0665", "\uff15", "\u0661"


def small(users: int) -> CoupaSandbox:
    return CoupaSandbox(
        generate_tenant(users=users, seed=3), operations=Operations(rate_limit=False)
    )


# -- ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["05", ARABIC_FIVE, FULLWIDTH_FIVE, "\u00b2", "1" * 19, "0", "-1", "+1", " 5", "5\n", "", "x"],
)
def test_only_canonical_ascii_ids_are_ids(text: str) -> None:
    assert parse_id(text) is None


def test_canonical_ids_parse() -> None:
    assert parse_id("5") == 5
    assert parse_id("9" * 18) == 10**18 - 1
    assert parse_id(5) is None  # not text


@pytest.mark.parametrize(
    "value",
    [
        f"role:{ARABIC_ONE}:member",
        "role:01:member",
        "group:5000000000000000000:member",
        "license:evil:role:3-user:assigned",
        "license:api-user:assigned",
        "license:Expense-User:assigned",
        "role:2:assigned",
        ["role:2:member"],
    ],
)
def test_ambiguous_entitlement_ids_are_unknown(value: Any) -> None:
    assert parse_entitlement_id(value) is None


def grant(entitlement: str, principal: Any) -> dict[str, Any]:
    return {"action": "grant", "entitlement_id": entitlement, "principal_id": principal}


@pytest.mark.parametrize(
    ("request_kwargs", "error"),
    [
        (grant("role:2:member", ARABIC_FIVE), NotFoundError),
        (grant("role:2:member", "05"), NotFoundError),
        (grant(f"role:{ARABIC_ONE}:member", "5"), NotFoundError),
        (grant("role:2:member", ["5"]), ProvisioningError),
        ({"action": "update_account", "principal_id": "5", "attributes": None}, ProvisioningError),
        (
            {
                "action": "update_account",
                "principal_id": "5",
                "attributes": {"login": "x" * 65_536},
                "dry_run": True,
            },
            ProvisioningError,
        ),
    ],
)
def test_ambiguous_or_mistyped_requests_send_nothing(
    request_kwargs: dict[str, Any], error: type[Exception]
) -> None:
    sandbox = CoupaSandbox(
        generate_tenant(users=6, seed=3), operations=Operations(rate_limit=False)
    )
    plugin = plugin_for(sandbox)
    before = len(sandbox.log)
    with pytest.raises(error):
        plugin.provision(tenant=tenant(), request=ProvisionRequest(**request_kwargs))
    assert len(sandbox.log) == before
    plugin.close()


# -- server records --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"active": "false"}, "active"),
        ({"id": 5.9}, "id"),
        ({"id": True}, "id"),
        ({"id": 2**63}, "id"),
        ({"login": None}, "login"),
        ({"login": "x" * 5000}, "login"),
        ({"firstname": ["a"]}, "firstname"),
        ({"roles": [{"id": "3"}]}, "roles.id"),
        ({"roles": "3"}, "roles"),
        ({"evil:role:3-user": True}, "license flag"),
    ],
)
def test_server_fields_are_checked_never_coerced(change: dict[str, Any], field: str) -> None:
    payload = {"id": 5, "login": "ann", "active": True, **change}
    with pytest.raises(RecordError, match=field):
        structure_user(payload)


def test_catalog_rows_are_checked() -> None:
    assert structure({"id": 2, "name": "Admin", "omnipotent": True}, Role).omnipotent
    for row in ({"id": "2", "name": "x"}, {"id": 2, "name": ["x"]}, {"name": "x"}, [1]):
        with pytest.raises(RecordError):
            structure(row, UserGroup)


def client_answering(
    answer: Callable[[httpx.Request], httpx.Response], **config: Any
) -> CoupaClient:
    sandbox = CoupaSandbox(
        generate_tenant(users=3, seed=1), operations=Operations(rate_limit=False)
    )
    real = SandboxTransport(sandbox)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return real.handle_request(request)
        return answer(request)

    settings = {
        "base_url": "http://sandbox",
        "client_id": SANDBOX_CLIENT_ID,
        "client_secret": Secret(SANDBOX_CLIENT_SECRET),
        "requests_per_second": 10_000.0,
        "mode": "read-only",
        **config,
    }
    return CoupaClient(ClientConfig(**settings), httpx.MockTransport(handler))


def test_graphql_errors_of_any_shape_are_typed() -> None:
    for errors in (5, "boom", [{"message": ["nested"]}], {"message": "x"}):

        def answer(_: httpx.Request, errors: object = errors) -> httpx.Response:
            return httpx.Response(200, json={"errors": errors})

        client = client_answering(answer)
        with pytest.raises(GraphQLError):
            client.graphql("{ roles { id } }")
        client.close()


def test_a_malformed_group_row_is_a_response_error() -> None:
    client = client_answering(lambda r: httpx.Response(200, json=[{"id": 1, "name": None}]))
    with pytest.raises(CoupaResponseError, match="user_groups"):
        list(client.user_groups())
    client.close()


def test_an_endless_listing_stops_at_the_row_cap() -> None:
    def endless(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params.get("offset", 0))
        rows = [{"id": offset + i + 1, "name": "g"} for i in range(50)]
        return httpx.Response(200, content=orjson.dumps(rows))

    client = client_answering(endless, max_listing_rows=500)
    with pytest.raises(PagingError, match="more than 500 rows"):
        list(client.user_groups())
    client.close()


def test_an_odd_membership_answer_after_the_write_is_settled_by_the_read_back() -> None:
    sandbox = CoupaSandbox(
        generate_tenant(users=6, seed=3), operations=Operations(rate_limit=False)
    )
    real = SandboxTransport(sandbox)

    def odd(request: httpx.Request) -> httpx.Response:
        response = real.handle_request(request)
        if request.method == "POST" and request.url.path == "/api/user_group_memberships":
            return httpx.Response(200, json={"weird": ["shape"]})
        return response

    from coupa_plugin.plugin import CoupaPlugin

    plugin = CoupaPlugin(transport_factory=lambda _: httpx.MockTransport(odd))
    uid = next(u for u in sandbox.state.users if 1 not in sandbox.state.groups_of.get(u, ()))
    result = plugin.provision(
        tenant=tenant(state_dir=str(scratch_dir())),
        request=ProvisionRequest(
            action="grant", entitlement_id="group:1:member", principal_id=str(uid)
        ),
    )
    assert result is not None and result.status == "applied"
    assert 1 in sandbox.state.groups_of[uid]
    plugin.close()


def test_an_unforeseen_failure_in_provision_states_what_the_user_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = CoupaSandbox(
        generate_tenant(users=6, seed=3), operations=Operations(rate_limit=False)
    )
    plugin = plugin_for(sandbox)

    def broken(*_: Any, **__: Any) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr(PerItem, "_membership", broken)
    uid = next(u for u in sandbox.state.users if 1 not in sandbox.state.groups_of.get(u, ()))
    with pytest.raises(ProvisioningError, match="now holds") as caught:
        plugin.provision(
            tenant=tenant(state_dir=str(scratch_dir())),
            request=ProvisionRequest(
                action="grant", entitlement_id="group:1:member", principal_id=str(uid)
            ),
        )
    assert isinstance(caught.value.__cause__, KeyError)
    plugin.close()


# -- settings --------------------------------------------------------------------------------


def section(**changes: Any) -> dict[str, Any]:
    return dict(tenant(**changes).plugins["coupa"])


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"requests_per_second": 1e-300}, "requests_per_second"),
        ({"requests_per_second": 1e-6}, "requests_per_second"),
        ({"requests_per_second": float("nan")}, "requests_per_second"),
        ({"timeout_s": 0.0}, "timeout_s"),
        ({"max_response_mb": 0}, "max_response_mb"),
        ({"base_url": "http://[::1"}, "base_url"),
        ({"base_url": "http://[zz]:80"}, "base_url"),
        ({"state_dir": "~nosuchuser-xyz/state"}, "state_dir"),
        ({"shared_rate_limit_file": "/nonexistent-dir-xyz/rl.sqlite"}, "shared_rate_limit_file"),
        ({"shared_rate_limit_file": "/"}, "shared_rate_limit_file"),
    ],
)
def test_settings_that_would_break_later_are_refused(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigurationError, match=key):
        parse_settings(section(**changes))


def test_the_rate_limit_file_must_be_a_database_and_not_a_link(tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(ConfigurationError, match="not a SQLite database"):
        parse_settings(section(shared_rate_limit_file=str(other)))
    link = tmp_path / "link.sqlite"
    link.symlink_to(tmp_path / "target.sqlite")
    with pytest.raises(ConfigurationError, match="symbolic link"):
        parse_settings(section(shared_rate_limit_file=str(link)))
    ok = parse_settings(section(shared_rate_limit_file=str(tmp_path / "rl.sqlite")))
    assert ok.shared_rate_limit_file == str(tmp_path / "rl.sqlite")


def test_ipv6_loopback_base_url_is_accepted() -> None:
    assert parse_settings(section(base_url="http://[::1]:8080")).base_url == "http://[::1]:8080"


# -- files -----------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_rate_limit_file_is_private_and_tightened(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.sqlite"
    SharedRateLimiter(str(fresh), "http://x", 10.0).close()
    assert mode(fresh) == 0o600
    loose = tmp_path / "loose.sqlite"
    loose.touch()
    loose.chmod(0o644)
    SharedRateLimiter(str(loose), "http://x", 10.0).close()
    assert mode(loose) == 0o600
    for side in tmp_path.glob("*-wal"):
        assert mode(side) & 0o077 == 0


def test_the_snapshot_is_private_and_never_followed_through_a_link(tmp_path: Path) -> None:
    path = tmp_path / "new" / "snapshot.sqlite"
    with SnapshotStore(path):
        pass
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    path.chmod(0o644)
    with SnapshotStore(path):
        pass
    assert mode(path) == 0o600
    link = tmp_path / "link.sqlite"
    link.symlink_to(path)
    with pytest.raises(UnusableSnapshotError, match=r"symbolic link|Too many levels"):
        SnapshotStore(link)


def test_a_tenant_with_an_unusable_rate_limit_file_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    target = tmp_path / "db.sqlite"
    sandbox = CoupaSandbox(
        generate_tenant(users=3, seed=1), operations=Operations(rate_limit=False)
    )
    plugin = plugin_for(sandbox)
    t = tenant(shared_rate_limit_file=str(target))
    target.mkdir()  # became a directory after the settings were written
    with pytest.raises(ConfigurationError):
        plugin.configure(tenant=t)
    assert os.path.isdir(target)
    plugin.close()


# -- sandbox ---------------------------------------------------------------------------------


def test_the_sandbox_warns_when_it_is_not_on_loopback(caplog: pytest.LogCaptureFixture) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")  # noqa: S104
    sandbox = CoupaSandbox(generate_tenant(users=1, seed=1))
    with (
        caplog.at_level(logging.WARNING, logger="coupa_plugin.sandbox"),
        SandboxServer(sandbox, host="0.0.0.0"),  # noqa: S104 - the case under test
    ):
        pass
    assert any("not on loopback" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="coupa_plugin.sandbox"), SandboxServer(sandbox):
        pass
    assert not caplog.records
