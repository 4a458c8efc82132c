from __future__ import annotations

import attrs
import pytest

from coupa_plugin.host import errors, model


def test_tenant_repr_names_plugins_but_never_values() -> None:
    tenant = model.Tenant(id="acme", plugins={"coupa": {"client_secret": "s3cr3t-value"}})
    for text in (repr(tenant), str(tenant), f"{tenant}"):
        assert "s3cr3t-value" not in text
        assert "coupa" in text and "acme" in text


@pytest.mark.parametrize(
    "cls",
    [
        model.Tenant,
        model.SyncRequest,
        model.Resource,
        model.Entitlement,
        model.Grant,
        model.ProvisionRequest,
        model.ProvisionResult,
        model.ConnectorStatus,
    ],
)
def test_model_classes_are_frozen_and_keyword_constructible(cls: type) -> None:
    assert attrs.has(cls)
    params = attrs.fields(cls)
    assert all(f.kw_only for f in params)
    instance = cls(**{f.name: _sample(f) for f in params if f.default is attrs.NOTHING})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(instance, params[0].name, None)


def _sample(field: attrs.Attribute) -> object:  # type: ignore[type-arg]
    if field.name in {"capabilities", "granted_scopes", "resource_types"}:
        return frozenset()
    return "x"


def test_defaults_match_the_contract() -> None:
    assert model.SyncRequest() == model.SyncRequest(
        resource_types=None, since=None, principal_ids=None
    )
    r = model.Resource(type="user", id="1", display_name="u")
    assert (r.description, r.status, dict(r.profile), r.entitlements) == (None, None, {}, ())
    e = model.Entitlement(
        id="role:2:member",
        resource_type="role",
        resource_id="2",
        slug="member",
        display_name="Admin",
    )
    assert e.grantable_to == frozenset({"user"}) and e.description is None
    p = model.ProvisionRequest(action="grant")
    assert (p.entitlement_id, p.principal_id, dict(p.attributes), p.dry_run) == (
        None,
        None,
        {},
        False,
    )
    res = model.ProvisionResult(status="applied")
    assert (res.grants, res.changes, res.message, res.principal_id) == ((), (), "", None)


def test_provision_request_problems() -> None:
    assert (
        model.ProvisionRequest(
            action="grant", entitlement_id="role:2:member", principal_id="1"
        ).problems()
        == []
    )
    assert model.ProvisionRequest(action="grant").problems() == [
        "action 'grant' needs entitlement_id",
        "action 'grant' needs principal_id",
    ]
    assert model.ProvisionRequest(action="create_account").problems() == []
    assert "unknown action" in model.ProvisionRequest(action="delete").problems()[0]


def test_error_hierarchy() -> None:
    for cls in (
        errors.ConfigurationError,
        errors.AuthenticationError,
        errors.ReadOnlyError,
        errors.NotFoundError,
        errors.ProvisioningError,
        errors.SyncError,
    ):
        assert issubclass(cls, errors.PluginError)
