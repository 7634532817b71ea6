"""find_pii on the texts of an e-mail manager's users, in French and English: each kind found
where it is, and the numbers that only look like one (dates, prices, orders) left alone."""

from __future__ import annotations

import itertools

import pytest

from aiservice.privacy import Finding, PiiKind, canonical_value, find_pii


def found(text: str, default_region: str = "FR") -> list[tuple[str, str]]:
    return [(finding.kind, finding.text) for finding in find_pii(text, default_region)]


def test_a_finding_is_where_its_text_is_and_its_repr_does_not_show_the_text():
    text = "Écrivez-moi à claire.martin@exemple.fr avant lundi."
    [finding] = find_pii(text)
    assert finding == Finding(PiiKind.EMAIL, 14, 38, "claire.martin@exemple.fr")
    assert text[finding.start : finding.end] == finding.text
    assert "claire" not in repr(finding)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("Bonjour, mon adresse est jean-luc.dupont@orange.fr, merci.", "jean-luc.dupont@orange.fr"),
        ("Please reply to ops+billing@example.co.uk.", "ops+billing@example.co.uk"),
        ("Répondre à <Frédéric.Lefèvre@société.fr>", "Frédéric.Lefèvre@société.fr"),
        ("mailto:contact@acme-corp.com?subject=Devis", "contact@acme-corp.com"),
        ("Envoyé par 0612345678@sms.free.fr", "0612345678@sms.free.fr"),
    ],
)
def test_email_addresses_in_french_and_english_mails(text, address):
    assert found(text) == [("EMAIL", address)]


def test_what_is_not_an_email_address():
    assert found("Rendez-vous @ 14h, voir @alice sur Slack, ou user@localhost.") == []


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("Appelez-moi au 06 12 34 56 78 demain matin.", "06 12 34 56 78"),
        ("Mon portable : +33 6 12 34 56 78.", "+33 6 12 34 56 78"),
        ("Standard : 01.23.45.67.89 (9h-18h)", "01.23.45.67.89"),
        ("Tél. : +33 (0)1 23 45 67 89", "+33 (0)1 23 45 67 89"),
        ("Tel:0612345678", "0612345678"),
        ("depuis l'étranger : 0033 6 12 34 56 78", "0033 6 12 34 56 78"),
        ("Call our London office on +44 20 7946 0958 today.", "+44 20 7946 0958"),
        ("Our US line is +1 (201) 555-0123.", "+1 (201) 555-0123"),
        ("or +1 201-555-0123, ext. 4, all day", "+1 201-555-0123, ext. 4"),  # with its extension
        ("tél\u00a0: 06\u00a012\u00a034\u00a056\u00a078", "06\u00a012\u00a034\u00a056\u00a078"),
        ("tél\u202f: 06\u202f12\u202f34\u202f56\u202f78", "06\u202f12\u202f34\u202f56\u202f78"),
    ],
)
def test_phone_numbers_french_formats_and_international_ones(text, number):
    assert found(text) == [("PHONE", number)]


def test_national_numbers_are_read_in_the_default_region():
    # Without +, a British number is only a number in Britain.
    assert found("Ring me on 020 7946 0958.") == []
    assert found("Ring me on 020 7946 0958.", default_region="GB") == [("PHONE", "020 7946 0958")]


def test_two_numbers_in_a_signature_are_two_findings():
    text = "Portable : 06 12 34 56 78 / Fixe : 04 72 00 00 00"
    assert found(text) == [("PHONE", "06 12 34 56 78"), ("PHONE", "04 72 00 00 00")]


@pytest.mark.parametrize(
    "text",
    [
        "Rendez-vous le 12/03/2025 à 14:30.",
        "du 01/02/2024 au 03/04/2024",
        "le 31/12/2025 23:59:59, puis le 12.03.2025 et le 2025-03-12",
        "à 14h30 ou 14:30:00",
        "Total : 1 234,56 € TTC",
        "Montant : 1\u202f234\u202f567,89 EUR, soit $1,234,567.89",
        "Votre commande n° 2025-004512 est expédiée.",
        "Order #123456789 has shipped.",
        "Facture FA-2025-000123 du 12/03/2025",
        "Invoice INV-20250312-0042, ticket #4521987",
        "Amazon order 405-1234567-1234567",
        "75008 Paris, SIREN 732 829 320",
        "N° de sécurité sociale : 1 85 05 78 006 084 36",
        "ISBN 978-2-07-036822-8, chèque n° 1234567",
        "Python 3.11.7, version 10.0.19045.3693",
        "numéro de suivi 6A12345678901, colis 1Z999AA10123456784",
        "tél 06 12 34 56",  # one pair short
    ],
)
def test_dates_times_prices_and_reference_numbers_are_not_pii(text):
    assert found(text) == []


@pytest.mark.parametrize(
    ("text", "iban"),
    [
        (
            "IBAN : FR76 3000 6000 0112 3456 7890 189, BIC BNPAFRPP",
            "FR76 3000 6000 0112 3456 7890 189",
        ),
        ("IBAN FR7630006000011234567890189 merci", "FR7630006000011234567890189"),
        ("RIB : FR76 30006 00001 12345678901 89", "FR76 30006 00001 12345678901 89"),
        ("Konto DE89 3704 0044 0532 0130 00.", "DE89 3704 0044 0532 0130 00"),
        ("Konto DE89370400440532013000.", "DE89370400440532013000"),
        ("Pay to GB29 NWBK 6016 1331 9268 19 by Friday.", "GB29 NWBK 6016 1331 9268 19"),
        ("Pay to GB29NWBK60161331926819 by Friday.", "GB29NWBK60161331926819"),
        (
            "IBAN\u00a0: FR14\u00a02004\u00a01010\u00a00505\u00a00001\u00a03M02\u00a0606",
            "FR14\u00a02004\u00a01010\u00a00505\u00a00001\u00a03M02\u00a0606",
        ),
        ("iban fr76 3000 6000 0112 3456 7890 189", "fr76 3000 6000 0112 3456 7890 189"),
    ],
)
def test_ibans_with_and_without_spaces(text, iban):
    assert found(text) == [("IBAN", iban)]


@pytest.mark.parametrize(
    "text",
    [
        "FR77 3000 6000 0112 3456 7890 189",  # check digits off by one
        "DE88 3704 0044 0532 0130 00",
        "GB29 NWBK 6016 1331 9268 18",  # last digit changed
        "FR76 3000 6000 0112 3456 7890 1890",  # one character too many for France
        "FR76 3000 6000 0112 3456 7890 18",  # one too few
        "ZZ76 3000 6000 0112 3456 7890 189",  # no such country
        "XFR76 3000 6000 0112 3456 7890 189",  # inside a word
    ],
)
def test_ibans_with_bad_check_digits_or_length_are_not_flagged(text):
    assert found(text) == []


def test_an_iban_ends_where_its_country_says_even_before_another_word():
    text = "FR76 3000 6000 0112 3456 7890 189 12 mars, DE89 3704 0044 0532 0130 00"
    assert found(text) == [
        ("IBAN", "FR76 3000 6000 0112 3456 7890 189"),
        ("IBAN", "DE89 3704 0044 0532 0130 00"),
    ]


@pytest.mark.parametrize(
    ("text", "card"),
    [
        ("Carte Visa 4111 1111 1111 1111, exp. 12/26", "4111 1111 1111 1111"),
        ("card 4242424242424242 cvc 123", "4242424242424242"),
        ("Mastercard 5555-5555-5555-4444.", "5555-5555-5555-4444"),
        ("Mastercard 2223 0031 2200 3222", "2223 0031 2200 3222"),
        ("Amex 3782 822463 10005", "3782 822463 10005"),
        ("carte 4111\u00a01111\u00a01111\u00a01111", "4111\u00a01111\u00a01111\u00a01111"),
    ],
)
def test_card_numbers_of_the_networks(text, card):
    assert found(text) == [("CARD", card)]


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # Luhn-invalid
        "5555 5555 5555 4445",
        "94111111111111111",  # 4111111111111111 is a slice of a longer unbroken number
        "4111111111111111123",  # the same with three digits after
        "4111-1111 1111-1111",  # mixed separators
        "SIRET 412 345 678 00012",  # Luhn-valid, grouped 3 3 3 5 like a SIRET
        "81234567800013",  # Luhn-valid, but 8 starts no card network's numbers
    ],
)
def test_numbers_that_are_not_card_numbers(text):
    assert found(text) == []


@pytest.mark.parametrize(
    ("text", "card"),
    [
        ("carte 4111 1111 1111 1111 123", "4111 1111 1111 1111"),  # its security code after it
        ("carte 4111 1111 1111 1111 1226 (fin 12/26)", "4111 1111 1111 1111"),
        ("IP 1.2.3.4 4111111111111111", "4111111111111111"),
        ("réf 12 4111-1111-1111-1111", "4111-1111-1111-1111"),
    ],
)
def test_a_card_number_next_to_other_digit_groups_is_still_found(text, card):
    # A card is whole groups of a run of digit groups: "4111 1111 1111 1111 123" fails Luhn
    # as 19 digits, but its first 16 are the card.
    assert found(text)[-1:] == [("CARD", card)]


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("Connexion depuis 192.168.1.10 à 3h du matin.", "192.168.1.10"),
        ("Login from 203.0.113.7:8443 blocked.", "203.0.113.7"),
        ("réseau 10.0.0.0/8", "10.0.0.0"),
        ("IPv6 : 2001:db8::1.", "2001:db8::1"),
        ("from [2001:db8:85a3::8a2e:370:7334]:443", "2001:db8:85a3::8a2e:370:7334"),
        (
            "full 2001:0db8:0000:0000:0000:ff00:0042:8329 here",
            "2001:0db8:0000:0000:0000:ff00:0042:8329",
        ),
        ("mapped ::ffff:192.0.2.1 too", "::ffff:192.0.2.1"),
        ("link-local fe80::1ff:fe23:4567:890a:", "fe80::1ff:fe23:4567:890a"),
    ],
)
def test_ipv4_and_ipv6_addresses(text, address):
    assert found(text) == [("IP", address)]


def test_a_four_part_version_number_is_an_ipv4_address():
    # "1.2.3.4" is a valid address whatever the word before it says; the docs say so.
    assert found("version 1.2.3.4") == [("IP", "1.2.3.4")]
    assert found("v1.2.3.4, 1.2.3.4.5, 1.2.3") == []


@pytest.mark.parametrize(
    "text",
    [
        "256.1.1.1 and 1.2.3.999",  # octets out of range
        "01.02.03.04",  # leading zeros: the stdlib refuses them
        "à 12:30:45, MAC 00:1A:2B:3C:4D:5E",
        "std::vector, a :: b, fe80::1g",
        "1:2:3:4:5:6:7:8:9",  # nine groups
    ],
)
def test_what_is_not_an_ip_address(text):
    assert found(text) == []


def test_an_email_address_beats_the_phone_number_in_it():
    assert found("SMS : 0612345678@sms.fr") == [("EMAIL", "0612345678@sms.fr")]


def test_an_iban_beats_a_phone_number_inside_it():
    text = "IBAN FR76 3000 6000 0112 3456 7890 189"
    kinds = {finding.kind for finding in find_pii(text)}
    assert kinds == {PiiKind.IBAN}


def test_a_phone_number_right_after_an_iban_or_a_card_is_still_found():
    text = "FR76 3000 6000 0112 3456 7890 189 06 12 34 56 78, 4111 1111 1111 1111 0612345678"
    assert [kind for kind, _ in found(text)] == ["IBAN", "PHONE", "CARD", "PHONE"]


def test_an_ipv6_address_with_an_ipv4_tail_is_one_finding():
    assert found("::ffff:192.0.2.1") == [("IP", "::ffff:192.0.2.1")]


def test_every_kind_in_one_mail_in_order():
    mail = (
        "Bonjour,\n\nMerci de rembourser sur FR76 3000 6000 0112 3456 7890 189 "
        "(et non sur la carte 4111 1111 1111 1111). Joignable au 06 12 34 56 78 ou à "
        "paul@exemple.fr. Connexion suspecte depuis 203.0.113.7 le 12/03/2025.\n\nPaul"
    )
    assert [kind for kind, _ in found(mail)] == ["IBAN", "CARD", "PHONE", "EMAIL", "IP"]


def test_findings_never_overlap_and_follow_the_text():
    text = "a@b.fr 06 12 34 56 78 c@d.fr 1.2.3.4 4111111111111111 " * 20
    findings = find_pii(text)
    assert len(findings) == 100
    assert all(a.end <= b.start for a, b in itertools.pairwise(findings))


def test_text_without_digits_never_reaches_the_phone_matcher(monkeypatch):
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the phone matcher ran")

    monkeypatch.setattr("aiservice.privacy.phones.PhoneNumberMatcher", fail)
    assert found("Bonjour, écrivez à marie@exemple.fr ou passez nous voir.") == [
        ("EMAIL", "marie@exemple.fr")
    ]


@pytest.mark.parametrize(
    "text",
    [
        "a." * 10_000 + "b@c.fr",
        "a@" * 10_000,
        ":" * 20_000,
        "a:" * 10_000,
        "1 " * 10_000,
        "FR76 " * 4_000,
    ],
)
def test_long_repetitive_input_is_scanned_in_one_pass(text):
    # Each detector moves forward through such a text instead of rescanning it from every
    # position; a quadratic regression shows up here as a test that takes minutes.
    assert len(find_pii(text)) <= 1


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("Claire.Martin@Exemple.FR", "claire.martin@exemple.fr"),
        ("06 12 34 56 78", "+33612345678"),
        ("+33 (0)6 12 34 56 78", "+33612345678"),
        ("fr76 3000 6000 0112 3456 7890 189", "FR7630006000011234567890189"),
        ("4111-1111-1111-1111", "4111111111111111"),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
    ],
)
def test_canonical_values_spell_one_value_one_way(text, canonical):
    [finding] = find_pii(text)
    assert canonical_value(finding) == canonical
