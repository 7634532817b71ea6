import pytest

from aiservice.providers.stop_sequences import StopScanner


def feed_all(scanner: StopScanner, pieces: list[str]) -> str:
    out = ""
    for piece in pieces:
        out += scanner.feed(piece)
        if scanner.stopped:
            return out
    return out + scanner.flush()


def test_text_without_stops_passes_through_unchanged():
    assert feed_all(StopScanner([]), ["Hel", "lo"]) == "Hello"


@pytest.mark.parametrize(
    "pieces",
    [["Hello END world"], ["Hello E", "ND world"], ["Hello ", "E", "N", "D", " world"]],
)
def test_output_is_cut_before_a_stop_even_when_split_across_tokens(pieces):
    scanner = StopScanner(["END"])
    assert feed_all(scanner, pieces) == "Hello "
    assert scanner.stopped


def test_a_possible_stop_prefix_is_held_then_released_when_it_diverges():
    scanner = StopScanner(["END"])
    assert scanner.feed("Hello EN") == "Hello "
    assert scanner.feed("TER") == "ENTER"
    assert not scanner.stopped


def test_the_earliest_of_several_stops_wins():
    scanner = StopScanner(["world", "lo"])
    assert feed_all(scanner, ["Hello world"]) == "Hel"


def test_held_text_is_flushed_at_the_end_of_generation():
    scanner = StopScanner(["END"])
    assert scanner.feed("The E") == "The "
    assert scanner.flush() == "E"
