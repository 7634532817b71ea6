"""Helpers of the document-analysis tests: the fake upstream's answer to each stage, and a
long text that splits into several pieces."""

from __future__ import annotations

import json
from typing import Any

REPORT_TITLE = "Quarterly report"


def stage_reply(body: dict[str, Any]) -> str:
    """Valid JSON for the stage's schema: the report has a title, the others key points. (The
    summary holds brackets: rich output must not read them as markup.)"""
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
    if "title" in (schema.get("properties") or {}):
        return json.dumps(
            {
                "title": REPORT_TITLE,
                "summary": "Sales grew and costs fell [by a lot].",
                "key_points": ["Sales grew 12 %", "Costs fell"],
                "recommendations": ["Hire two engineers"],
                "sections": [{"heading": "Sales", "summary": "Up 12 %."}],
            }
        )
    return json.dumps({"key_points": ["A point of this part", "Another point"]})


def long_text(paragraphs: int) -> str:
    return "\n\n".join(
        f"Paragraph {i}. " + " ".join(f"word{i}_{j}" for j in range(120)) + "."
        for i in range(paragraphs)
    )
