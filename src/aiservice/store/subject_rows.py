"""Which stored rows belong to a data subject, kind by kind, and the three things done with
them: read a page (export), delete a batch, pseudonymise a batch of usage rows (erasure).

A subject matches a kind's rows by owner (an account), by the request's `user` or
`safety_identifier` (an end user; only requests carry them: chat completions, responses and
the usage ledger's `end_user`), or by a metadata value (every kind with metadata). A kind that
cannot hold the subject has no condition and is skipped. Pages and batches go by `seq`, the
primary key: no OFFSET, no COUNT, short transactions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Text,
    and_,
    case,
    cast,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from aiservice.store import usage_daily
from aiservice.store.response_items import forget_items
from aiservice.store.subjects import Subject
from aiservice.store.tables import (
    ApiKey,
    Base,
    BatchLine,
    Budget,
    BudgetAlert,
    CompletionMetadata,
    Conversation,
    ConversationItem,
    DashboardSession,
    DocumentAnalysis,
    FileChunk,
    StoredBatch,
    StoredCompletion,
    StoredFile,
    StoredResponse,
    UsageRecord,
    User,
)

Condition = ColumnElement[bool]


def _by_request_user(table: Any, subject: Subject) -> Condition:
    # `user` and `safety_identifier` are the request's own fields, kept in its stored body.
    return or_(
        table.request["user"].as_string() == subject.user,
        table.request["safety_identifier"].as_string() == subject.user,
    )


def _scoped(table: Any, subject: Subject, matched: Condition | None) -> Condition | None:
    """An account's rows; or the matched rows, within one account if `within` was given."""
    if subject.kind == "account":
        return table.owner == subject.owner
    if matched is None:
        return None
    return and_(table.owner == subject.owner, matched) if subject.owner else matched


def _completions(subject: Subject) -> Condition | None:
    table = StoredCompletion
    if subject.kind == "user":
        return _scoped(table, subject, _by_request_user(table, subject))
    return _scoped(table, subject, table.metadata_[subject.key or ""].as_string() == subject.value)


def _responses(subject: Subject) -> Condition | None:
    table = StoredResponse
    if subject.kind == "user":
        return _scoped(table, subject, _by_request_user(table, subject))
    metadata = table.request[("metadata", subject.key or "")].as_string() == subject.value
    return _scoped(table, subject, metadata)


def _with_metadata(table: Any) -> Callable[[Subject], Condition | None]:
    def condition(subject: Subject) -> Condition | None:
        if subject.kind == "user":
            return _scoped(table, subject, None)
        return _scoped(
            table, subject, table.metadata_[subject.key or ""].as_string() == subject.value
        )

    return condition


def _files(subject: Subject) -> Condition | None:
    # Uploaded files have no metadata: only an account owns them. A batch's files go with it.
    return StoredFile.owner == subject.owner if subject.kind == "account" else None


def _usage(subject: Subject) -> Condition | None:
    table = UsageRecord
    if subject.kind == "account":
        return table.owner == subject.owner
    matched = (
        table.end_user == subject.user
        if subject.kind == "user"
        else table.metadata_[subject.key or ""].as_string() == subject.value
    )
    return and_(table.owner == subject.owner, matched) if subject.owner else matched


@dataclass(frozen=True, slots=True)
class Kind:
    name: str  # the `object` of its export lines and its key in an erasure's counts
    table: type[Base]
    condition: Callable[[Subject], Condition | None]


# Erasure order: what refers to others first (a batch names its files).
CONTENT_KINDS = (
    Kind("response", StoredResponse, _responses),
    Kind("chat.completion", StoredCompletion, _completions),
    Kind("conversation", Conversation, _with_metadata(Conversation)),
    Kind("document.analysis", DocumentAnalysis, _with_metadata(DocumentAnalysis)),
    Kind("batch", StoredBatch, _with_metadata(StoredBatch)),
    Kind("file", StoredFile, _files),
)
USAGE = Kind("usage.record", UsageRecord, _usage)


async def page(
    session: AsyncSession, kind: Kind, subject: Subject, after_seq: int, limit: int
) -> Sequence[Any]:
    """The next `limit` rows of the subject's, after `after_seq`, in insertion order."""
    condition = kind.condition(subject)
    if condition is None:
        return []
    seq = kind.table.seq  # type: ignore[attr-defined]
    query = select(kind.table).where(condition, seq > after_seq).order_by(seq).limit(limit)
    return list(await session.scalars(query))


async def conversation_items(session: AsyncSession, conversation_seq: int) -> Sequence[Any]:
    query = select(ConversationItem).where(ConversationItem.conversation_seq == conversation_seq)
    return list(await session.scalars(query.order_by(ConversationItem.seq)))


async def file_chunks(session: AsyncSession, file_seq: int, after: int) -> FileChunk | None:
    query = select(FileChunk).where(FileChunk.file_seq == file_seq, FileChunk.position > after)
    return await session.scalar(query.order_by(FileChunk.position).limit(1))


@dataclass(slots=True)
class Cursor:
    """Where one step of an erasure has got to (the last `seq` it handled): each batch goes on
    from there instead of scanning again the rows before it that are not the subject's. Kept in
    memory only: a job taken up again starts its step over, which finds only what is left."""

    after: int = 0


async def delete_batch(
    session: AsyncSession, kind: Kind, subject: Subject, limit: int, cursor: Cursor
) -> dict[str, int]:
    """Delete up to `limit` of the subject's rows of `kind`, and what hangs on them; returns
    the counts by kind (empty: none left)."""
    condition = kind.condition(subject)
    if condition is None:
        return {}
    seq = kind.table.seq  # type: ignore[attr-defined]
    chosen = select(kind.table).where(condition, seq > cursor.after).order_by(seq).limit(limit)
    rows = list(await session.scalars(chosen))
    if not rows:
        return {}
    cursor.after = rows[-1].seq
    seqs = [row.seq for row in rows]
    counts = {kind.name: len(rows)}
    if kind.table is StoredResponse:
        await forget_items(session, [row.id for row in rows])
    elif kind.table is StoredCompletion:
        await session.execute(
            delete(CompletionMetadata).where(CompletionMetadata.completion_seq.in_(seqs))
        )
    elif kind.table is Conversation:
        items = delete(ConversationItem).where(ConversationItem.conversation_seq.in_(seqs))
        counts["conversation.item"] = (await session.execute(items)).rowcount
    elif kind.table is StoredBatch:
        await session.execute(delete(BatchLine).where(BatchLine.batch_seq.in_(seqs)))
        file_ids = [f for row in rows for f in (row.input_file_id, row.output_file_id,
                                                 row.error_file_id) if f]  # fmt: skip
        if file_ids:
            counts["file"] = await _delete_files(session, StoredFile.id.in_(file_ids))
    if kind.table is StoredFile:
        await _delete_files(session, StoredFile.seq.in_(seqs))
    else:
        await session.execute(delete(kind.table).where(seq.in_(seqs)))
    return counts


async def _delete_files(session: AsyncSession, which: Condition) -> int:
    seqs = select(StoredFile.seq).where(which).scalar_subquery()
    await session.execute(delete(FileChunk).where(FileChunk.file_seq.in_(seqs)))
    return (await session.execute(delete(StoredFile).where(which))).rowcount


async def pseudonymise_usage(
    session: AsyncSession, subject: Subject, pseudonym: str, limit: int, cursor: Cursor
) -> int:
    """Put `pseudonym` where the subject is named in up to `limit` usage rows; counts and
    costs stay, so billing totals do not move (the daily rollup's move to the pseudonymised
    tuples, in the same transaction). Returns how many rows (0: none left)."""
    condition = USAGE.condition(subject)
    if condition is None:
        return 0
    chosen = select(UsageRecord.seq).where(condition, UsageRecord.seq > cursor.after)
    seqs = list(await session.scalars(chosen.order_by(UsageRecord.seq).limit(limit)))
    if not seqs:
        return 0
    cursor.after = seqs[-1]
    values: dict[str, Any]
    if subject.kind == "account":
        values = {"owner": pseudonym}
    elif subject.kind == "user":
        values = {"end_user": pseudonym}
    else:  # the request's `user` on the subject's rows names the same person: it goes too
        values = {
            "metadata_": _json_set(session, UsageRecord.metadata_, subject.key or "", pseudonym),
            "end_user": case((UsageRecord.end_user.is_(None), None), else_=pseudonym),
        }
    # The daily rollup groups by owner and the "feature" value: their sums move alike.
    moves = subject.kind == "account" or subject.key == usage_daily.FEATURE_KEY
    before = await usage_daily.selected(session, seqs) if moves else []
    await session.execute(update(UsageRecord).where(UsageRecord.seq.in_(seqs)).values(values))
    if moves:
        after = await usage_daily.selected(session, seqs)
        changes = usage_daily.merged(usage_daily.deltas(before, -1), usage_daily.deltas(after, 1))
        await usage_daily.apply(session, changes)
    return len(seqs)


def _json_set(session: AsyncSession, column: Any, key: str, value: str) -> Any:
    """`column` with `key` set to `value`, computed by the database: one UPDATE for a whole
    batch of rows (rewriting each row's JSON from Python took one statement per row)."""
    if session.get_bind().dialect.name == "postgresql":
        path = literal([key], ARRAY(Text))
        return func.jsonb_set(column, path, func.to_jsonb(cast(literal(value), Text)))
    quoted = key.replace("\\", "\\\\").replace('"', '\\"')
    return func.json_set(column, f'$."{quoted}"', value)


async def delete_account(session: AsyncSession, user_id: str) -> dict[str, int]:
    """The account itself, once its content is gone: budgets and their alerts, keys, user."""
    key_ids = select(ApiKey.id).where(ApiKey.user_id == user_id).scalar_subquery()
    budgets = or_(
        and_(Budget.scope == "user", Budget.subject_id == user_id),
        and_(Budget.scope == "key", Budget.subject_id.in_(key_ids)),
    )
    alerts = or_(
        and_(BudgetAlert.scope == "user", BudgetAlert.subject_id == user_id),
        and_(BudgetAlert.scope == "key", BudgetAlert.subject_id.in_(key_ids)),
    )
    counts = {
        "budget_alert": (await session.execute(delete(BudgetAlert).where(alerts))).rowcount,
        "budget": (await session.execute(delete(Budget).where(budgets))).rowcount,
        "api_key": (
            await session.execute(delete(ApiKey).where(ApiKey.user_id == user_id))
        ).rowcount,
        # Signed-in browsers of the account (their tokens are hashes; the user id is not).
        "dashboard_session": (
            await session.execute(
                delete(DashboardSession).where(DashboardSession.user_id == user_id)
            )
        ).rowcount,
        "user": (await session.execute(delete(User).where(User.id == user_id))).rowcount,
    }
    return {name: count for name, count in counts.items() if count}


async def account_rows(session: AsyncSession, user_id: str) -> tuple[User | None, list[ApiKey]]:
    user = await session.get(User, user_id)
    keys = await session.scalars(select(ApiKey).where(ApiKey.user_id == user_id))
    return user, list(keys)
