"""What docs/operations.md ("Upstream faults: what a client sees") says each case of the fault
matrix comes to: the expected observation of every (fault, mode, fallback), and the table the
document holds, rendered from the same source so that the two cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass

from aiservice.tokens import estimate_tokens
from fault_matrix_support import (
    ATTEMPTS,
    BACKOFF_MIN_S,
    BACKUP,
    FAULT_KINDS,
    MODES,
    PROMPT,
    REPLY,
    RETRY_AFTER_S,
    TRICKLE_TIMEOUT_S,
    case_model,
)


@dataclass(frozen=True)
class Documented:
    """How a fault plays out in one mode.

    `shape`: "retried" (every attempt fails before its first chunk: retried, then given up),
    "cut" (a stream that fails after content reached the client: never retried), "slow" (an
    answer slow but within every timeout), "timeout" (timeout_s runs out before the answer
    has begun) or "open" (the circuit was open before the request)."""

    shape: str
    label: str = ""  # each attempt's outcome, as /metrics and the log name it
    message: str = ""  # a part of the error's message
    cut_text: str = ""  # for "cut": the text the client had received
    gap_s: float = 0.0  # for "retried": the least time between two attempts


def _retried(label: str, gap_s: float = BACKOFF_MIN_S) -> Documented:
    message = f"did not answer after {ATTEMPTS} attempts ({label})"
    return Documented("retried", label, message, gap_s=gap_s)


TIMED_OUT = f"did not finish within {TRICKLE_TIMEOUT_S:g} s (timeout_s)"
_RETRIED = {
    "429-retry-after": _retried("HTTP 429", RETRY_AFTER_S),
    "429": _retried("HTTP 429"),
    "500": _retried("HTTP 500"),
    "502": _retried("HTTP 502"),
    "503": _retried("HTTP 503"),
    "refused": _retried("connect error", 0.0),  # no upstream to time the attempts
    "reset-mid-body": _retried("connection dropped"),
    "stall-before-headers": _retried("read timeout"),
    "malformed-json": _retried("malformed data"),
}
_OTHERS = {
    "slow-trickle": Documented("slow", "ok"),
    "slow-trickle-past-timeout": Documented("timeout", "timeout", TIMED_OUT),
    "circuit-open": Documented("open", message="its circuit is open"),
}
# In a stream these come after the first chunk: the client has content, nothing is retried.
_CUT_IN_A_STREAM = {
    "reset-mid-body": ("Fake reply", "stopped answering mid-stream"),
    "stall-mid-stream": ("Fake reply", "stopped answering mid-stream"),
    "truncated-sse": ("Fake reply", "stopped answering mid-stream"),
    "slow-trickle-past-timeout": ("Fake", TIMED_OUT),
}


def documented(kind: str, mode: str) -> Documented:
    if mode == "stream" and kind in _CUT_IN_A_STREAM:
        text, message = _CUT_IN_A_STREAM[kind]
        return Documented("cut", "ok", message, cut_text=text)
    return _RETRIED.get(kind) or _OTHERS[kind]


ROUTES = {
    "plain": "/v1/chat/completions",
    "stream": "/v1/chat/completions",
    "background": "/v1/responses",
    "batch": "/v1/batches",
}
ANSWERED = {
    "plain": "200 answer",
    "stream": "200 stream, 5 deltas, finish_reason, [DONE]",
    "background": "completed",
    "batch": "completed, line 200 in the output file",
}
FAILED = {
    "plain": "503 upstream_unavailable",
    "stream": "200 stream, 0 deltas, error upstream_unavailable",
    "background": "failed server_error",
    "batch": "completed, line 503 in the error file (upstream_unavailable)",
}
UNAVAILABLE = "upstream_unavailable"


@dataclass(frozen=True)
class Expected:
    client: str  # Received.outcome
    text: str
    model: str | None  # the model the answer names
    message: str  # a part of the error's message ("" when answered)
    attempts: list[str]  # at the case's model, sorted
    upstream_saw: int  # -1: no upstream to ask
    backup_saw: int
    circuit: float  # the model's: 0 closed, 2 open
    host_circuit: float
    # The ledger row: status_code, error_code, upstream_attempts, model_served, tokens in, out.
    row: tuple[int, str | None, int, str, int, int]
    gap_s: float = 0.0
    route: str = ""


def expected(kind: str, mode: str, fallback: bool) -> Expected:
    model = case_model(kind, mode, fallback)
    shape = documented(kind, mode)
    attempts = {"retried": [shape.label] * ATTEMPTS, "open": []}.get(shape.shape, [shape.label])
    refused = FAULT_KINDS[kind].where == "refused"
    common = {
        "attempts": attempts,
        "upstream_saw": -1 if refused else len(attempts),
        "circuit": 2.0 if shape.shape in ("retried", "open") else 0.0,
        "host_circuit": 2.0 if refused else 0.0,
        "gap_s": shape.gap_s,
        "route": ROUTES[mode],
    }
    prompt = estimate_tokens(len(PROMPT))  # no usage reported: the prompt is estimated
    if shape.shape == "slow":
        row = (200, None, 1, model, 2, 5)
        return Expected(ANSWERED[mode], REPLY, model, "", backup_saw=0, row=row, **common)
    message = shape.message
    if shape.shape == "cut":  # the fallback changes nothing: content had reached the client
        deltas = len(shape.cut_text.split())
        client = f"200 stream, {deltas} deltas, error {UNAVAILABLE}"
        row = (503, UNAVAILABLE, 1, model, prompt, estimate_tokens(len(shape.cut_text)))
        return Expected(client, shape.cut_text, model, message, backup_saw=0, row=row, **common)
    if fallback:
        row = (200, None, len(attempts) + 1, BACKUP, 2, 5)
        return Expected(ANSWERED[mode], REPLY, BACKUP, "", backup_saw=1, row=row, **common)
    row = (503, UNAVAILABLE, len(attempts), model, prompt, 0)
    named = model if mode == "background" else None  # a failed response still names its model
    return Expected(FAILED[mode], "", named, message, backup_saw=0, row=row, **common)


# --- the table of docs/operations.md ----------------------------------------------------------

# Each row of the table: a fault, and the modes it is shown for (some faults play out
# differently in a stream, which gets a row of its own).
TABLE_ROWS = [
    ("429, `Retry-After: 1.2`", "429-retry-after", MODES),
    ("429, no `Retry-After`", "429", MODES),
    ("500", "500", MODES),
    ("502", "502", MODES),
    ("503", "503", MODES),
    ("Connection refused", "refused", MODES),
    ("Reset mid-body (a whole answer)", "reset-mid-body", ("plain", "background", "batch")),
    ("Reset mid-body (a stream, after 2 words)", "reset-mid-body", ("stream",)),
    ("Stall before the headers", "stall-before-headers", MODES),
    ("Stall mid-stream (after 2 words)", "stall-mid-stream", ("stream",)),
    ("Malformed JSON", "malformed-json", MODES),
    ("Truncated SSE: the body ends cleanly after 2 words", "truncated-sse", ("stream",)),
    ("Slow trickle, each gap within `first_byte_timeout_s`", "slow-trickle", MODES),
    (
        "Slow trickle past `timeout_s` (a whole answer)",
        "slow-trickle-past-timeout",
        ("plain", "background", "batch"),
    ),
    (
        "Slow trickle past `timeout_s` (a stream, after 1 word)",
        "slow-trickle-past-timeout",
        ("stream",),
    ),
    ("Circuit already open", "circuit-open", MODES),
]

_CLIENT_CELLS = {
    "plain": {"answered": "200, the answer", "failed": "503 `upstream_unavailable`"},
    "stream": {
        "answered": "200, the whole stream, `[DONE]`",
        "failed": "200, then an error event `upstream_unavailable`, no content",
    },
    "background": {"answered": "`completed`", "failed": "`failed`, error `server_error`"},
    "batch": {"answered": "line 200 in the output file", "failed": "line 503 in the error file"},
}


def _client_cell(kind: str, mode: str, modes: tuple[str, ...]) -> str:
    if mode not in modes:
        return "—"
    shape = documented(kind, mode)
    if shape.shape == "cut":
        words = len(shape.cut_text.split())
        return (
            f"200, {words} content delta{'s' if words > 1 else ''}, then an error event "
            "`upstream_unavailable`; no `finish_reason`, no `[DONE]`"
        )
    return _CLIENT_CELLS[mode]["answered" if shape.shape == "slow" else "failed"]


def _attempts_cell(kind: str, shape: Documented) -> str:
    if shape.shape == "open":
        return "0 (refused at once)"
    count = ATTEMPTS if shape.shape == "retried" else 1
    cell = f"{count} attempt{'s' if count > 1 else ''}: `{shape.label}`"
    if kind == "429-retry-after":
        cell += f", {RETRY_AFTER_S:g} s apart or more (`Retry-After`)"
    elif shape.shape == "retried" and shape.gap_s:
        cell += f", {BACKOFF_MIN_S:g} s apart or more (backoff)"
    return cell


def _circuit_cell(kind: str, shape: Documented) -> str:
    if FAULT_KINDS[kind].where == "refused":
        return "open: the model's and the host's (`#*`)"
    if shape.shape == "retried":
        return "open (the model's)"
    if shape.shape == "open":
        return "stays open"
    return "closed" + (" (one failure counted)" if shape.shape == "timeout" else "")


def _ledger_cell(shape: Documented) -> str:
    if shape.shape == "slow":
        return "200, 1 attempt, the reported usage"
    attempts = {"retried": ATTEMPTS, "open": 0}.get(shape.shape, 1)
    cell = f"503 `upstream_unavailable`, {attempts} attempt{'s' if attempts != 1 else ''}"
    if shape.shape == "cut":
        return cell + ", input and output tokens estimated (what was sent)"
    return cell + ", input tokens estimated, output 0"


_FALLBACK_ANSWERS = {
    "plain": "200",
    "stream": "the whole stream",
    "background": "`completed`",
    "batch": "line 200",
}


def _fallback_cell(shape: Documented, modes: tuple[str, ...]) -> str:
    if shape.shape == "slow":
        return "not used"
    if shape.shape == "cut":
        return "nothing changes: content had reached the client"
    attempts = {"retried": ATTEMPTS, "open": 0}.get(shape.shape, 1)
    answers = ", ".join(_FALLBACK_ANSWERS[mode] for mode in modes)
    return (
        f"the fallback answers ({answers}), named in `model`; ledger: 200, served by the "
        f"fallback at its price, {attempts + 1} attempt{'s' if attempts else ''}"
    )


def operations_table() -> str:
    """The table of docs/operations.md, one line per row."""
    header = (
        "| Fault | Attempts | Circuit after | Plain | Stream | Background | Batch | "
        "Ledger row | With a fallback |"
    )
    lines = [header, "|" + "---|" * 9]
    for label, kind, modes in TABLE_ROWS:
        shape = documented(kind, modes[0])
        cells = [
            label,
            _attempts_cell(kind, shape),
            _circuit_cell(kind, shape),
            *(_client_cell(kind, mode, modes) for mode in MODES),
            _ledger_cell(shape),
            _fallback_cell(shape, modes),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # the table to paste into docs/operations.md
    print(operations_table())
