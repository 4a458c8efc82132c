"""Small helpers for talking to the sandbox directly (without the plugin's client)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from coupa_plugin.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, CoupaSandbox
from coupa_plugin.sandbox._server import SandboxTransport


class Raw:
    """An httpx client bound to a sandbox with a bearer token for ``scope``."""

    def __init__(self, sandbox: CoupaSandbox, scope: str | None = None) -> None:
        self.sandbox = sandbox
        self.http = httpx.Client(transport=SandboxTransport(sandbox), base_url="http://sandbox")
        form = {
            "grant_type": "client_credentials",
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
        }
        if scope is not None:
            form["scope"] = scope
        response = self.http.post("/oauth2/token", data=form)
        assert response.status_code == 200, response.text
        self.token = response.json()["access_token"]

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json", **extra}

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params, headers=self.headers())

    def json(self, path: str, **params: Any) -> Any:
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        return response.json()

    def put(self, path: str, body: Any) -> httpx.Response:
        return self.http.put(
            path,
            content=json.dumps(body),
            headers=self.headers(**{"Content-Type": "application/json"}),
        )

    def post(self, path: str, body: Any) -> httpx.Response:
        return self.http.post(
            path,
            content=json.dumps(body),
            headers=self.headers(**{"Content-Type": "application/json"}),
        )

    def graphql(self, query: str) -> Any:
        response = self.http.post("/api/graphql", json={"query": query}, headers=self.headers())
        assert response.status_code == 200
        return response.json()
