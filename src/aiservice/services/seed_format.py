"""The e-mail manager's dictionaries (seed 000): what `AIService` returns and what the
`/api/ai` routes send, built from OpenAI wire bodies so both stay identical."""

from __future__ import annotations

from typing import Any

from aiservice.errors import AIServiceError

_COMPLETION_KEYS = ("id", "model", "choices", "usage", "created")


def completion_result(completion: dict[str, Any]) -> dict[str, Any]:
    """create_chat_completion: {'success': True, 'id', 'model', 'choices', 'usage', 'created'}."""
    return {"success": True, **{key: completion.get(key) for key in _COMPLETION_KEYS}}


def stored_result(completion: dict[str, Any]) -> dict[str, Any]:
    """get/update_chat_completion: the completion and its current metadata."""
    return {**completion_result(completion), "metadata": completion.get("metadata") or {}}


def list_result(page: dict[str, Any]) -> dict[str, Any]:
    """list_chat_completions: {'success', 'completions': [{id, model, created, usage}], ...}."""
    return {
        "success": True,
        "completions": [
            {
                "id": c["id"],
                "model": c["model"],
                "created": c["created"],
                "usage": c.get("usage") or {},
                "metadata": c.get("metadata") or {},
            }
            for c in page["data"]
        ],
        "has_more": page["has_more"],
        "last_id": page["last_id"] or None,
    }


def deleted_result(deleted: dict[str, Any]) -> dict[str, Any]:
    return {"success": True, "id": deleted["id"], "deleted": bool(deleted["deleted"])}


def messages_result(page: dict[str, Any]) -> dict[str, Any]:
    """get_chat_messages: {'success', 'messages': [{id, role, content}, ...], 'has_more'}."""
    return {
        "success": True,
        "messages": [
            {"id": m["id"], "role": m["role"], "content": m.get("content")} for m in page["data"]
        ],
        "has_more": page["has_more"],
        "last_id": page["last_id"] or None,
    }


def error_result(error: AIServiceError) -> dict[str, Any]:
    """Every failure: {'success': False, 'error': '<message>'} (never an exception)."""
    return {"success": False, "error": error.message}
