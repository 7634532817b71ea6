"""The body is the new text only: quoted lines, attributions and what follows them, Outlook's
copied header blocks and signatures are cut, while the thread keeps everything. Where a cut is
uncertain, the text stays."""

from __future__ import annotations

import pytest

from aiservice.mail import read_message
from aiservice.mail.history import without_history
from aiservice.mail.signatures import without_signature


def test_a_french_reply_keeps_only_the_new_text(sample):
    message = sample("reply_thread_fr.eml")
    assert message.body == (
        "Bonjour Claire,\n\nC'est noté : la livraison du lot 2 se fera le 17 mars. Je vous "
        "envoie le\nbon de commande signé dans la journée.\n\nPaul"
    )


def test_the_thread_keeps_the_history_and_the_signature(sample):
    thread = sample("reply_thread_fr.eml").thread
    assert (
        "Le lun. 10 mars 2025 à 09:12, Claire Martin <claire.martin@exemple.fr> a\nécrit :"
        in thread
    )
    assert "> > Où en est la livraison du lot 2 ?" in thread
    assert "-- \nPaul Durand\nService achats, ACME" in thread


def test_an_outlook_forward_is_cut_at_the_rule_above_its_header_block(sample):
    message = sample("outlook_forward.eml")
    assert message.body == (
        "Pour info : voici le devis de Claire, à valider avant vendredi.\n"
        "Le montant total est de 12 480 € HT, livraison comprise.\n\nCordialement,\nPaul Durand"
    )
    assert "De : Claire Martin <claire.martin@exemple.fr>\nEnvoyé : lundi" in message.thread


def test_an_html_quote_is_cut_like_a_plain_one(sample):
    message = sample("html_only.eml")
    assert message.body.endswith("Kind regards,\nThe Billing Team")
    assert "> Hello, where can I find my invoice?" in message.thread


@pytest.mark.parametrize(
    "history",
    [
        "On Mon, Mar 10, 2025 at 9:12 AM Claire <claire@exemple.fr> wrote:\n> Old text",
        # Wrapped by the client over two lines, and without quote marks below.
        "On Mon, Mar 10, 2025 at 9:12 AM Claire Martin <\nclaire@exemple.fr> wrote:\n\nOld text",
        "Le 10 mars 2025 à 09:12, Claire a écrit\u00a0:\n> Ancien texte",
        "Am 10.03.2025 um 09:12 schrieb Claire Martin <claire@exemple.fr>:\n> Alter Text",
        "El lun, 10 mar 2025 a las 9:12, Claire escribió:\n> Texto antiguo",
        "-----Original Message-----\nFrom: Claire\nSent: Monday\nSubject: Old\n\nOld text",
        "-----Message d'origine-----\nDe : Claire\nEnvoyé : lundi\n\nAncien texte",
        "---------- Forwarded message ---------\nFrom: Claire <c@exemple.fr>\nDate: Mon\n\nOld",
        "From: Claire Martin <c@exemple.fr>\nSent: Monday, March 10, 2025 9:12 AM\nTo: Paul\n"
        "Subject: Old\n\nOld",
        "*From:* Claire Martin\n*Sent:* Monday\n*Subject:* Old\n\nOld",
        "Begin forwarded message:\n\nFrom: Claire\nSubject: Old\n\nOld",
    ],
)
def test_each_kind_of_history_is_cut_with_everything_after_it(history: str):
    assert (
        without_history("New text here.\n\n" + history + "\n\nMore old text.") == "New text here."
    )


def test_quoted_lines_go_wherever_they_are():
    text = "> an old line at the top\nMy answer.\n>> deeper\n> and more\nThe end."
    assert without_history(text) == "My answer.\nThe end."


def test_answers_between_quotes_are_kept_and_their_attribution_dropped():
    text = (
        "On Mon, Mar 10, 2025, Claire <c@exemple.fr> wrote:\n> Can you come on Thursday?\n"
        "Yes, at ten.\n> Will you bring the contract?\nI will.\n"
    )
    assert without_history(text) == "Yes, at ten.\nI will."


@pytest.mark.parametrize(
    "text",
    [
        "From: the whole team, thank you.\nWe are happy.",
        "On Monday we meet.\nPaul wrote: the minutes are ready.",
        "Le planning a changé.\nLe projet avance.",
        "Date: to be decided.",
        "Your journey:\nFrom: Paris Gare de Lyon\nTo: Lyon Part-Dieu\nDate: 18 March, 14:04",
    ],
)
def test_ordinary_sentences_that_look_like_history_are_kept(text: str):
    assert without_history(text) == text


def test_a_signature_after_the_delimiter_is_cut():
    assert without_signature("See you.\n-- \nPaul Durand\n+33 6 12 34 56 78") == "See you."
    # Clients that trim trailing spaces leave "--".
    assert without_signature("See you.\n--\nPaul") == "See you."


def test_a_long_block_after_a_delimiter_is_not_taken_for_a_signature():
    text = "Intro\n--\n" + "\n".join(f"Point {n} of the agenda" for n in range(25))
    assert without_signature(text) == text


@pytest.mark.parametrize(
    "footer", ["Sent from my iPhone", "Envoyé de mon iPad", "Get Outlook for Android"]
)
def test_a_mobile_footer_is_cut(footer: str):
    assert without_signature(f"On my way.\n\n{footer}\n") == "On my way."


def test_the_contact_block_under_a_sign_off_and_name_is_cut(sample):
    message = sample("alternative.eml")
    assert message.body.endswith(
        "Could you send me your slides by Wednesday noon?\n\nBest regards,\nSarah Collins"
    )
    assert "+1 212 555 0147" in message.thread


@pytest.mark.parametrize(
    "text",
    [
        # No phone, address or link below the name: nothing says it is a signature.
        "Thanks\nI will send the file tomorrow.\nAnd the invoice",
        # A postscript with a phone number is still the message.
        "Merci\nClaire\n\nP.S. call me at 06 12 34 56 78",
        # A sentence below the name.
        "Regards,\nAnn\nPlease reply to ann@exemple.fr before Friday.",
        # Too long to be a contact block.
        "Cheers,\nBo\n" + "\n".join(f"line {n} +33 6 12 34 56 7{n}" for n in range(8)),
    ],
)
def test_text_under_a_sign_off_that_is_not_clearly_a_signature_is_kept(text: str):
    assert without_signature(text) == text


def test_a_forward_without_a_note_has_an_empty_body_and_a_full_thread():
    raw = (
        b"From: a@exemple.fr\nSubject: Fwd: plan\n\n"
        b"---------- Forwarded message ---------\nFrom: b@exemple.fr\nDate: Mon\n\nThe plan.\n"
    )
    message = read_message(raw)
    assert message.body == ""
    assert message.thread.endswith("The plan.")


def test_an_attribution_cut_short_by_the_end_of_the_text_is_kept():
    assert without_history("Hello.\nOn Monday, at the office") == "Hello.\nOn Monday, at the office"
