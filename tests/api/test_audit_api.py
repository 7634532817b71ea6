"""The audit log through a running server: every admin route that changes something leaves
exactly one row naming the admin (their user id, or "admin" for the master key), the action,
its target and the x-request-id the client got back; reads and refused changes leave none;
GET /v1/admin/audit is for admins only, filters, and pages with `after`."""

from __future__ import annotations

import time
from typing import Any

import httpx

from support import (
    MASTER_KEY,
    RunningServer,
    admin_add_user,
    admin_create_key,
    assert_error_envelope,
    basic_auth,
    bearer,
    new_email,
)

PASSWORD = "correct horse battery"
MASTER = bearer(MASTER_KEY)
ROW_FIELDS = {"id", "object", "created_at", "actor", "action", "target", "request_id"}
ROW_FIELDS |= {"details"}


def call(
    server: RunningServer, method: str, path: str, body: Any = None, headers: Any = MASTER
) -> httpx.Response:
    return httpx.request(method, server.base_url + path, json=body, headers=headers, timeout=30)


def audit(server: RunningServer, headers: Any = MASTER, **params: Any) -> httpx.Response:
    return httpx.get(
        server.base_url + "/v1/admin/audit", params=params, headers=headers, timeout=30
    )


def recent_rows(server: RunningServer) -> list[dict]:
    response = audit(server, limit=100)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def assert_audited(
    server: RunningServer, response: httpx.Response, action: str, target: str, actor: str
) -> dict:
    """The response's request left exactly one row, and it says who did what to what."""
    assert response.status_code in (200, 201), response.text
    request_id = response.headers["x-request-id"]
    rows = [row for row in recent_rows(server) if row["request_id"] == request_id]
    assert len(rows) == 1, rows
    [row] = rows
    assert set(row) == ROW_FIELDS, row
    assert (row["action"], row["target"], row["actor"]) == (action, target, actor), row
    assert row["object"] == "audit.entry" and row["id"].startswith("audit_")
    assert abs(row["created_at"] - time.time()) < 120
    return row


def test_every_admin_change_is_audited_once(server: RunningServer) -> None:
    email = new_email("audited")
    added = call(server, "POST", "/v1/admin/users", {"email": email, "password": PASSWORD})
    user_id = added.json()["id"]
    row = assert_audited(server, added, "user.create", user_id, "admin")
    # Ids only: no e-mail address is kept.
    assert row["details"] == {"is_admin": False, "zero_retention": False}
    created = call(server, "POST", "/v1/admin/keys", {"email": email, "name": "ci"})
    key = created.json()
    row = assert_audited(server, created, "key.create", key["id"], "admin")
    assert key["key"] not in str(row) and PASSWORD not in str(row)
    changes = [
        ("PUT", f"/v1/admin/keys/{key['id']}/rate_limits", {"rpm": 3}, "key.rate_limits", key),
        ("PUT", f"/v1/admin/users/{email}/rate_limits", {"tpd": 9}, "user.rate_limits", None),
        ("PUT", f"/v1/admin/keys/{key['id']}/safety", {"pii": "flag"}, "key.safety", key),
        ("PUT", f"/v1/admin/users/{email}/safety", {"pii": "off"}, "user.safety", None),
        ("DELETE", f"/v1/admin/keys/{key['id']}", None, "key.revoke", key),
        ("POST", f"/v1/admin/users/{email}/disable", None, "user.disable", None),
    ]
    for method, path, body, action, on_key in changes:
        target = on_key["id"] if on_key else user_id
        assert_audited(server, call(server, method, path, body), action, target, "admin")


def test_budget_and_privacy_actions_are_audited(server: RunningServer) -> None:
    email = new_email("budgeted")
    user_id = admin_add_user(server, email, PASSWORD)["id"]
    budget = {"user": email, "amount_usd": 5, "period": "day"}
    set_budget = call(server, "POST", "/v1/admin/budgets", budget)
    budget_id = set_budget.json()["id"]
    row = assert_audited(server, set_budget, "budget.set", budget_id, "admin")
    assert row["details"]["subject_id"] == user_id and row["details"]["amount_usd"] == 5
    deleted = call(server, "DELETE", f"/v1/admin/budgets/{budget_id}")
    assert_audited(server, deleted, "budget.delete", budget_id, "admin")
    subject = {"subject": {"user": f"end-user-{user_id}"}}
    exported = call(server, "POST", "/v1/admin/privacy/export", subject)
    disposition = exported.headers["content-disposition"]  # attachment; filename="ID.ndjson"
    export_id = disposition.split('filename="')[1].removesuffix('.ndjson"')
    assert_audited(server, exported, "privacy.export", export_id, "admin")
    erased = call(server, "POST", "/v1/admin/privacy/erase", subject)
    assert_audited(server, erased, "privacy.erase", erased.json()["id"], "admin")


def test_an_admin_user_is_the_actor_by_user_id(server: RunningServer) -> None:
    admin_email = new_email("admin")
    admin_id = admin_add_user(server, admin_email, PASSWORD, is_admin=True)["id"]
    for credentials in (
        basic_auth(admin_email, PASSWORD),
        bearer(admin_create_key(server, admin_email)),
    ):
        body = {"email": new_email("theirs"), "password": PASSWORD}
        added = call(server, "POST", "/v1/admin/users", body, credentials)
        assert_audited(server, added, "user.create", added.json()["id"], admin_id)


def test_reads_and_refused_changes_leave_no_row(server: RunningServer) -> None:
    responses = [
        call(server, "GET", "/v1/admin/users"),
        call(server, "GET", "/v1/admin/keys"),
        call(server, "GET", "/v1/admin/budgets"),
        call(server, "GET", "/v1/admin/ratelimits"),
        audit(server),
        call(server, "DELETE", "/v1/admin/keys/key_unknown"),
        call(server, "POST", "/v1/admin/users/nobody-x@example.com/disable"),
        call(server, "POST", "/v1/admin/users", {"email": "not-an-address", "password": PASSWORD}),
        call(server, "DELETE", "/v1/admin/budgets/budget_unknown"),
    ]
    assert [r.status_code for r in responses] == [200] * 5 + [404, 404, 400, 404]
    request_ids = {response.headers["x-request-id"] for response in responses}
    assert not [row for row in recent_rows(server) if row["request_id"] in request_ids]


def test_only_admins_see_the_audit_log(server: RunningServer) -> None:
    email = new_email()
    admin_add_user(server, email, PASSWORD)
    key = admin_create_key(server, email)
    for credentials in (bearer(key), basic_auth(email, PASSWORD)):
        error = assert_error_envelope(audit(server, credentials), 404)
        assert error["message"] == "Unknown request URL: GET /v1/admin/audit"
    assert_error_envelope(audit(server, {}), 401, code="missing_api_key")


def test_the_list_filters_and_pages_with_after(server: RunningServer) -> None:
    email = new_email("paged")
    admin_add_user(server, email, PASSWORD)
    started = int(time.time())
    ours = [call(server, "POST", "/v1/admin/keys", {"email": email}).json()["id"] for _ in range(5)]
    # Newest first, two at a time, until all five of ours have been seen (other tests of this
    # session may have added rows too, older or newer).
    seen: list[str] = []
    after = None
    while not set(ours) <= set(seen):
        params = {"action": "key.create", "actor": "admin", "limit": 2, "since": started}
        page = audit(server, **params, **({"after": after} if after else {})).json()
        assert page["object"] == "list" and 1 <= len(page["data"]) <= 2
        assert page["first_id"] == page["data"][0]["id"]
        assert page["last_id"] == page["data"][-1]["id"]
        assert {row["action"] for row in page["data"]} == {"key.create"}
        seen += [row["target"] for row in page["data"]]
        assert page["has_more"] or set(ours) <= set(seen)
        after = page["last_id"]
    assert len(seen) == len(set(seen))  # no row twice
    mine = [target for target in seen if target in ours]
    assert mine == list(reversed(ours))
    one = audit(server, target=ours[2]).json()
    assert [row["target"] for row in one["data"]] == [ours[2]] and one["has_more"] is False
    future = audit(server, since=int(time.time()) + 3600).json()
    assert future["data"] == [] and future["last_id"] == "" and future["has_more"] is False
    past = audit(server, until=started - 3600, action="key.create", target=ours[0]).json()
    assert past["data"] == []


def test_bad_list_parameters_are_refused(server: RunningServer) -> None:
    assert_error_envelope(audit(server, limit=0), 400, param="limit")
    assert_error_envelope(audit(server, limit=101), 400, param="limit")
    assert_error_envelope(audit(server, since="yesterday"), 400, param="since")
    assert_error_envelope(audit(server, after="audit_unknown"), 400, param="after")
    assert audit(server, limit=100).status_code == 200


def test_key_hygiene_actions_are_audited(server: RunningServer) -> None:
    email = new_email("hygiene")
    user_id = admin_add_user(server, email, PASSWORD)["id"]
    created = call(server, "POST", "/v1/admin/keys", {"email": email, "expires_in": "90d"})
    key = created.json()
    row = assert_audited(server, created, "key.create", key["id"], "admin")
    assert row["details"]["expires_at"] == key["expires_at"]
    switched = call(server, "PUT", f"/v1/admin/keys/{key['id']}/zero_retention", {"enabled": True})
    row = assert_audited(server, switched, "key.zero_retention", key["id"], "admin")
    assert row["details"] == {"zero_retention": True}
    path = f"/v1/admin/users/{email}/zero_retention"
    switched = call(server, "PUT", path, {"enabled": True})
    assert_audited(server, switched, "user.zero_retention", user_id, "admin")
    rotated = call(server, "POST", f"/v1/admin/keys/{key['id']}/rotate", {"grace": "1h"})
    row = assert_audited(server, rotated, "key.rotate", key["id"], "admin")
    successor = rotated.json()
    assert row["details"]["successor_id"] == successor["id"]
    assert successor["key"] not in str(row)
