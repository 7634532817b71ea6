"""`AIService`: the e-mail manager's Python object (seed 000), in-process or against a server.

Embedded mode (no `base_url`, client/embedded.py) runs aiservice inside the calling process,
with the same home, configuration and database as `aiservice serve`: on first use it loads the
settings, applies the migrations and loads the models, all on a private event loop in a daemon
thread. Its calls act as the server's master key does (owner "admin"), so the server's master
key sees what the embedded service stores, and the other way round.

Remote mode (`base_url`, `api_key`, client/remote.py) talks to a running server through the
official `openai` SDK.

Both modes take the same typed requests (services.queries) and return the same dictionaries
(built by `aiservice.services.seed_format`); neither raises for an API error: they return
`{'success': False, 'error': '<message>'}` instead (client/facade.py). Importing this package
is cheap: the server's machinery is imported on first use only. Nothing here imports api/.
"""

from aiservice.client.embedded import EMBEDDED_CHAT_ROUTE
from aiservice.client.facade import AIService

__all__ = ["EMBEDDED_CHAT_ROUTE", "AIService"]
