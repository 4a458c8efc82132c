"""The entitlement kinds' registry is what the settings, the sync's catalogs, configure's probes
and the entitlement ids read."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import given
from hypothesis import strategies as st

from coupa_plugin.connector._kinds import KINDS
from coupa_plugin.connector._mapping import entitlement_id, parse_entitlement_id, user_entitlements
from coupa_plugin.connector._settings import RESOURCE_TYPES
from coupa_plugin.connector._sync import catalog_listings
from coupa_plugin.coupa import ClientConfig, CoupaClient, Secret
from coupa_plugin.coupa._scopes import (
    OPTIONAL_SCOPES,
    PROVISIONING_SCOPES,
    READ_ONLY_SCOPES,
)
from coupa_plugin.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    CoupaSandbox,
    Operations,
    SandboxTransport,
    generate_tenant,
)
from tests.kit import VirtualTime, plugin_for, tenant

BY_NAME = {kind.name: kind for kind in KINDS}


def sandbox(users: int = 30) -> CoupaSandbox:
    return CoupaSandbox(
        generate_tenant(users=users, seed=3), operations=Operations(rate_limit=False)
    )


def test_the_resource_types_are_the_user_and_every_kind() -> None:
    assert RESOURCE_TYPES[0] == "user"
    assert sorted(RESOURCE_TYPES[1:]) == sorted(kind.name for kind in KINDS)
    assert len(set(RESOURCE_TYPES)) == len(RESOURCE_TYPES)


@contextmanager
def client_of(coupa: CoupaSandbox) -> Iterator[CoupaClient]:
    virtual = VirtualTime()
    config = ClientConfig(
        base_url="http://sandbox",
        client_id=SANDBOX_CLIENT_ID,
        client_secret=Secret(SANDBOX_CLIENT_SECRET),
        requests_per_second=10_000.0,
    )
    with CoupaClient(
        config, SandboxTransport(coupa), clock=virtual.clock, sleep=virtual.sleep
    ) as client:
        yield client


def test_each_catalog_lists_what_the_sandbox_holds() -> None:
    coupa = sandbox()
    held = {
        "role": coupa.state.roles,
        "group": coupa.state.user_groups,
        "content_group": coupa.state.business_groups,
        "account_group": coupa.state.account_groups,
    }
    with client_of(coupa) as client:
        listings = catalog_listings(client)
        assert set(listings) == set(held)
        for kind, listing in listings.items():
            assert {item.id for item in listing()} == set(held[kind]), kind


def test_the_probed_catalogs_need_scopes_the_client_asks_for() -> None:
    probed = {kind.name: kind.catalog_scope for kind in KINDS if kind.catalog_scope}
    assert set(probed) == {"content_group", "account_group"}
    asked = READ_ONLY_SCOPES | PROVISIONING_SCOPES | OPTIONAL_SCOPES
    assert set(probed.values()) <= asked
    assert all(BY_NAME[name].catalog is not None for name in probed)


def test_a_refused_catalog_is_switched_off_with_its_kinds_words() -> None:
    coupa = sandbox()
    coupa.state.add_client(
        SANDBOX_CLIENT_ID,
        SANDBOX_CLIENT_SECRET,
        READ_ONLY_SCOPES - {"core.business_entity.read"},
    )
    status = plugin_for(coupa).configure(tenant=tenant())
    assert status is not None
    assert "content_group" not in status.resource_types
    assert (
        "content groups are off: Coupa answered GET /api/business_groups with HTTP 403; "
        "grant core.business_entity.read to the OAuth client to sync them"
    ) in status.warnings


idents = st.integers(1, 10**17).map(str)
flags = st.from_regex(r"[a-z]{2,8}(-[a-z]{2,8})?-user", fullmatch=True).filter(
    lambda flag: flag not in {"api-user", "supplier-user", "support-user", "msp-user"}
)


@given(data=st.data(), name=st.sampled_from(sorted(BY_NAME)))
def test_an_entitlement_id_written_is_read_back(data: st.DataObject, name: str) -> None:
    ident = data.draw(flags if name == "license" else idents)
    written = entitlement_id(name, ident)
    assert written == f"{name}:{ident}:{BY_NAME[name].slug}"
    assert parse_entitlement_id(written) == (name, ident, BY_NAME[name].slug)


def test_a_users_entitlements_are_written_the_one_way() -> None:
    coupa = sandbox(12)
    seen = 0
    with client_of(coupa) as client:
        for user in client.users():
            for written in user_entitlements(user, frozenset(RESOURCE_TYPES)):
                parsed = parse_entitlement_id(written)
                assert parsed is not None and entitlement_id(parsed[0], parsed[1]) == written
                seen += 1
    assert seen > 12
