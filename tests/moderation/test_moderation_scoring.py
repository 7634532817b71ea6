"""Thresholds and the parent/child rules, on raw scores chosen by hand."""

from __future__ import annotations

from aiservice.moderation.categories import CATEGORIES
from aiservice.moderation.scoring import IMPLIES, THRESHOLDS, settle


def test_every_category_is_present_and_clipped_to_the_unit_interval() -> None:
    verdict = settle({"violence": 1.7, "hate": -0.2})
    assert set(verdict.scores) == set(CATEGORIES)
    assert verdict.scores["violence"] == 1.0 and verdict.scores["hate"] == 0.0


def test_a_score_at_its_threshold_is_flagged() -> None:
    assert settle({"sexual": THRESHOLDS["sexual"]}).categories["sexual"]
    assert not settle({"sexual": THRESHOLDS["sexual"] - 0.01}).flagged


def test_a_flagged_child_flags_its_parents_and_lifts_their_scores() -> None:
    for child, parents in IMPLIES.items():
        verdict = settle({child: 0.9})
        assert verdict.categories[child]
        for parent in parents:
            assert verdict.categories[parent] and verdict.scores[parent] == 0.9


def test_threatening_hate_is_violence_but_a_threat_to_a_person_need_not_be() -> None:
    assert settle({"hate/threatening": 0.8}).categories["violence"]
    assert not settle({"harassment/threatening": 0.8}).categories["violence"]


def test_a_parent_alone_flags_no_child() -> None:
    verdict = settle({"self-harm": 0.9})
    assert verdict.flagged_categories == ["self-harm"]
