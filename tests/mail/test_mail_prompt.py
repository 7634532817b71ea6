"""as_prompt_text: the few headers a model needs, the attachments by name, the calendar events,
then the body (or the thread), never longer than asked."""

from __future__ import annotations

import pytest

from aiservice.mail import TRUNCATION_MARKER, MailMessage, as_prompt_text, read_message


def test_headers_attachment_names_then_the_new_text(sample):
    assert as_prompt_text(sample("attachment.eml")) == (
        "From: Claire Martin <claire.martin@exemple.fr>\n"
        "To: Paul Durand <paul.durand@acme.fr>\n"
        "Date: 2025-03-10T09:12:00+01:00\n"
        "Subject: Devis et plan d'accès\n"
        "Attachments (not included): unnamed image/png, devis été 2025.pdf, notes.txt\n"
        "\n"
        "Bonjour Paul,\n\nVous trouverez ci-joint le devis n° 2025-004512 et le plan d'accès."
        "\n\nBien à vous,\nClaire"
    )


def test_cc_is_shown_when_there_is_one(sample):
    prompt = as_prompt_text(sample("latin1_qp_fr.eml"))
    assert "\nCc: secretariat@exemple.fr\n" in prompt


def test_the_thread_is_given_only_when_asked(sample):
    message = sample("reply_thread_fr.eml")
    assert "a\nécrit :" not in as_prompt_text(message)
    assert as_prompt_text(message, include_thread=True).endswith("> Claire Martin")


def test_a_message_without_new_text_gives_its_thread():
    message = read_message(
        b"From: a@exemple.fr\nSubject: Fwd\n\n-----Original Message-----\nFrom: b\nSent: x\n\nOld"
    )
    assert as_prompt_text(message).endswith("-----Original Message-----\nFrom: b\nSent: x\n\nOld")


def test_calendar_events_are_summarised(sample):
    prompt = as_prompt_text(sample("invitation.eml"))
    assert (
        "Attachments (not included): invite.ics\n"
        "Event: Lancement du projet Atlas, phase 2 : planning et budget prévisionnel\n"
        "  When: 2025-03-18T14:00:00+01:00 to 2025-03-18T15:30:00+01:00 (Europe/Paris)\n"
        "  Where: Salle Clémence; 3e étage, 12 rue de la Paix, Paris\n"
        '  Organizer: "Martin, Claire" <claire.martin@exemple.fr>\n'
        "  Attendees: Paul Durand <paul.durand@acme.fr>, "
        "Hélène Lefèvre <helene.lefevre@exemple.fr>\n"
        "\nVous êtes invité(e)"
    ) in prompt


def test_a_cancelled_event_says_so():
    raw = (
        b"From: a@exemple.fr\nSubject: Annul\xc3\xa9\nContent-Type: text/calendar\n\n"
        b"BEGIN:VCALENDAR\nMETHOD:CANCEL\nBEGIN:VEVENT\nSUMMARY:Point\nEND:VEVENT\nEND:VCALENDAR\n"
    )
    assert as_prompt_text(read_message(raw)).endswith("\nCancelled event: Point")


def test_max_chars_cuts_at_a_line_boundary_with_a_marker(sample):
    message = sample("alternative.eml")
    whole = as_prompt_text(message)
    cut = as_prompt_text(message, max_chars=200)
    assert len(whole) > 200 >= len(cut)
    assert cut.endswith("\n" + TRUNCATION_MARKER)
    kept = cut.removesuffix("\n" + TRUNCATION_MARKER)
    assert whole.startswith(kept) and whole[len(kept)] == "\n"


def test_a_text_within_max_chars_is_unchanged(sample):
    message = sample("alternative.eml")
    whole = as_prompt_text(message)
    assert as_prompt_text(message, max_chars=len(whole)) == whole


def test_a_first_line_longer_than_max_chars_is_cut_inside_it():
    message = MailMessage(
        subject="s",
        sender="x" * 500,
        to=[],
        cc=[],
        date=None,
        message_id=None,
        body="b",
        thread="b",
    )
    cut = as_prompt_text(message, max_chars=80)
    assert len(cut) == 80 and cut.startswith("From: xxx") and cut.endswith(TRUNCATION_MARKER)


def test_a_max_chars_too_small_for_the_marker_is_refused(sample):
    with pytest.raises(ValueError, match="max_chars"):
        as_prompt_text(sample("alternative.eml"), max_chars=10)
