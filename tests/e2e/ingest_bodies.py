"""Posting ingestion bodies (CONTRACT §10) and reading their answers: shared by the beacon and
usage-event ingestion tests."""

from __future__ import annotations

import json

import httpx

JSON = "application/json"


def post(api, path: str, body: bytes | str, key: str | None,
         content_type: str | None = None) -> httpx.Response:
    headers = api.auth(key)
    if content_type:
        headers["Content-Type"] = content_type
    data = body.encode() if isinstance(body, str) else body
    return api.http.post(path, content=data, headers=headers)


def as_array(items: list) -> str:
    return json.dumps(items)


def as_ndjson(items: list) -> str:
    return "\n".join(json.dumps(i) for i in items) + "\n"


def answer(response: httpx.Response) -> dict:
    """The 200 ingestion answer, its keys in the documented order."""
    assert response.status_code == 200, (response.status_code, response.text)
    assert response.headers["content-type"] == JSON
    body = response.json()
    assert list(body) == ["accepted", "duplicates", "rejected"], body
    return body
