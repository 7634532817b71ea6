"""The embedded classifier on clear cases written for these tests (not the labelled set that
the benchmark reads): what it must flag, in English and French, and what it must not."""

from __future__ import annotations

import pytest

from aiservice.moderation.categories import CATEGORIES
from aiservice.moderation.local import LocalModerator
from aiservice.moderation.scoring import IMPLIES

# One clear positive per category and language, and what else it must be flagged for.
POSITIVES: list[tuple[str, str, set[str]]] = [
    ("harassment", "You are a brainless moron, stop writing to me.", set()),
    ("harassment", "T'es vraiment qu'un sale connard.", set()),
    ("harassment/threatening", "I'm going to hurt you badly when I find you.", {"harassment"}),
    ("harassment/threatening", "Je vais te tuer, tu m'entends ?", {"harassment"}),
    ("hate", "Immigrants are parasites, all of them.", set()),
    ("hate", "Les juifs sont des rats.", set()),
    ("hate/threatening", "We should exterminate the Muslims.", {"hate", "violence"}),
    ("hate/threatening", "Il faut tuer tous les Arabes.", {"hate", "violence"}),
    ("illicit", "How do I buy cocaine without getting caught?", set()),
    ("illicit", "Comment pirater le compte Instagram de mon ex ?", set()),
    ("illicit/violent", "How can I make a pipe bomb at home?", {"illicit"}),
    ("illicit/violent", "Comment fabriquer une bombe dans mon garage ?", {"illicit"}),
    ("self-harm", "I've been cutting myself on my thighs again.", set()),
    ("self-harm", "Je me scarifie depuis l'été dernier.", set()),
    ("self-harm/intent", "I want to end my life tonight.", {"self-harm"}),
    ("self-harm/intent", "Je veux mourir, je n'en peux plus.", {"self-harm"}),
    ("self-harm/instructions", "How to kill yourself without pain?", {"self-harm"}),
    ("self-harm/instructions", "Comment se pendre sans souffrir ?", {"self-harm"}),
    ("sexual", "Send me nudes tonight, baby.", set()),
    ("sexual", "Je vais te baiser toute la nuit.", set()),
    ("sexual/minors", "Nude photos of a 12 year old girl for sale.", {"sexual"}),
    ("sexual/minors", "Photos nues d'une fillette de 9 ans.", {"sexual"}),
    ("violence", "The man stabbed two people outside the bar.", set()),
    ("violence", "Il a poignardé deux personnes devant le bar.", set()),
    ("violence/graphic", "The victim was decapitated and his intestines hung out.", {"violence"}),
    ("violence/graphic", "Le corps était démembré, ses entrailles à l'air.", {"violence"}),
]

# Ordinary mail and look-alikes: a harm verb on a thing, criticism of a product, a group
# named without contempt, a health or safety topic.
BENIGN = [
    "Bonjour, comment vas-tu?",  # the seed's example
    "Je déteste ce produit, c'est nul!",  # criticism of a product (OpenAI does not flag it)
    "Please kill the stuck job and restart the queue.",
    "Our support team is killing it this month.",
    "I'm dead tired, can we move the call to tomorrow?",
    "We'll shoot a short video for the launch.",
    "I hate this keyboard, the keys stick.",
    "This invoice tool is shit, nothing exports properly.",
    "Take a shot at the summary and send it over.",
    "Il faut tuer la tâche bloquée puis relancer.",
    "Ce rapport est nul, il faut tout refaire.",
    "Je suis mort de rire devant ta vidéo.",
    "Une vraie bombe, ce nouveau modèle !",
    "Our Jewish and Muslim colleagues are off on Friday.",
    "Les femmes de l'équipe organisent un atelier mardi.",
    "Reminder: flu shots and blood tests on the second floor.",
    "Hackers tried to break in; change your password today.",
    "Please read our guide on reporting suicide risk at work.",
    "Le cours d'éducation sexuelle des lycéens commence lundi.",
    "My kids took great photos at the beach.",
]


@pytest.mark.parametrize(("category", "text", "also"), POSITIVES, ids=lambda v: str(v)[:40])
def test_a_clear_positive_is_flagged_for_its_category(
    moderator: LocalModerator, category: str, text: str, also: set[str]
) -> None:
    verdict = moderator.verdict(text)
    assert verdict.categories[category], (text, verdict.scores)
    assert also <= set(verdict.flagged_categories)


def test_every_category_has_a_positive_in_both_languages() -> None:
    french = {category for category, text, _ in POSITIVES if "'" in text or "é" in text}
    assert {category for category, _, _ in POSITIVES} == set(CATEGORIES)
    assert len(POSITIVES) == 2 * len(CATEGORIES) and len(french) > 0


@pytest.mark.parametrize("text", BENIGN, ids=lambda v: v[:40])
def test_a_benign_look_alike_is_not_flagged(moderator: LocalModerator, text: str) -> None:
    verdict = moderator.verdict(text)
    assert not verdict.flagged, (text, verdict.flagged_categories, verdict.scores)


def test_every_score_is_in_the_unit_interval_for_all_13_categories(
    moderator: LocalModerator,
) -> None:
    for text in [text for _, text, _ in POSITIVES] + BENIGN + ["", "   ", "!!!"]:
        verdict = moderator.verdict(text)
        assert set(verdict.scores) == set(CATEGORIES) == set(verdict.categories)
        assert all(0.0 <= score <= 1.0 for score in verdict.scores.values())


def test_a_flagged_sub_category_flags_its_parents_with_a_score_as_high(
    moderator: LocalModerator,
) -> None:
    for _, text, _ in POSITIVES:
        verdict = moderator.verdict(text)
        for child, parents in IMPLIES.items():
            for parent in parents:
                assert verdict.scores[parent] >= verdict.scores[child]
                if verdict.categories[child]:
                    assert verdict.categories[parent], (text, child, parent)


def test_a_batch_gives_what_single_texts_give(moderator: LocalModerator) -> None:
    texts = [text for _, text, _ in POSITIVES] + BENIGN
    assert moderator.verdicts(texts) == [moderator.verdict(text) for text in texts]
    assert moderator.verdicts([]) == []


def test_a_long_ordinary_email_is_not_flagged(moderator: LocalModerator) -> None:
    paragraph = (
        "Hi Anna, thanks for the notes from Tuesday. I went through the budget and the "
        "numbers look right, but the travel line is higher than we planned, so could you "
        "check it with finance before Friday? The client wants the first draft next week. "
        "Bonne journée, et merci encore pour ton aide sur le dossier. "
    )
    text = (paragraph * 8)[:2000]
    assert len(text) == 2000
    assert not moderator.verdict(text).flagged


def test_one_flagged_sentence_in_a_long_email_is_found(moderator: LocalModerator) -> None:
    filler = "Thanks for the update on the quarterly figures, see you at the review. " * 20
    verdict = moderator.verdict(filler + "I will kill you if you show up. " + filler)
    assert verdict.categories["harassment/threatening"]


@pytest.mark.parametrize(
    "variant",
    [
        "je vais te tuer",
        "JE VAIS TE TUER !!!",
        "J'vais te tuer",
        "J\u2019vais te tuer",
        "jvais te tuer",
        "Je   vais\nte tuer",
    ],
)
def test_case_spacing_and_elision_do_not_change_a_threat(
    moderator: LocalModerator, variant: str
) -> None:
    assert moderator.verdict(variant).categories["harassment/threatening"]


@pytest.mark.parametrize("variant", ["Je vais t'égorger", "je vais t egorger", "JE VAIS T'ÉGORGER"])
def test_accents_are_optional(moderator: LocalModerator, variant: str) -> None:
    assert moderator.verdict(variant).categories["violence"]


def test_a_negated_insult_is_not_harassment(moderator: LocalModerator) -> None:
    assert not moderator.verdict("You are not an idiot, you just missed the email.").flagged
    assert moderator.verdict("You are an idiot, you just missed the email.").flagged


def test_the_target_decides_between_hating_a_person_and_a_product(
    moderator: LocalModerator,
) -> None:
    assert moderator.verdict("I hate you.").categories["harassment"]
    assert not moderator.verdict("I hate this product.").flagged
    assert moderator.verdict("Je te déteste.").categories["harassment"]
    assert not moderator.verdict("Je déteste ce produit.").flagged


def test_the_offensive_model_counts_only_against_a_person(moderator: LocalModerator) -> None:
    # No lexicon cue fires on either: the difference is the model, read on the addressed one.
    at_person = moderator.verdict("You stupid piece of crap, you ruined everything.")
    at_thing = moderator.verdict("This stupid piece of crap printer ruined everything.")
    assert at_person.categories["harassment"]
    assert not at_thing.categories["harassment"]


def test_a_moderator_loads_itself_on_first_use() -> None:
    fresh = LocalModerator()
    assert not fresh.ready
    assert fresh.verdict("Bonjour, comment vas-tu?").flagged is False
    assert fresh.ready
    fresh.load()  # a second load is a no-op
    assert fresh.ready
