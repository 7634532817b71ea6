"""Calendar invitations: the VEVENTs of a text/calendar part, unfolded, unescaped, with times in
ISO 8601."""

from __future__ import annotations

import pytest

from aiservice.mail import Attachment, CalendarEvent
from aiservice.mail.invitations import read_events


def _calendar(*event_lines: str, method: str = "REQUEST") -> str:
    return "\r\n".join(
        ["BEGIN:VCALENDAR", f"METHOD:{method}", "BEGIN:VEVENT", *event_lines, "END:VEVENT",
         "END:VCALENDAR", ""]
    )  # fmt: skip


def test_an_invitation_gives_its_event_once(sample):
    message = sample("invitation.eml")
    # The same calendar comes inline and as invite.ics: one event.
    assert message.calendar == [
        CalendarEvent(
            summary="Lancement du projet Atlas, phase 2 : planning et budget prévisionnel",
            start="2025-03-18T14:00:00+01:00",
            end="2025-03-18T15:30:00+01:00",
            timezone="Europe/Paris",
            location="Salle Clémence; 3e étage, 12 rue de la Paix, Paris",
            organizer='"Martin, Claire" <claire.martin@exemple.fr>',
            attendees=[
                "Paul Durand <paul.durand@acme.fr>",
                "Hélène Lefèvre <helene.lefevre@exemple.fr>",
            ],
        )
    ]


def test_the_invitation_file_is_listed_and_its_text_kept_out_of_the_body(sample):
    message = sample("invitation.eml")
    assert message.attachments == [
        Attachment(filename="invite.ics", content_type="application/ics", size=960)
    ]
    assert "BEGIN:VCALENDAR" not in message.thread
    assert message.body.startswith("Vous êtes invité(e) à la réunion de lancement")


def test_utc_times_carry_a_zero_offset():
    (event,) = read_events(_calendar("DTSTART:20250318T130000Z", "DTEND:20250318T143000Z"))
    assert (event.start, event.end, event.timezone) == (
        "2025-03-18T13:00:00+00:00",
        "2025-03-18T14:30:00+00:00",
        None,
    )


def test_an_unknown_tzid_leaves_a_local_time_and_names_the_zone():
    (event,) = read_events(_calendar('DTSTART;TZID="Romance Standard Time":20250318T140000'))
    assert (event.start, event.timezone) == ("2025-03-18T14:00:00", "Romance Standard Time")


def test_an_all_day_event_has_dates():
    (event,) = read_events(
        _calendar("DTSTART;VALUE=DATE:20250401", "DTEND;VALUE=DATE:20250403", "SUMMARY:Salon")
    )
    assert (event.start, event.end) == ("2025-04-01", "2025-04-03")


def test_a_duration_gives_the_end():
    (event,) = read_events(_calendar("DTSTART:20250318T130000Z", "DURATION:PT1H30M"))
    assert event.end == "2025-03-18T14:30:00+00:00"


@pytest.mark.parametrize(
    ("lines", "method"),
    [(["STATUS:CANCELLED"], "REQUEST"), (["SUMMARY:Point"], "CANCEL")],
)
def test_a_cancellation_is_marked(lines: list[str], method: str):
    (event,) = read_events(_calendar(*lines, method=method))
    assert event.cancelled


def test_quoted_parameters_may_hold_colons_and_semicolons():
    (event,) = read_events(
        _calendar('ATTENDEE;CN="Dupont; Jean: RH";ROLE=CHAIR:mailto:jean.dupont@exemple.fr')
    )
    assert event.attendees == ['"Dupont; Jean: RH" <jean.dupont@exemple.fr>']


def test_an_alarm_s_attendee_is_not_the_event_s():
    (event,) = read_events(
        _calendar("BEGIN:VALARM", "ATTENDEE:mailto:rappel@exemple.fr", "END:VALARM")
    )
    assert event.attendees == []


@pytest.mark.parametrize(
    "lines",
    [
        ["DTSTART:20250101T000000Z", "DURATION:PT99999999999H"],
        ["DTSTART:99991231T230000Z", "DURATION:P2D"],
        ["DTSTART:20251301T000000Z", "DTEND:20250230T000000Z"],
    ],
)
def test_times_out_of_range_are_none(lines: list[str]):
    (event,) = read_events(_calendar(*lines))
    assert event.end is None


def test_a_bad_date_and_missing_properties_are_none():
    (event,) = read_events(_calendar("DTSTART:tomorrow", "ATTENDEE:mailto:a@exemple.fr"))
    assert event == CalendarEvent(attendees=["a@exemple.fr"])


def test_lines_folded_with_a_space_or_a_tab_are_joined():
    (event,) = read_events(
        _calendar("SUMMARY:Revue tri", " mestrielle\\nsuite", "LOCATION:Sal", "\tle 2")
    )
    assert (event.summary, event.location) == ("Revue trimestrielle\nsuite", "Salle 2")


def test_several_events_come_in_order_and_text_outside_them_is_ignored():
    calendar = "\n".join(
        ["BEGIN:VCALENDAR", "SUMMARY:not an event", "BEGIN:VEVENT", "SUMMARY:One", "END:VEVENT",
         "BEGIN:VEVENT", "SUMMARY:Two", "END:VEVENT", "END:VCALENDAR"]
    )  # fmt: skip
    assert [event.summary for event in read_events(calendar)] == ["One", "Two"]
