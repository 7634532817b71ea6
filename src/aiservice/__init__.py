"""aiservice: a self-hosted, OpenAI-compatible AI service.

`from aiservice import ai_service` gives the e-mail manager's Python object (seed 000), ready to
use in embedded mode: nothing is loaded until its first call. See docs/python.md.
"""

from aiservice.client import AIService

ai_service = AIService()

__all__ = ["AIService", "ai_service"]
