"""The tables. Metadata is kept twice: as JSON on the row (to return it) and as key/value rows
indexed by (owner, key, value, completion) so that a metadata filter is an index range scan
that already comes out in list order, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias).
SequenceNumber = BigInteger().with_variant(Integer(), "sqlite")
Document = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    pass


class StoredCompletion(Base):
    """A chat completion created with `store: true`."""

    __tablename__ = "chat_completions"

    # Insertion order: the list order, and a cursor that never ties (created_at can).
    seq: Mapped[int] = mapped_column(SequenceNumber, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    owner: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[int] = mapped_column(BigInteger)  # unix seconds, as on the wire
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    request: Mapped[dict[str, Any]] = mapped_column(Document)  # messages and parameters
    response: Mapped[dict[str, Any]] = mapped_column(Document)  # the ChatCompletion body
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", Document)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    # Who asked (None before migration 0013): the dashboard filters by key and finds the
    # request's usage record (latency, cost) by its request id.
    key_id: Mapped[str | None] = mapped_column(String(40))
    request_id: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (
        Index("ix_chat_completions_owner_seq", "owner", "seq"),
        Index("ix_chat_completions_owner_model_seq", "owner", "model", "seq"),
        Index("ix_chat_completions_expires_at", "expires_at"),
        # An admin's request log: everyone's rows, by model or by key.
        Index("ix_chat_completions_model_seq", "model", "seq"),
        Index("ix_chat_completions_key_seq", "key_id", "seq"),
    )


class CompletionMetadata(Base):
    """One metadata pair of a stored completion, for filtering."""

    __tablename__ = "chat_completion_metadata"

    completion_seq: Mapped[int] = mapped_column(
        SequenceNumber, ForeignKey("chat_completions.seq", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(512))
    owner: Mapped[str] = mapped_column(String(128))

    __table_args__ = (
        Index("ix_chat_completion_metadata_lookup", "owner", "key", "value", "completion_seq"),
        # An admin's metadata filter, over every owner.
        Index("ix_chat_completion_metadata_any_owner", "key", "value", "completion_seq"),
    )


class User(Base):
    """Someone who owns stored objects; logs in with Basic auth or holds API keys."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "user_…"; the owner value
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-cased
    password_hash: Mapped[str] = mapped_column(String(256))  # Argon2id, PHC string
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[int] = mapped_column(BigInteger)
    # Rate limits of all the user's requests together, over the configured defaults:
    # {"rpm", "rpd", "tpm", "tpd", "burst", "priority", "max_priority"}; None: the defaults.
    rate_limits: Mapped[dict[str, Any] | None] = mapped_column(Document)
    # Content policy over the configured one: {"moderation", "pii"} (settings.SafetyValues,
    # only the fields set); None: the configured policy.
    safety: Mapped[dict[str, Any] | None] = mapped_column(Document)
    # Zero data retention: nothing of their requests is stored but usage counts.
    zero_retention: Mapped[bool] = mapped_column(Boolean, default=False)


class ApiKey(Base):
    """A Bearer key of a user. Only its SHA-256 is kept; the key itself is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "key_…"
    user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(128))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_hint: Mapped[str] = mapped_column(String(32))  # "sk-…abcd", to recognise it in lists
    created_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)
    # This key's own rate limits over the configured defaults (same shape as the user's).
    rate_limits: Mapped[dict[str, Any] | None] = mapped_column(Document)
    # This key's own content policy (same shape as the user's); it wins over the user's.
    safety: Mapped[dict[str, Any] | None] = mapped_column(Document)
    # The key stops working at this time (unix seconds): "api_key_expired". None: never.
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    # Zero data retention (as its user's): nothing of its requests is stored but usage.
    zero_retention: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set when the key was rotated: the key that replaces it.
    successor_id: Mapped[str | None] = mapped_column(String(40))


class StoredResponse(Base):
    """A response of the Responses API created with `store: true`; background ones are also
    jobs: the row is claimed by one worker at a time under a renewable lease."""

    __tablename__ = "responses"

    seq: Mapped[int] = mapped_column(SequenceNumber, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    owner: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16))  # authoritative; the body's copy may lag
    background: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    previous_response_id: Mapped[str | None] = mapped_column(String(64))
    request: Mapped[dict[str, Any]] = mapped_column(Document)  # the body, to run it again
    input_items: Mapped[list[dict[str, Any]]] = mapped_column(Document)  # with their ids
    response: Mapped[dict[str, Any]] = mapped_column(Document)  # the Response body
    input_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    # Background jobs only.
    queued_at: Mapped[float | None] = mapped_column(Float)  # unix seconds, sub-second
    attempts: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[float | None] = mapped_column(Float)
    # Who asked, for the usage record the job writes when it ends.
    key_id: Mapped[str | None] = mapped_column(String(40))
    request_id: Mapped[str | None] = mapped_column(String(128))
    # The conversation it adds a turn to: its background jobs run one at a time, in order.
    conversation_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_responses_status_seq", "status", "seq"),
        Index("ix_responses_conversation_seq", "conversation_id", "seq"),
        Index("ix_responses_expires_at", "expires_at"),
        # The dashboard's request log: a user's, a key's, a model's.
        Index("ix_responses_owner_seq", "owner", "seq"),
        Index("ix_responses_key_seq", "key_id", "seq"),
        Index("ix_responses_model_seq", "model", "seq"),
    )


class ResponseEvent(Base):
    """A streaming event of a background response created with `stream: true`, kept so that
    any process can stream it, and a client can resume with `starting_after`."""

    __tablename__ = "response_events"

    response_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("responses.id", ondelete="CASCADE"), primary_key=True
    )
    sequence_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    event: Mapped[dict[str, Any]] = mapped_column(Document)


class Conversation(Base):
    """A long-lived conversation of the Conversations API. It does not expire."""

    __tablename__ = "conversations"

    seq: Mapped[int] = mapped_column(SequenceNumber, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)  # "conv_…"
    owner: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", Document)


class ResponseItem(Base):
    """Where an item of a stored response (an input or an output) can be found by its id, for
    `item_reference` inputs. Ids are not unique: a client may send the same input item id
    twice; the latest response that holds it wins."""

    __tablename__ = "response_items"

    seq: Mapped[int] = mapped_column(SequenceNumber, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(128))
    item_id: Mapped[str] = mapped_column(String(64))
    response_id: Mapped[str] = mapped_column(String(64), index=True)

    __table_args__ = (Index("ix_response_items_owner_item", "owner", "item_id"),)


class ConversationItem(Base):
    """One item of a conversation, in the order it was added (`seq`)."""

    __tablename__ = "conversation_items"

    seq: Mapped[int] = mapped_column(SequenceNumber, primary_key=True, autoincrement=True)
    conversation_seq: Mapped[int] = mapped_column(
        SequenceNumber, ForeignKey("conversations.seq", ondelete="CASCADE")
    )
    item_id: Mapped[str] = mapped_column(String(64))
    item: Mapped[dict[str, Any]] = mapped_column(Document)

    __table_args__ = (
        Index("ix_conversation_items_conversation_seq", "conversation_seq", "seq"),
        Index("ix_conversation_items_item", "conversation_seq", "item_id", unique=True),
    )


class UsageRecord(Base):
    """One model request, as the usage ledger keeps it: success or failure, any route,
    background jobs included. Written in batches, off the request path."""

    __tablename__ = "usage_records"

    seq: Mapped[int] = mapped_column(SequenceNumber, primary_key=True, autoincrement=True)
    # Given by the ledger; unique, so that a record replayed from a journal is kept once.
    record_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[float] = mapped_column(Float)  # unix seconds, when the request began
    day: Mapped[str] = mapped_column(String(10))  # its UTC date, "2026-11-21", to group by
    request_id: Mapped[str] = mapped_column(String(128))
    owner: Mapped[str | None] = mapped_column(String(128))
    key_id: Mapped[str | None] = mapped_column(String(40))
    route: Mapped[str] = mapped_column(String(64))
    background: Mapped[bool] = mapped_column(Boolean)
    model_requested: Mapped[str | None] = mapped_column(String(256))
    model_served: Mapped[str | None] = mapped_column(String(256))
    provider: Mapped[str | None] = mapped_column(String(16))  # "local" or "openai"
    input_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    cached_tokens: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[float] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    status_code: Mapped[int] = mapped_column(Integer)  # HTTP status; a job's 200/4xx/5xx/499
    error_code: Mapped[str | None] = mapped_column(String(64))
    upstream_attempts: Mapped[int] = mapped_column(Integer)
    # Rate limiting: the request's priority, and how long it waited in the queue (None: no wait).
    priority: Mapped[str | None] = mapped_column(String(8))
    wait_ms: Mapped[float | None] = mapped_column(Float)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", Document)
    # The request's `user` (or `safety_identifier`): the end user of the calling application,
    # a data subject whose usage an erasure replaces by a pseudonym.
    end_user: Mapped[str | None] = mapped_column(String(256))

    __table_args__ = (
        Index("ix_usage_records_created_at", "created_at"),
        Index("ix_usage_records_owner_created_at", "owner", "created_at"),
        Index("ix_usage_records_key_created_at", "key_id", "created_at"),
        Index("ix_usage_records_record_id", "record_id", unique=True),
        Index("ix_usage_records_request_id", "request_id"),
        Index("ix_usage_records_end_user", "end_user"),
    )


class UsageDaily(Base):
    """The usage ledger rolled up per UTC day and dimension tuple: the sums of its records,
    kept exact in the transactions that insert, pseudonymise or delete them
    (store/usage_daily.py), so that totals over whole days need not read every record.

    The dimensions are the primary key. A NULL dimension is stored as '' (PostgreSQL's unique
    indexes take NULLs as distinct), and `nulls` says which were NULL (owner 1, key_id 2,
    model_served 4, feature 8), so that a NULL and a real '' stay apart."""

    __tablename__ = "usage_daily"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    model_served: Mapped[str] = mapped_column(String(256), primary_key=True)
    route: Mapped[str] = mapped_column(String(64), primary_key=True)
    feature: Mapped[str] = mapped_column(String(512), primary_key=True)  # metadata "feature"
    nulls: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    requests: Mapped[int] = mapped_column(BigInteger)
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    cost_usd: Mapped[float] = mapped_column(Float)
    errors: Mapped[int] = mapped_column(BigInteger)  # status_code >= 400

    # The primary key, led by `day`, serves the admins' reads (a range of days); this, a user's.
    __table_args__ = (Index("ix_usage_daily_owner_day", "owner", "day"),)


class Budget(Base):
    """A spending limit in USD for one user or one key, per day, month or in total."""

    __tablename__ = "budgets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "budget_…"
    scope: Mapped[str] = mapped_column(String(8))  # "user" or "key"
    subject_id: Mapped[str] = mapped_column(String(128))  # the user's or the key's id
    amount_usd: Mapped[float] = mapped_column(Float)
    period: Mapped[str] = mapped_column(String(8))  # "day", "month" or "total"
    soft: Mapped[bool] = mapped_column(Boolean)  # only alerts; never refuses
    created_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_budgets_subject", "scope", "subject_id", unique=True),)


class BudgetAlert(Base):
    """A budget's threshold (50, 80 or 100 %) crossed in one period; unique, so that each
    alert is raised once per period even with several processes."""

    __tablename__ = "budget_alerts"

    seq: Mapped[int] = mapped_column(SequenceNumber, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)  # "alert_…"
    budget_id: Mapped[str] = mapped_column(String(40))  # kept after its budget is deleted
    scope: Mapped[str] = mapped_column(String(8))
    subject_id: Mapped[str] = mapped_column(String(128))
    period: Mapped[str] = mapped_column(String(8))
    period_start: Mapped[int] = mapped_column(BigInteger)
    threshold: Mapped[int] = mapped_column(Integer)  # percent
    spent_usd: Mapped[float] = mapped_column(Float)
    amount_usd: Mapped[float] = mapped_column(Float)
    created_at: Mapped[int] = mapped_column(BigInteger)
    delivered: Mapped[bool] = mapped_column(Boolean)  # the webhook accepted it

    __table_args__ = (
        Index("ix_budget_alerts_once", "budget_id", "period_start", "threshold", unique=True),
    )


class StoredFile(Base):
    """An uploaded file of the Files API, or a batch's output or error file. Its content is
    kept in `file_chunks`, in the database every replica shares."""

    __tablename__ = "files"

    seq: Mapped[int] = mapped_column(SequenceNumber, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)  # "file-…"
    owner: Mapped[str] = mapped_column(String(128))
    purpose: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(512))
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    # False while a batch's output is being written, or an upload is still arriving: such a
    # file is neither listed nor readable.
    complete: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (
        Index("ix_files_owner_seq", "owner", "seq"),
        Index("ix_files_expires_at", "expires_at"),
    )


class FileChunk(Base):
    """One piece of a file's content, in order (`position`), at most 1 MiB."""

    __tablename__ = "file_chunks"

    file_seq: Mapped[int] = mapped_column(
        SequenceNumber, ForeignKey("files.seq", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class StoredBatch(Base):
    """A batch of the Batch API. Its lines are `batch_lines`; the batch row itself is a job
    while it is validated and finalized (claimed under a lease, like a background response)."""

    __tablename__ = "batches"

    seq: Mapped[int] = mapped_column(SequenceNumber, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)  # "batch_…"
    owner: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str | None] = mapped_column(String(40))
    # Who created it, as governance.accounts.Principal's fields: its lines run as them.
    principal: Mapped[dict[str, Any]] = mapped_column(Document)
    endpoint: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(256))  # the lines' (first) model
    input_file_id: Mapped[str] = mapped_column(String(64))
    completion_window: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    # The wire timestamps, unix seconds: created_at, in_progress_at, expires_at, …_at.
    times: Mapped[dict[str, int]] = mapped_column(Document)
    expires_at: Mapped[int] = mapped_column(BigInteger)  # end of the completion window
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(Document)  # validation's
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", Document)
    output_expires_after: Mapped[dict[str, Any] | None] = mapped_column(Document)
    output_file_id: Mapped[str | None] = mapped_column(String(64))
    error_file_id: Mapped[str | None] = mapped_column(String(64))
    # Set at the end from the lines: {"total", "completed", "failed"} and the token sums.
    request_counts: Mapped[dict[str, int] | None] = mapped_column(Document)
    usage: Mapped[dict[str, Any] | None] = mapped_column(Document)
    # The batch as a job (validating, finalizing, or waiting on an upstream batch).
    worker_id: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer)
    # Upstream batch mode: where the lines went ({"model", "file_id", "batch_id", …}).
    upstream: Mapped[dict[str, Any] | None] = mapped_column(Document)
    request_id: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (
        Index("ix_batches_owner_seq", "owner", "seq"),
        Index("ix_batches_status_seq", "status", "seq"),
    )


class BatchLine(Base):
    """One request of a batch, at its 1-based `line` of the input file. Pending, running under
    a worker's lease, or done with its output line (`result`) and usage record written in
    the same transaction: a line is charged and answered exactly once."""

    __tablename__ = "batch_lines"

    batch_seq: Mapped[int] = mapped_column(
        SequenceNumber, ForeignKey("batches.seq", ondelete="CASCADE"), primary_key=True
    )
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    custom_id: Mapped[str] = mapped_column(String(512))
    body: Mapped[dict[str, Any]] = mapped_column(Document)
    state: Mapped[str] = mapped_column(String(12))  # pending, running, succeeded, failed
    worker_id: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[float | None] = mapped_column(Float)
    not_before: Mapped[float | None] = mapped_column(Float)  # rate-limited: wait until then
    attempts: Mapped[int] = mapped_column(Integer)
    result: Mapped[dict[str, Any] | None] = mapped_column(Document)  # the output line
    input_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    cached_tokens: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_batch_lines_state", "batch_seq", "state", "line"),
        Index("ix_batch_lines_custom_id", "batch_seq", "custom_id", unique=True),
    )


class DocumentAnalysis(Base):
    """A document analysis: its chunks, the background responses of its stages, its report.
    Also a job while it runs: a worker claims it under a lease to start its next stage."""

    __tablename__ = "document_analyses"

    seq: Mapped[int] = mapped_column(SequenceNumber, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)  # "analysis_…"
    owner: Mapped[str] = mapped_column(String(128))
    principal: Mapped[dict[str, Any]] = mapped_column(Document)  # as governance's Principal
    model: Mapped[str] = mapped_column(String(256))
    name: Mapped[str] = mapped_column(String(512))  # the document's file name
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger)
    chunks: Mapped[list[str]] = mapped_column(Document)  # the document's pieces, in order
    # Every stage job so far, in order: {"stage": "map" | "reduce-N" | "report", "id"}.
    jobs: Mapped[list[dict[str, str]]] = mapped_column(Document)
    stage: Mapped[str | None] = mapped_column(String(16))  # the stage now running
    report: Mapped[dict[str, Any] | None] = mapped_column(Document)
    error: Mapped[str | None] = mapped_column(String(1024))
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", Document)
    worker_id: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_document_analyses_owner_seq", "owner", "seq"),
        Index("ix_document_analyses_status", "status", "seq"),
    )


class AuditEntry(Base):
    """One administrative action (users, keys, budgets, limits, policies, erase, export), as
    it was done: who, when, what, on what, under which request. Rows are only ever added."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(SequenceNumber, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)  # "audit_…"
    created_at: Mapped[int] = mapped_column(BigInteger)  # unix seconds
    actor: Mapped[str] = mapped_column(String(256))  # "user_…", "admin", "cli:<os user>"
    action: Mapped[str] = mapped_column(String(64))  # "key.create", "privacy.erase", …
    target: Mapped[str] = mapped_column(String(512))  # the key's, user's, erasure's… id
    request_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any] | None] = mapped_column(Document)  # never secrets

    __table_args__ = (
        Index("ix_audit_log_action_seq", "action", "seq"),
        Index("ix_audit_log_actor_seq", "actor", "seq"),
        Index("ix_audit_log_created_at", "created_at"),
    )


class PrivacyErasure(Base):
    """The erasure of everything held about one data subject, as a durable job: claimed
    under a lease, each batch of deletions committed with its counts, so that a killed worker's
    job is taken up where it stopped. Once completed, the subject is dropped: nothing left here
    leads back to the person."""

    __tablename__ = "privacy_erasures"

    seq: Mapped[int] = mapped_column(SequenceNumber, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)  # "erasure_…"
    status: Mapped[str] = mapped_column(String(16))  # in_progress, completed
    created_at: Mapped[int] = mapped_column(BigInteger)
    completed_at: Mapped[int | None] = mapped_column(BigInteger)
    # While in progress: the subject ({"account"|"user"|"metadata": …}, "within") and a digest
    # of it (one running erasure per subject).
    subject: Mapped[dict[str, Any] | None] = mapped_column(Document)
    subject_digest: Mapped[str | None] = mapped_column(String(64))
    # What the subject's usage rows carry instead: random, so it leads nowhere once the subject
    # is dropped.
    pseudonym: Mapped[str] = mapped_column(String(40))
    deleted: Mapped[dict[str, int]] = mapped_column(Document)  # kind: rows deleted so far
    actor: Mapped[str] = mapped_column(String(256))
    request_id: Mapped[str | None] = mapped_column(String(128))
    worker_id: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_privacy_erasures_status_seq", "status", "seq"),
        Index("ix_privacy_erasures_subject_digest", "subject_digest"),
    )


class DashboardSession(Base):
    """A browser signed in to the dashboard. The cookie holds the token; only its hash is
    kept. Who it is is looked up again on every page (a revoked key or a disabled user ends
    the session at once): by the key's hash for an API-key sign-in, by the user's id for an
    e-mail and password one, neither for the master key."""

    __tablename__ = "dashboard_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "key", "password" or "master"
    user_id: Mapped[str | None] = mapped_column(String(40))
    key_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)  # unix seconds
    last_seen_at: Mapped[float] = mapped_column(Float)  # idle expiry counts from here

    __table_args__ = (Index("ix_dashboard_sessions_last_seen_at", "last_seen_at"),)
