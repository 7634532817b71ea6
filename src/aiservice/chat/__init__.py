"""`aiservice chat`, the terminal chatbot: the REPL and the command's run (session.py), its
exchange log (log.py), retry policy (retry.py) and the in-process server it talks to without
`--server` (embedded_server.py). The command's options are in aiservice.cli.chat.

Nothing is imported here: the log and retry modules load without the SDK."""
