"""The `aiservice` command: thin commands over the same services the API uses."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from sqlalchemy.engine import make_url

from aiservice.errors import AIServiceError
from aiservice.governance.accounts import Accounts
from aiservice.observability.logging import configure_logging
from aiservice.settings import ConfigError, Settings, default_home, load_settings
from aiservice.store.accounts import AccountStore
from aiservice.store.database import Database, database_url
from aiservice.store.migrate import upgrade_database

app = typer.Typer(
    help="aiservice: a self-hosted, OpenAI-compatible AI service.", no_args_is_help=True
)
T = TypeVar("T")
err = Console(stderr=True)
out = Console()


@app.callback()
def main() -> None:
    """aiservice command line."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port to listen on (default 5000).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="TOML configuration file (default $AISERVICE_HOME/config.toml)."),
    ] = None,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="Run background responses in this process too (default) or leave them to "
            "`aiservice worker` processes.",
        ),
    ] = True,
) -> None:
    """Start the HTTP server."""
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = _settings_or_exit(config)
    # Flags are applied after loading: passed to load_settings they were init arguments, which
    # AISERVICE_* variables override, so `--port 6000` lost to AISERVICE_PORT. Typer has
    # already checked their types and range.
    settings = settings.model_copy(update=overrides)
    configure_logging(settings.log_level)
    settings.home.mkdir(parents=True, exist_ok=True)
    # Imported here: the app pulls in the web stack and the model runtime, seconds of imports
    # that the account and database commands do without.
    import uvicorn

    from aiservice.app import create_app

    uvicorn.run(
        create_app(settings, worker=worker, freeze_heap=True),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
    )


@app.command("worker")
def worker_command(
    config: Annotated[
        Path | None,
        typer.Option(help="TOML configuration file (default $AISERVICE_HOME/config.toml)."),
    ] = None,
) -> None:
    """Run background responses from the database until stopped (Ctrl-C or SIGTERM)."""
    import signal

    from aiservice.services.runtime import ServiceRuntime  # the model runtime: slow imports

    settings = _settings_or_exit(config)
    configure_logging(settings.log_level)

    async def run() -> None:
        runtime = ServiceRuntime(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await runtime.start(master_key=False, wait_for_models=True, worker=True, freeze_heap=True)
        try:
            await stop.wait()
        finally:
            await runtime.close()  # hands running jobs back to the queue

    asyncio.run(run())


db = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db, name="db")


def _settings_or_exit(config: Path | None) -> Settings:
    # soft_wrap: Rich otherwise breaks lines at the terminal width (80 when piped), which
    # split "FILE: models[0].path: ..." across lines for anyone grepping the output.
    try:
        return load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]Invalid configuration[/red]\n{exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


ConfigOption = Annotated[
    Path | None,
    typer.Option(help="TOML configuration file (default $AISERVICE_HOME/config.toml)."),
]


@db.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply pending database migrations (the server also does this at start)."""
    settings = _settings_or_exit(config)
    settings.home.mkdir(parents=True, exist_ok=True)
    url = database_url(settings)
    upgrade_database(url)
    out.print(f"Database is up to date: {make_url(url).render_as_string(hide_password=True)}")


@app.command()
def purge(config: ConfigOption = None) -> None:
    """Delete expired stored completions and responses now (the server also does this
    periodically)."""
    settings = _settings_or_exit(config)
    settings.home.mkdir(parents=True, exist_ok=True)
    url = database_url(settings)
    upgrade_database(url)
    completions, responses = asyncio.run(_purge(url, settings.retention_days))
    out.print(
        f"Purged {completions} expired stored completion(s) and {responses} stored response(s)."
    )


async def _purge(url: str, retention_days: int) -> tuple[int, int]:
    import time

    from aiservice.services.stored_completions import StoredCompletions  # imports openai: slow
    from aiservice.store.completions import CompletionStore
    from aiservice.store.responses import ResponseStore

    database = Database(url)
    try:
        completions = await StoredCompletions(
            CompletionStore(database), retention_days
        ).purge_expired()
        responses = await ResponseStore(database).purge_expired(int(time.time()))
        return completions, responses
    finally:
        await database.close()


@app.command()
def chat(
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
    settings = _settings_or_exit(config) if server is None else None
    from aiservice.chat import LOG_NAME, ChatOptions, run_chat  # imports the openai SDK: slow

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


users = typer.Typer(
    help="Users (they log in with Basic auth and own API keys).", no_args_is_help=True
)
keys = typer.Typer(help="API keys (Bearer), owned by users.", no_args_is_help=True)
app.add_typer(users, name="users")
app.add_typer(keys, name="keys")


def with_database(config: Path | None, work: Callable[[Settings, Database], Awaitable[T]]) -> T:
    """Run `work` against the configured database, migrated first; API errors exit with 1."""
    settings = _settings_or_exit(config)
    settings.home.mkdir(parents=True, exist_ok=True)
    url = database_url(settings)
    upgrade_database(url)

    async def run() -> T:
        database = Database(url)
        try:
            return await work(settings, database)
        finally:
            await database.close()

    try:
        return asyncio.run(run())
    except AIServiceError as exc:
        err.print(f"[red]{exc.message}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _with_accounts(config: Path | None, work: Callable[[Accounts], Awaitable[T]]) -> T:
    return with_database(config, lambda _, database: work(Accounts(AccountStore(database))))


@users.command("add")
def users_add(
    email: str,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    admin: Annotated[bool, typer.Option(help="May use the admin API.")] = False,
    config: ConfigOption = None,
) -> None:
    """Add a user (prompts for the password when --password is not given)."""
    user = _with_accounts(config, lambda a: a.add_user(email, password, is_admin=admin))
    out.print(
        f"Added {user.email} ({user.id}){' as admin' if user.is_admin else ''}.", soft_wrap=True
    )


@users.command("list")
def users_list(config: ConfigOption = None) -> None:
    """List users."""
    table = Table("id", "email", "admin", "disabled", "created")
    for user in _with_accounts(config, lambda a: a.users()):
        table.add_row(
            user.id, user.email, _yes(user.is_admin), _yes(user.disabled), _when(user.created_at)
        )
    _print_table(table)


@users.command("disable")
def users_disable(email: str, config: ConfigOption = None) -> None:
    """Disable a user: their password and keys stop working at once."""
    user = _with_accounts(config, lambda a: a.disable_user(email))
    out.print(f"Disabled {user.email}.", soft_wrap=True)


@keys.command("create")
def keys_create(
    email: str,
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "default",
    budget: Annotated[
        float | None, typer.Option(help="Give the key a budget of this many USD per period.")
    ] = None,
    budget_period: Annotated[
        str, typer.Option(help="The budget's period: day, month (UTC) or total.")
    ] = "month",
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute.")] = None,
    rpd: Annotated[int | None, typer.Option(min=1, help="Requests per day.")] = None,
    tpm: Annotated[int | None, typer.Option(min=1, help="Tokens per minute.")] = None,
    tpd: Annotated[int | None, typer.Option(min=1, help="Tokens per day.")] = None,
    burst: Annotated[
        int | None, typer.Option(min=1, help="Requests at once before throttling.")
    ] = None,
    priority: Annotated[
        str | None, typer.Option(help="Default priority of its requests: high, medium, low.")
    ] = None,
    max_priority: Annotated[
        str | None, typer.Option(help="Highest priority an x-priority header may ask for.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Create an API key for a user and print it (it is not shown again). Rate limits not
    given follow the configured defaults."""
    from aiservice.cli_budgets import check_budget_options, set_key_budget
    from aiservice.cli_limits import limit_values

    if budget is not None:
        check_budget_options(budget, budget_period)  # before the key exists
    own = limit_values(
        rpm=rpm, rpd=rpd, tpm=tpm, tpd=tpd, burst=burst, priority=priority,
        max_priority=max_priority,
    )  # fmt: skip
    new = _with_accounts(config, lambda a: a.create_key(email, name, own))
    err.print(
        f"Created {new.key.id} ({new.key.name}) for {email}. Store it now, it is not shown again:",
        soft_wrap=True,
    )
    out.print(new.secret, highlight=False)
    if budget is not None:
        set_key_budget(config, new.key.id, budget, budget_period)


@keys.command("list")
def keys_list(
    email: Annotated[str | None, typer.Argument()] = None, config: ConfigOption = None
) -> None:
    """List API keys, of one user or of everyone."""
    from aiservice.cli_limits import describe

    table = Table("id", "user", "name", "key", "created", "revoked", "rate limits")
    for key, user in _with_accounts(config, lambda a: a.keys(email)):
        revoked = _when(key.revoked_at) if key.revoked_at else ""
        table.add_row(
            key.id,
            user.email,
            key.name,
            key.key_hint,
            _when(key.created_at),
            revoked,
            describe(key.rate_limits),
        )
    _print_table(table)


@keys.command("revoke")
def keys_revoke(key_id: str, config: ConfigOption = None) -> None:
    """Revoke an API key: it stops working at once."""
    _with_accounts(config, lambda a: a.revoke_key(key_id))
    out.print(f"Revoked {key_id}.", soft_wrap=True)


def _print_table(table: Table) -> None:
    """Print the table at its natural width: ids and e-mails are never cut or wrapped (Rich
    would fit it to the terminal, 80 columns when piped, and `keys revoke` needs whole ids)."""
    natural = Measurement.get(out, out.options.update(width=100_000), table).maximum
    Console(width=max(out.width, natural)).print(table)


def _yes(flag: bool) -> str:
    return "yes" if flag else ""


def _when(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


# Commands kept in modules of their own, registered last: they use the helpers above.
from aiservice.cli_budgets import register as register_budget_commands  # noqa: E402
from aiservice.cli_limits import limits  # noqa: E402
from aiservice.cli_usage import usage  # noqa: E402

app.command()(usage)
register_budget_commands(app)
app.add_typer(limits, name="limits")
