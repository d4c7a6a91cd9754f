"""A small HTTP client for the gateway, as the tests' only way in (besides gRPC)."""

from __future__ import annotations

import json

import httpx


class Api:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    @staticmethod
    def auth(key: str | None, bearer: bool = True) -> dict[str, str]:
        if key is None:
            return {}
        return {"Authorization": f"Bearer {key}" if bearer else key}

    def get(
        self, path: str, key: str | None = None, bearer: bool = True, **params
    ) -> httpx.Response:
        return self.http.get(path, params=params or None, headers=self.auth(key, bearer))

    def get_json(self, path: str, key: str, **params) -> object:
        response = self.get(path, key, **params)
        assert response.status_code == 200, (path, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/json")
        return response.json()

    def ingest(self, key: str, beacons: list[dict], ndjson: bool = False) -> httpx.Response:
        body = "\n".join(json.dumps(b) for b in beacons) if ndjson else json.dumps(beacons)
        return self.http.post(
            "/analytics/v1/ingest/beacons", content=body, headers=self.auth(key)
        )

    def sql(self, key: str, query: str, **body) -> httpx.Response:
        """A Druid SQL query (`POST /analytics/v1/query/sql`), other body fields as given."""
        return self.http.post("/analytics/v1/query/sql", json={"query": query, **body},
                              headers=self.auth(key))
