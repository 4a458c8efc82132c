"""The client's typed edges: a user read for provisioning, writes from typed values, look-ups.
Callers never build a URL, a query or a body; these tests hold the client to what Coupa
receives and what the caller gets back."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from coupa_plugin.coupa import CoupaClient, CoupaResponseError
from coupa_plugin.coupa._errors import RecordError
from coupa_plugin.coupa._models import Unreadable, structure_profile
from coupa_plugin.sandbox import CoupaSandbox
from tests.coupa.test_client import make_client, quiet_sandbox


def connected(sandbox: CoupaSandbox, transport: httpx.BaseTransport | None = None) -> CoupaClient:
    client = make_client(sandbox, transport, mode="provisioning")
    client.connect()
    return client


def someone(sandbox: CoupaSandbox) -> int:
    return min(uid for uid, record in sandbox.state.users.items() if record.get("active"))


def recording(sandbox: CoupaSandbox) -> tuple[httpx.BaseTransport, list[httpx.Request]]:
    """The sandbox's own transport, keeping every request the client sends."""
    from coupa_plugin.sandbox._server import SandboxTransport

    inner = SandboxTransport(sandbox)
    seen: list[httpx.Request] = []

    class Recording(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            request.read()
            seen.append(request)
            return inner.handle_request(request)

    return Recording(), seen


def body_of(request: httpx.Request) -> dict[str, Any]:
    loaded = json.loads(request.content)
    assert isinstance(loaded, dict)
    return loaded


def test_a_list_is_written_whole_in_id_order_and_null_clears_it() -> None:
    sandbox = quiet_sandbox()
    transport, seen = recording(sandbox)
    client = connected(sandbox, transport)
    uid = someone(sandbox)
    groups = sorted(sandbox.state.account_groups)[:2]
    client.put_user_list(uid, "account_groups", frozenset(groups[::-1]))
    assert body_of(seen[-1]) == {"account-groups": [{"id": g} for g in groups]}
    assert [ref.id for ref in client.user_record(uid).user.account_groups] == groups
    client.put_user_list(uid, "account_groups", None)
    assert body_of(seen[-1]) == {"account-groups": None}
    assert client.user_record(uid).user.account_groups == ()


def test_a_profile_update_is_sent_in_coupas_terms_and_read_back_typed() -> None:
    sandbox = quiet_sandbox()
    transport, seen = recording(sandbox)
    client = connected(sandbox, transport)
    uid = someone(sandbox)
    boss = max(sandbox.state.users)
    boss_login = sandbox.state.users[boss]["login"]
    echo = client.update_profile(
        uid,
        {"employee_number": "E-77", "manager": boss_login, "account_security_type": 1},
    )
    sent = seen[-1]
    assert (sent.method, sent.url.path) == ("PUT", f"/api/users/{uid}")
    assert body_of(sent) == {
        "employee-number": "E-77",
        "manager": {"login": boss_login},
        "account-security-type": 1,
    }
    assert echo.writer_id is not None and echo.writer_id > 0  # the API user the token writes as
    profile = client.user_record(uid).profile
    assert profile.get("employee_number") == "E-77"
    assert profile.get("manager") == boss_login
    assert profile.get("account_security_type") == 1
    assert profile.differs({"employee_number": "E-77", "account_security_type": 1}) == {}
    assert profile.differs({"employee_number": "E-78"}) == {"employee_number": "E-78"}
    client.update_profile(uid, {"manager": None})
    assert body_of(seen[-1]) == {"manager": None}


def test_a_created_user_carries_its_roles_and_licenses() -> None:
    sandbox = quiet_sandbox()
    client = connected(sandbox)
    role = min(sandbox.state.roles)
    new_id = client.create_user(
        {"login": "ada", "email": "ada@example.com", "firstname": "Ada", "lastname": "L"},
        roles={role},
        licenses={"expense-user"},
    )
    record = client.user_record(new_id)
    assert record.user.login == "ada"
    assert [ref.id for ref in record.user.roles] == [role]
    assert record.user.licenses["expense-user"] is True


def test_a_create_whose_answer_names_no_user_is_an_error_not_a_guess() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 86399})
        return httpx.Response(201, json={"login": "ada"})

    client = make_client(quiet_sandbox(), httpx.MockTransport(handler))
    with pytest.raises(CoupaResponseError, match="carried no user id"):
        client.create_user({"login": "ada"})


def test_a_license_write_of_something_that_is_no_license_is_never_sent() -> None:
    sandbox = quiet_sandbox()
    transport, seen = recording(sandbox)
    client = connected(sandbox, transport)
    before = len(seen)
    for bad in ("api-user", "active", "login"):
        with pytest.raises(ValueError, match="not a license flag"):
            client.set_license(someone(sandbox), bad, held=True)
    assert len(seen) == before


def test_looking_up_a_record_by_id() -> None:
    sandbox = quiet_sandbox()
    client = connected(sandbox)
    assert client.exists("user_groups", min(sandbox.state.user_groups)) is True
    assert client.exists("account_groups", 999_999_999) is False


@pytest.mark.parametrize(
    ("field", "value", "read"),
    [
        ("account-security-type", 1, 1),
        ("account-security-type", "1", 1),  # a Coupa answering with text: the same number
        ("account-security-type", "", None),
        ("account-security-type", [1], Unreadable("list")),
        ("middlename", "x" * 5_000, "x" * 5_000),
        ("middlename", 5, Unreadable("int")),
        ("manager", {"id": 3, "login": "boss"}, "boss"),
        ("manager", {"id": 3}, None),
        ("manager", "boss", None),
    ],
)
def test_a_profile_reads_whatever_form_coupa_holds_it_in(
    field: str, value: object, read: object
) -> None:
    """A profile is compared with what a caller asks for, so reading one never fails: a value
    in a form no caller can ask for is Unreadable, equal to nothing asked, its repr naming the
    JSON type and never the value."""
    profile = structure_profile({"login": "ada", field: value})
    name = field.replace("-", "_")
    assert profile.get(name) == read  # type: ignore[arg-type]
    if isinstance(read, Unreadable):
        assert repr(value) not in repr(profile.get(name))  # type: ignore[arg-type]
        assert profile.differs({name: None}) == {name: None}  # type: ignore[dict-item]


def test_a_malformed_user_record_is_a_record_error_naming_the_field() -> None:
    sandbox = quiet_sandbox()
    client = connected(sandbox)
    uid = someone(sandbox)
    sandbox.state.users[uid]["login"] = ["not", "text"]
    with pytest.raises(RecordError, match=f"user record {uid} is malformed: login") as info:
        client.user_record(uid)
    assert "not" not in str(info.value)
