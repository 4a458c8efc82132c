"""OpenTelemetry: metrics per the HTTP client conventions and the connector's own, spans per
hook call and request, no personal data in attributes, nothing without the API."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from coupa_plugin.coupa._telemetry import route_template
from coupa_plugin.host.errors import ProvisioningError
from coupa_plugin.host.model import ProvisionRequest, SyncRequest
from coupa_plugin.plugin import CoupaPlugin
from coupa_plugin.sandbox import CoupaSandbox, Operations, generate_tenant
from coupa_plugin.sandbox._server import SandboxTransport
from tests.kit import VirtualTime, scratch_dir, tenant

# every attribute a measurement may carry: none can hold a login, an e-mail or a user id
ALLOWED = {
    "coupa.tenant",
    "coupa.hook",
    "coupa.resource.type",
    "coupa.sync.outcome",
    "coupa.provision.action",
    "coupa.provision.status",
    "http.request.method",
    "http.response.status_code",
    "http.request.resend_count",
    "url.template",
    "server.address",
    "error.type",
}


class Recorded:
    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.spans = InMemorySpanExporter()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(SimpleSpanProcessor(self.spans))

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def finished(self) -> tuple[ReadableSpan, ...]:
        return self.spans.get_finished_spans()


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    rec = Recorded()
    yield rec
    rec.meters.shutdown()
    rec.tracers.shutdown()


def plugin_with(
    sandbox: CoupaSandbox, rec: Recorded, virtual: VirtualTime | None = None
) -> CoupaPlugin:
    virtual = virtual or VirtualTime()
    return CoupaPlugin(
        transport_factory=lambda _s: SandboxTransport(sandbox),
        clock=virtual.clock,
        sleep=virtual.sleep,
        meter_provider=rec.meters,
        tracer_provider=rec.tracers,
    )


def children_of(spans: tuple[ReadableSpan, ...], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def test_route_templates_hide_ids() -> None:
    assert route_template("/api/users/123") == "/api/users/{id}"
    assert route_template("/api/users/5/business_groups/7/add") == (
        "/api/users/{id}/business_groups/{id}/add"
    )
    assert route_template("/api/users") == "/api/users"


def test_a_sync_and_provisioning_are_measured_without_personal_data(
    recorded: Recorded, tmp_path: Path
) -> None:
    state = generate_tenant(users=120, seed=6)
    virtual = VirtualTime(real=False)  # the sandbox's bucket drains as the plugin waits
    sandbox = CoupaSandbox(
        state,
        operations=Operations(rate_limit=True, rate_per_s=25, burst=3),
        clock=virtual.clock,
        sleep=virtual.sleep,
    )
    plugin = plugin_with(sandbox, recorded, virtual)
    t = tenant("otel", state_dir=str(tmp_path), requests_per_second=200)
    plugin.configure(tenant=t)
    resources = list(plugin.discover_resources(tenant=t, request=SyncRequest()) or [])
    grants = list(plugin.sync_grants(tenant=t, request=SyncRequest()) or [])
    result = plugin.provision(
        tenant=t,
        request=ProvisionRequest(action="grant", entitlement_id="group:2:member", principal_id="9"),
    )
    plugin.close()

    durations = recorded.points("http.client.request.duration")
    routes = {
        (p.attributes["http.request.method"], p.attributes["url.template"])
        for p in durations
    }
    assert ("GET", "/api/users") in routes
    assert ("GET", "/api/users/{id}") in routes, "a provisioning read, its id templated"
    assert all(p.attributes["coupa.tenant"] == "otel" for p in durations)
    statuses = {p.attributes.get("http.response.status_code") for p in durations}
    assert 200 in statuses and 429 in statuses, "the sandbox's bucket answered 429s"
    requests = sum(p.count for p in durations)
    assert requests == sandbox.api_requests, "every API request measured once"

    [throttled] = recorded.points("coupa.http.throttled")
    assert throttled.value == sandbox.throttled
    assert sum(p.value for p in recorded.points("coupa.oauth.tokens_minted")) >= 1
    assert sum(p.count for p in recorded.points("coupa.rate_limit.wait.duration")) >= requests

    items = {
        (p.attributes["coupa.hook"], p.attributes["coupa.resource.type"]): p.value
        for p in recorded.points("coupa.sync.items")
    }
    assert items[("discover_resources", "user")] == len(state.users)
    assert sum(v for (hook, _), v in items.items() if hook == "discover_resources") == len(
        resources
    )
    assert sum(v for (hook, _), v in items.items() if hook == "sync_grants") == len(grants)
    outcomes = {
        (p.attributes["coupa.hook"], p.attributes["coupa.sync.outcome"])
        for p in recorded.points("coupa.sync.duration")
    }
    assert outcomes == {("discover_resources", "complete"), ("sync_grants", "complete")}
    [calls] = recorded.points("coupa.provision.calls")
    assert calls.attributes["coupa.provision.action"] == "grant"
    assert result is not None
    assert calls.attributes["coupa.provision.status"] == result.status == "applied"

    spans = recorded.finished()
    hooks = {s.name: s for s in spans if s.name.startswith("coupa ")}
    assert set(hooks) == {
        "coupa configure",
        "coupa discover_resources",
        "coupa sync_grants",
        "coupa provision",
    }
    children = children_of(spans, hooks["coupa provision"])
    assert any(s.name == "POST /api/user_group_memberships" for s in children), "the write"
    probes = children_of(spans, hooks["coupa configure"])
    assert len(probes) >= 3, "configure's probes, on threads of their own, are its children"

    personal = {str(u["login"]) for u in state.users.values()} | {
        str(u["email"]) for u in state.users.values()
    }
    attributes = [dict(p.attributes) for name in (
        "http.client.request.duration",
        "coupa.sync.items",
        "coupa.sync.duration",
        "coupa.provision.calls",
    ) for p in recorded.points(name)] + [dict(s.attributes or {}) for s in spans]
    for attrs in attributes:
        assert set(attrs) <= ALLOWED, set(attrs) - ALLOWED
        assert not {str(v) for v in attrs.values()} & personal


def test_a_span_of_the_host_is_the_parent_of_the_hook_span(recorded: Recorded) -> None:
    sandbox = CoupaSandbox(
        generate_tenant(users=20, seed=6), operations=Operations(rate_limit=False)
    )
    plugin = plugin_with(sandbox, recorded)
    host = recorded.tracers.get_tracer("host")
    with host.start_as_current_span("host job") as job:
        plugin.configure(tenant=tenant("otel"))
    plugin.close()
    [hook] = [s for s in recorded.finished() if s.name == "coupa configure"]
    assert hook.parent is not None and hook.parent.span_id == job.get_span_context().span_id


def test_an_abandoned_stream_is_measured_as_such_and_stops(recorded: Recorded) -> None:
    sandbox = CoupaSandbox(
        generate_tenant(users=200, seed=6), operations=Operations(rate_limit=False)
    )
    plugin = plugin_with(sandbox, recorded)
    t = tenant("otel")
    stream = plugin.discover_resources(tenant=t, request=SyncRequest())
    assert stream is not None
    first = next(iter(stream))
    stream.close()  # type: ignore[attr-defined]  # the host walks away
    connector = plugin.connector(t)
    assert connector is not None and connector.sync.catalog_fetch is not None
    assert connector.sync.catalog_fetch.wait(10), "the background listings stopped"
    [duration] = recorded.points("coupa.sync.duration")
    assert duration.attributes["coupa.sync.outcome"] == "abandoned"
    [items] = recorded.points("coupa.sync.items")
    assert (items.attributes["coupa.resource.type"], items.value) == (first.type, 1)
    plugin.close()


SANDBOXED = (
    "from coupa_plugin.host.model import SyncRequest\n"
    "from coupa_plugin.plugin import CoupaPlugin\n"
    "from coupa_plugin.sandbox import CoupaSandbox, Operations, generate_tenant\n"
    "from coupa_plugin.sandbox._server import SandboxTransport\n"
    "from tests.kit import tenant\n"
    "sandbox = CoupaSandbox(generate_tenant(users=30, seed=1),"
    " operations=Operations(rate_limit=False))\n"
    "plugin = CoupaPlugin(transport_factory=lambda _s: SandboxTransport(sandbox))\n"
)
ROOT = Path(__file__).resolve().parents[2]


def python(code: str) -> str:
    """Run ``code`` in a fresh interpreter of this environment; its standard output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(  # noqa: S603 - this interpreter, code of this module's tests
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_plugin_imports_and_syncs_without_opentelemetry() -> None:
    out = python(
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if the extra were not installed\n"
        + SANDBOXED
        + "grants = list(plugin.sync_grants(tenant=tenant(), request=SyncRequest()))\n"
        "assert 'opentelemetry.trace' not in sys.modules\n"
        "print(len(grants))\n"
    )
    assert int(out.strip()) > 0


def test_the_documented_recipe_wires_the_sdk_for_a_plugin_loaded_before_it() -> None:
    readme = (ROOT / "docs" / "operations.md").read_text()
    recipe = readme.split("<!-- otel-recipe -->\n```python\n", 1)[1].split("```", 1)[0]
    out = python(
        SANDBOXED
        + recipe
        + "list(plugin.sync_grants(tenant=tenant('recipe'), request=SyncRequest()))\n"
        "metrics.get_meter_provider().shutdown()\n"
        "tracer_provider.shutdown()\n"
    )
    assert '"name": "http.client.request.duration"' in out
    assert '"coupa.tenant": "recipe"' in out
    assert '"name": "GET /api/users"' in out, "a request span"


def test_journal_entries_pending_are_a_gauge_per_tenant(recorded: Recorded) -> None:
    sandbox = CoupaSandbox(
        generate_tenant(users=12, seed=3), operations=Operations(rate_limit=False)
    )
    sandbox.quirks.list_put = "merge"
    sandbox.state.users[7]["roles"] = [3, 4, 5, 8]
    plugin = plugin_with(sandbox, recorded)
    t = tenant("acme", state_dir=str(scratch_dir()))
    sandbox.ops.fail_writes = dict.fromkeys(range(3, 40), "error")  # Coupa fails after the clear
    with pytest.raises(ProvisioningError):
        plugin.provision(
            tenant=t,
            request=ProvisionRequest(
                action="revoke", entitlement_id="role:4:member", principal_id="7"
            ),
        )
    [point] = recorded.points("coupa.journal.pending")
    assert (point.value, dict(point.attributes)) == (1, {"coupa.tenant": "acme"})
    sandbox.ops.fail_writes = {}
    plugin.configure(tenant=t)  # recovers every pending entry
    [point] = recorded.points("coupa.journal.pending")
    assert point.value == 0
    assert sorted(sandbox.state.users[7]["roles"]) == [3, 5, 8]
