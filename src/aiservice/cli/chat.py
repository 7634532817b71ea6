"""`aiservice chat`: the command's options only. The chatbot itself is the aiservice.chat
package, imported when the command runs: it pulls in the openai SDK, which is slow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aiservice.cli.common import err, settings_or_exit
from aiservice.settings import default_home


def chat_command(
    conversation: Annotated[
        str | None, typer.Option(help="Resume this conversation (conv_...) instead of a new one.")
    ] = None,
    model: Annotated[str, typer.Option(help="The model to talk to.")] = "gpt-4o-mini",
    server: Annotated[
        str | None,
        typer.Option(
            help="A running aiservice, e.g. http://127.0.0.1:5000 (default: run one in this "
            "process, on $AISERVICE_HOME)."
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="API key for --server (default $AISERVICE_API_KEY, then $OPENAI_API_KEY).",
            show_default=False,
        ),
    ] = None,
    max_output_tokens: Annotated[int, typer.Option(min=1, help="Longest reply, in tokens.")] = 256,
    temperature: Annotated[
        float | None,
        typer.Option(min=0.0, max=2.0, help="Sampling temperature (default: the server's)."),
    ] = None,
    log_file: Annotated[
        Path | None,
        typer.Option(help="Where each exchange is logged (default $AISERVICE_HOME/chat.log)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="TOML configuration file, without --server (default $AISERVICE_HOME/config.toml)."
        ),
    ] = None,
) -> None:
    """Chat with a model; the conversation is kept by the server, so it can be resumed."""
    if server is not None and config is not None:
        err.print("--config is for the in-process service; a --server has its own.")
        raise typer.Exit(2)
    settings = settings_or_exit(config) if server is None else None
    from aiservice.chat.log import LOG_NAME
    from aiservice.chat.session import ChatOptions, run_chat

    home = settings.home if settings is not None else default_home()
    options = ChatOptions(
        model=model,
        max_output_tokens=max_output_tokens,
        temperature=temperature,
        log_path=log_file or home / LOG_NAME,
    )
    raise typer.Exit(
        run_chat(
            options,
            conversation_id=conversation,
            server_url=server,
            api_key=api_key,
            settings=settings,
        )
    )
