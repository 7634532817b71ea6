"""Server bugs the OpenAPI fuzzer (tests/api/test_openapi_fuzz.py, benchmarks/fuzz.py) found,
each answered 500 before its fix; now the 400 the document declares."""

from __future__ import annotations

import json

import httpx

from support import sse_events


def test_an_audit_bound_beyond_the_databases_integers_is_a_400(http: httpx.Client) -> None:
    for name in ("since", "until"):
        response = http.get("/v1/admin/audit", params={name: str(2**70)})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == name
    assert http.get("/v1/admin/audit", params={"since": str(2**63 - 1)}).status_code == 200


def test_a_replay_starting_beyond_the_databases_integers_is_a_400(http: httpx.Client) -> None:
    created = http.post(
        "/v1/responses",
        json={
            "model": "smollm2-135m-instruct",
            "input": "Say hi.",
            "background": True,
            "stream": True,
            "max_output_tokens": 16,
        },
    )
    assert created.status_code == 200, created.text
    response_id = json.loads(sse_events(created)[0])["response"]["id"]
    replay = http.get(
        f"/v1/responses/{response_id}", params={"stream": "true", "starting_after": str(2**70)}
    )
    assert replay.status_code == 400, replay.text
    assert replay.json()["error"]["param"] == "starting_after"
    past_the_end = http.get(
        f"/v1/responses/{response_id}", params={"stream": "true", "starting_after": str(2**62)}
    )
    assert past_the_end.status_code == 200  # nothing after it: the stream just ends


def test_a_text_with_nothing_to_read_is_a_400_not_a_500(http: httpx.Client) -> None:
    for text in (" ", "\u0018", "\n\t"):
        response = http.post("/api/ai/documents/analyses", json={"text": text})
        assert response.status_code == 400, response.text
        body = response.json()
        assert body == {"success": False, "error": "text: the document is empty (no text in it)"}
