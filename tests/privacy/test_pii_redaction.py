"""Redactor: typed, numbered placeholders that stay the same for one value across the messages
of a request, counts without values, and restoring the originals in the answer."""

from __future__ import annotations

from aiservice.privacy import Redactor

MAIL = (
    "Bonjour,\n\nVous pouvez me joindre au 06 12 34 56 78 ou à claire@exemple.fr. "
    "Le remboursement se fait sur FR76 3000 6000 0112 3456 7890 189, pas sur la carte "
    "4111 1111 1111 1111. Connexion depuis 203.0.113.7.\n\nClaire"
)


def test_each_kind_gets_its_typed_numbered_placeholder():
    redacted = Redactor().redact(MAIL)
    assert redacted == (
        "Bonjour,\n\nVous pouvez me joindre au <PHONE_1> ou à <EMAIL_1>. "
        "Le remboursement se fait sur <IBAN_1>, pas sur la carte <CARD_1>. "
        "Connexion depuis <IP_1>.\n\nClaire"
    )


def test_distinct_values_of_a_kind_are_numbered_in_order():
    redacted = Redactor().redact("a@exemple.fr, b@exemple.fr, puis c@exemple.fr")
    assert redacted == "<EMAIL_1>, <EMAIL_2>, puis <EMAIL_3>"


def test_the_same_value_keeps_its_placeholder_across_messages_and_spellings():
    redactor = Redactor()
    first = redactor.redact("Écrivez à Claire@Exemple.fr ou au 06 12 34 56 78.")
    second = redactor.redact("Relance : claire@exemple.fr, +33 6 12 34 56 78, paul@exemple.fr")
    assert first == "Écrivez à <EMAIL_1> ou au <PHONE_1>."
    assert second == "Relance : <EMAIL_1>, <PHONE_1>, <EMAIL_2>"
    # Restoring gives back the first spelling seen.
    assert redactor.restore("<EMAIL_1> / <PHONE_1>") == "Claire@Exemple.fr / 06 12 34 56 78"


def test_a_spaced_and_a_compact_iban_are_one_value():
    redactor = Redactor()
    text = "FR76 3000 6000 0112 3456 7890 189 = FR7630006000011234567890189"
    assert redactor.redact(text) == "<IBAN_1> = <IBAN_1>"


def test_counts_are_findings_by_kind_and_hold_no_value():
    redactor = Redactor()
    redactor.redact(MAIL)
    redactor.redact("encore claire@exemple.fr et jean@exemple.fr")
    assert redactor.counts == {"PHONE": 1, "EMAIL": 3, "IBAN": 1, "CARD": 1, "IP": 1}
    assert all(isinstance(kind, str) and type(n) is int for kind, n in redactor.counts.items())


def test_a_text_without_pii_is_unchanged_and_counts_nothing():
    redactor = Redactor()
    text = "Merci pour votre commande n° 2025-004512 du 12/03/2025 (1 234,56 €)."
    assert redactor.redact(text) == text
    assert redactor.counts == {}
    assert redactor.restore(text) == text


def test_restore_puts_back_every_placeholder_the_model_echoed():
    redactor = Redactor()
    redactor.redact(MAIL)
    answer = "Je note <EMAIL_1> et <PHONE_1> ; virement vers <IBAN_1>, <EMAIL_1> en copie."
    assert redactor.restore(answer) == (
        "Je note claire@exemple.fr et 06 12 34 56 78 ; virement vers "
        "FR76 3000 6000 0112 3456 7890 189, claire@exemple.fr en copie."
    )


def test_restore_leaves_unknown_and_inexact_placeholders_alone():
    redactor = Redactor()
    redactor.redact("claire@exemple.fr")
    answer = "<EMAIL_9>, <email_1>, <EMAIL_01>, < EMAIL_1>, <EMAIL_1 >, <NAME_1>, <EMAIL_1>"
    assert redactor.restore(answer) == (
        "<EMAIL_9>, <email_1>, <EMAIL_01>, < EMAIL_1>, <EMAIL_1 >, <NAME_1>, claire@exemple.fr"
    )


def test_a_paraphrased_placeholder_is_not_restored():
    redactor = Redactor()
    redactor.redact("claire@exemple.fr")
    assert redactor.restore("the first e-mail address") == "the first e-mail address"


def test_a_placeholder_the_client_wrote_is_skipped_by_the_numbering():
    redactor = Redactor()
    redacted = redactor.redact("Remplacez <EMAIL_1> par paul@exemple.fr")
    assert redacted == "Remplacez <EMAIL_1> par <EMAIL_2>"
    # The client's own word comes back as it was; ours gets its original back.
    assert redactor.restore("<EMAIL_1> -> <EMAIL_2>") == "<EMAIL_1> -> paul@exemple.fr"


def test_a_clients_placeholder_in_a_later_message_is_renamed_and_restored_as_written():
    redactor = Redactor()
    assert redactor.redact("mon adresse : paul@exemple.fr") == "mon adresse : <EMAIL_1>"
    # <EMAIL_1> already means paul@exemple.fr, so the client's literal word gets its own.
    assert redactor.redact("le modèle a écrit <EMAIL_1>") == "le modèle a écrit <EMAIL_2>"
    assert redactor.restore("<EMAIL_1> / <EMAIL_2>") == "paul@exemple.fr / <EMAIL_1>"
    assert redactor.counts == {"EMAIL": 1}


def test_redact_all_reserves_the_placeholders_of_every_message_first():
    redactor = Redactor()
    messages = ["écrivez à paul@exemple.fr", "et pas à <EMAIL_1>"]
    assert redactor.redact_all(messages) == ["écrivez à <EMAIL_2>", "et pas à <EMAIL_1>"]
    assert redactor.restore("<EMAIL_1>, <EMAIL_2>") == "<EMAIL_1>, paul@exemple.fr"


def test_an_original_that_looks_like_a_placeholder_is_restored_once():
    redactor = Redactor()
    redactor.redact("paul@exemple.fr")
    redactor.redact("<EMAIL_1>")  # renamed <EMAIL_2>, whose original is the word "<EMAIL_1>"
    assert redactor.restore("<EMAIL_2>") == "<EMAIL_1>"


def test_the_default_region_reads_national_numbers():
    redactor = Redactor(default_region="GB")
    assert redactor.redact("Ring 020 7946 0958") == "Ring <PHONE_1>"


def test_two_redactors_share_nothing():
    first, second = Redactor(), Redactor()
    first.redact("a@exemple.fr")
    assert second.redact("b@exemple.fr") == "<EMAIL_1>"
    assert second.restore("<EMAIL_1>") == "b@exemple.fr"
    assert first.restore("<EMAIL_1>") == "a@exemple.fr"
