"""Which moderation and PII policy a request runs under: the client's `moderation` parameter
over the operator's policy (a key's, its user's, the config's), never weaker than it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiservice.governance.accounts import Principal
from aiservice.services.moderation_param import ModerationParam
from aiservice.settings import ModerationMode, PiiMode, Settings

_STRENGTH: dict[str, int] = {"off": 0, "score": 1, "block": 2}


@dataclass(frozen=True, slots=True)
class ContentPolicy:
    input: ModerationMode = "off"
    output: ModerationMode = "off"
    model: str | None = None  # the moderation model the client named
    pii: PiiMode = "off"

    @property
    def moderated(self) -> bool:
        return self.input != "off" or self.output != "off"

    def as_param(self) -> dict[str, Any] | None:
        """The policy as a client's `moderation` parameter: what a background job keeps, so
        that it runs under the policy it was accepted with."""
        if not self.moderated:
            return None
        sides = {
            side: {"mode": mode} for side, mode in (("input", self.input), ("output", self.output))
        }
        return {"model": self.model or "omni-moderation-latest", "policy": sides}


NO_POLICY = ContentPolicy()


def operator_modes(
    principal: Principal | None, settings: Settings
) -> tuple[ModerationMode, PiiMode]:
    """The operator's moderation and PII modes for this caller: the key's own, else its
    user's, else the configured defaults."""
    own = [principal.key_safety, principal.user_safety] if principal is not None else []
    own = [values for values in own if values]
    moderation = next((v["moderation"] for v in own if v.get("moderation")), None)
    pii = next((v["pii"] for v in own if v.get("pii")), None)
    return moderation or settings.moderation.mode, pii or settings.pii.mode


def content_policy(
    client: ModerationParam | None, moderation: ModerationMode, pii: PiiMode
) -> ContentPolicy:
    """The client's policy (a side it leaves out is scored), raised to the operator's mode."""
    if client is None:
        return ContentPolicy(moderation, moderation, None, pii)
    policy = client.policy
    asked_input = policy.input.mode if policy and policy.input else "score"
    asked_output = policy.output.mode if policy and policy.output else "score"
    return ContentPolicy(
        _stronger(asked_input, moderation), _stronger(asked_output, moderation), client.model, pii
    )


def _stronger(asked: ModerationMode, operator: ModerationMode) -> ModerationMode:
    return asked if _STRENGTH[asked] >= _STRENGTH[operator] else operator
