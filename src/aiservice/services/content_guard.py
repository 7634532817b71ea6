"""Moderation around a model request: the policy it runs under, its input checked before any
model work, its output checked as it is produced; what is flagged is counted and logged
without its text."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiservice.errors import AIServiceError, ContentPolicyViolation, ServiceUnavailable
from aiservice.governance.accounts import Principal
from aiservice.moderation.categories import Verdict
from aiservice.observability.metrics import ServiceMetrics
from aiservice.providers.base import PreparedGeneration
from aiservice.services.content_policy import ContentPolicy, content_policy, operator_modes
from aiservice.services.moderated_generation import (
    ModeratedGeneration,
    ModerationFailure,
    ModerationReport,
)
from aiservice.services.moderation_param import ModerationParam
from aiservice.services.moderations import ModerationService
from aiservice.services.pii_screen import PiiScreen
from aiservice.settings import Settings

log = logging.getLogger(__name__)


class ContentGuard:
    """The content policy of model requests: moderation, and the PII screen (`pii`)."""

    def __init__(
        self,
        moderation: ModerationService,
        settings: Settings,
        metrics: ServiceMetrics | None = None,
    ):
        self.moderation = moderation
        self.pii = PiiScreen(settings.pii, metrics)
        self._settings = settings
        self._metrics = metrics

    def policy(self, client: ModerationParam | None, principal: Principal | None) -> ContentPolicy:
        moderation, pii = operator_modes(principal, self._settings)
        policy = content_policy(client, moderation, pii)
        if policy.model is not None:
            self.moderation.check_model(policy.model, "moderation.model")
        return policy

    async def check_input(
        self, policy: ContentPolicy, text_of: Callable[[], str], param: str
    ) -> ModerationReport | None:
        """The report of a moderated request with its input's verdict (`text_of()`, built
        only for a moderated request); in block mode a flagged input (or one moderation could
        not check) is refused here."""
        if not policy.moderated:
            return None
        text = text_of()
        report = ModerationReport(self.moderation.model)
        block = policy.input == "block"
        try:
            scored = await self.moderation.classify([text], policy.model)
        except AIServiceError as exc:
            if block:
                raise ServiceUnavailable(
                    "Moderation is unavailable, and this request's policy blocks what it "
                    "cannot check.",
                    code="moderation_unavailable",
                ) from None
            report.input = ModerationFailure.of(exc)
            return report
        report.model, report.input = scored.model, scored.verdicts[0]
        verdict = scored.verdicts[0]
        if verdict.flagged:
            self._flagged(verdict, "input", block)
            if block:
                raise ContentPolicyViolation(
                    "The request was refused by moderation: its input was flagged for "
                    f"{', '.join(verdict.flagged_categories)}.",
                    param=param,
                )
        return report

    def moderated(
        self,
        generation: PreparedGeneration,
        policy: ContentPolicy,
        report: ModerationReport | None,
    ) -> PreparedGeneration:
        """`generation` with its output moderated, if the policy says so."""
        if report is None:
            return generation

        async def judge(text: str) -> Verdict:
            return (await self.moderation.classify([text], policy.model)).verdicts[0]

        return ModeratedGeneration(
            generation,
            judge,
            report,
            block=policy.output == "block",
            on_flagged=lambda verdict, block: self._flagged(verdict, "output", block),
        )

    def _flagged(self, verdict: Verdict, side: str, blocked: bool) -> None:
        action = "blocked" if blocked else "scored"
        categories = verdict.flagged_categories
        if self._metrics is not None:
            self._metrics.observe_moderation(categories, side, action)
        log.info(
            "moderation flagged", extra={"side": side, "action": action, "categories": categories}
        )
