"""What the export and the erasure share: the subject of a request, resolved against the
accounts, and the erasure as the API shows it."""

from __future__ import annotations

from typing import Any

from aiservice.errors import NotFound
from aiservice.services.privacy_subject import PrivacyRequest, Subject, check_metadata_key
from aiservice.store.accounts import AccountStore
from aiservice.store.tables import PrivacyErasure, User


async def resolve_subject(
    request: PrivacyRequest, accounts: AccountStore, subject_keys: list[str]
) -> Subject:
    """The subject named by `request`, with its account (or `within`) as a user id. An
    unknown account is a 404: there is nothing to export or erase, and saying so is the
    operator's answer to the data subject."""
    spec = request.subject
    if spec.account is not None:
        return Subject("account", owner=(await _account(accounts, spec.account)).id)
    owner = (await _account(accounts, request.within)).id if request.within else None
    if spec.user is not None:
        return Subject("user", owner=owner, user=spec.user)
    assert spec.metadata is not None
    [(key, value)] = spec.metadata.items()
    check_metadata_key(key, subject_keys)
    return Subject("metadata", owner=owner, key=key, value=value)


async def _account(accounts: AccountStore, name: str) -> User:
    user = await (
        accounts.user_by_id(name)
        if name.startswith("user_")
        else accounts.user_by_email(name.strip().lower())
    )
    if user is None:
        raise NotFound(f"No account {name}.")
    return user


def erasure_object(row: PrivacyErasure) -> dict[str, Any]:
    """`privacy.erasure`: what was deleted by kind, and the usage rows kept under a
    pseudonym (their counts and costs stay in the ledger)."""
    deleted = dict(row.deleted or {})
    pseudonymized = deleted.pop("usage.record", 0)
    view: dict[str, Any] = {
        "object": "privacy.erasure",
        "id": row.id,
        "status": row.status,
        "created_at": row.created_at,
        "deleted": deleted,
        "pseudonymized": {"usage.record": pseudonymized},
    }
    if row.completed_at is not None:
        view["completed_at"] = row.completed_at
    return view
