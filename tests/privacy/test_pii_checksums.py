"""The check digits behind IBAN and card detection, on the published example numbers."""

from __future__ import annotations

import pytest

from aiservice.privacy.checksums import IBAN_LENGTHS, iban_valid, luhn_valid


@pytest.mark.parametrize(
    "iban",
    [
        "FR7630006000011234567890189",
        "FR1420041010050500013M02606",
        "DE89370400440532013000",
        "GB29NWBK60161331926819",
        "BE68539007547034",
        "NO9386011117947",
        "MT84MALT011000012345MTLCAST001S",
    ],
)
def test_registry_examples_are_valid_ibans(iban):
    assert iban_valid(iban)


@pytest.mark.parametrize(
    "iban",
    [
        "FR7730006000011234567890189",  # check digits
        "FR763000600001123456789018",  # length
        "GB29NWBK60161331926818",  # a changed digit
        "GB29NWBK6016133192681",
        "US12345678901234567890",  # not an IBAN country
        "FR76-3000-6000-0112-3456-789",  # not compact
        "FR0030006000011234567890189",  # 00 is never issued
    ],
)
def test_altered_ibans_are_invalid(iban):
    assert not iban_valid(iban)


def test_check_digits_99_that_only_mod_97_accepts_are_invalid():
    # 99 and 02 are the same modulo 97, but only 02..98 are ever issued.
    valid = "GB02NWBK60161331926820"
    assert iban_valid(valid)
    assert not iban_valid("GB99" + valid[4:])


def test_every_registered_length_is_a_possible_iban_length():
    assert all(len(code) == 2 and code.isupper() for code in IBAN_LENGTHS)
    assert all(15 <= length <= 34 for length in IBAN_LENGTHS.values())


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("4111111111111111", True),
        ("5555555555554444", True),
        ("378282246310005", True),
        ("79927398713", True),
        ("4111111111111112", False),
        ("79927398710", False),
    ],
)
def test_luhn(digits, valid):
    assert luhn_valid(digits) is valid
