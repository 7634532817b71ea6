"""Queries on conversations and their items. Every read and write is scoped to one owner.

Items keep the order they were added in (`seq`); a response's turn is appended by
`append_turn` inside the transaction that writes the response's end, so that a conversation
never holds half a turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from aiservice.store.database import Database
from aiservice.store.tables import Conversation, ConversationItem

Order = Literal["asc", "desc"]
Item = dict[str, Any]


class UnknownCursor(LookupError):
    """`after` names no item of this conversation."""


class DuplicateItem(ValueError):
    """An item id the conversation already holds."""


@dataclass(frozen=True, slots=True)
class Turn:
    """What a response adds to a conversation when it ends: its input items, then its output."""

    owner: str
    conversation_id: str
    items: list[Item]


@dataclass(frozen=True, slots=True)
class ItemPage:
    items: list[Item]
    has_more: bool


class ConversationStore:
    def __init__(self, database: Database):
        self._sessions = database.sessions

    async def create(
        self, conversation_id: str, owner: str, created_at: int, metadata: dict, items: list[Item]
    ) -> Conversation:
        async with self._sessions.begin() as session:
            row = Conversation(
                id=conversation_id, owner=owner, created_at=created_at, metadata_=metadata
            )
            session.add(row)
            await session.flush()
            await _insert_items(session, row.seq, items)
            return row

    async def get(self, owner: str, conversation_id: str) -> Conversation | None:
        async with self._sessions() as session:
            return await _conversation(session, owner, conversation_id)

    async def update_metadata(
        self, owner: str, conversation_id: str, metadata: dict[str, str]
    ) -> Conversation | None:
        async with self._sessions.begin() as session:
            return await session.scalar(
                update(Conversation)
                .where(Conversation.owner == owner, Conversation.id == conversation_id)
                .values(metadata_=metadata)
                .returning(Conversation)
            )

    async def delete(self, owner: str, conversation_id: str) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(Conversation).where(
                    Conversation.owner == owner, Conversation.id == conversation_id
                )
            )
            return result.rowcount > 0

    async def add_items(self, conversation: Conversation, items: list[Item]) -> None:
        async with self._sessions.begin() as session:
            await _insert_items(session, conversation.seq, items)

    async def items(
        self, conversation: Conversation, *, limit: int, order: Order, after: str | None
    ) -> ItemPage:
        table = ConversationItem
        query = select(table.item).where(table.conversation_seq == conversation.seq)
        async with self._sessions() as session:
            if after is not None:
                cursor = await session.scalar(
                    select(table.seq).where(
                        table.conversation_seq == conversation.seq, table.item_id == after
                    )
                )
                if cursor is None:
                    raise UnknownCursor(after)
                query = query.where(table.seq > cursor if order == "asc" else table.seq < cursor)
            query = query.order_by(table.seq if order == "asc" else table.seq.desc())
            rows = list(await session.scalars(query.limit(limit + 1)))
        return ItemPage(rows[:limit], has_more=len(rows) > limit)

    async def all_items(self, owner: str, conversation_id: str) -> list[Item] | None:
        """Every item in order, for a model's context; None if there is no such conversation."""
        async with self._sessions() as session:
            conversation = await _conversation(session, owner, conversation_id)
            if conversation is None:
                return None
            rows = await session.scalars(
                select(ConversationItem.item)
                .where(ConversationItem.conversation_seq == conversation.seq)
                .order_by(ConversationItem.seq)
            )
            return list(rows)

    async def item(self, conversation: Conversation, item_id: str) -> Item | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(ConversationItem.item).where(
                    ConversationItem.conversation_seq == conversation.seq,
                    ConversationItem.item_id == item_id,
                )
            )

    async def append(self, turn: Turn) -> bool:
        """A turn of a response that is not stored itself (`store: false`)."""
        async with self._sessions.begin() as session:
            return await append_turn(session, turn)

    async def delete_item(self, conversation: Conversation, item_id: str) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(ConversationItem).where(
                    ConversationItem.conversation_seq == conversation.seq,
                    ConversationItem.item_id == item_id,
                )
            )
            return result.rowcount > 0


async def append_turn(session: AsyncSession, turn: Turn) -> bool:
    """Append a response's items inside the caller's transaction; False if the conversation
    is gone (deleted while the response ran): the response still ends, the turn is dropped."""
    conversation = await _conversation(session, turn.owner, turn.conversation_id)
    if conversation is None:
        return False
    await _insert_items(session, conversation.seq, turn.items)
    return True


async def _conversation(
    session: AsyncSession, owner: str, conversation_id: str
) -> Conversation | None:
    return await session.scalar(
        select(Conversation).where(Conversation.owner == owner, Conversation.id == conversation_id)
    )


async def _insert_items(session: AsyncSession, conversation_seq: int, items: list[Item]) -> None:
    if not items:
        return
    try:
        async with session.begin_nested():
            await session.execute(
                insert(ConversationItem),
                [
                    {"conversation_seq": conversation_seq, "item_id": item["id"], "item": item}
                    for item in items
                ],
            )
    except IntegrityError:
        raise DuplicateItem("an item with one of these ids is already in it") from None
