"""A hint of the language a message is written in, from its commonest short words. Only a hint:
it answers for English, French, German and Spanish, and only when one clearly leads."""

from __future__ import annotations

import re

# Words frequent in one of these languages and rare in the others (so no "la", "de", "en").
_COMMON_WORDS = {
    "en": {
        "the", "and", "is", "are", "you", "your", "to", "of", "for", "with", "this", "that",
        "have", "will", "be", "please", "thanks", "we", "it", "can", "would", "could", "i'm",
        "hi", "hello", "regards", "meeting", "let", "know", "if", "from", "at",
    },
    "fr": {
        "le", "les", "des", "et", "est", "vous", "nous", "pour", "avec", "une", "dans", "qui",
        "pas", "sur", "ce", "cette", "merci", "bonjour", "je", "du", "au", "aux", "sont", "mais",
        "ou", "votre", "vos", "notre", "cordialement", "être", "avez", "pouvez", "c'est", "j'ai",
        "à", "très", "êtes",
    },
    "de": {
        "der", "die", "das", "und", "ist", "nicht", "mit", "sie", "wir", "für", "ich", "ein",
        "eine", "zu", "den", "dem", "bitte", "danke", "ihr", "ihre", "auf", "sind", "wird",
    },
    "es": {
        "el", "los", "las", "y", "es", "por", "para", "con", "una", "del", "usted", "gracias",
        "hola", "pero", "está", "muy", "como", "su", "sus", "nosotros", "estimado", "saludos",
    },
}  # fmt: skip
_FEWEST_HITS = 3
_LEAD = 2.0  # the first language must have this many times the second one's hits
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def language_hint(text: str) -> str | None:
    """The language code ("en", "fr", "de", "es") when the text clearly is in it, else None."""
    sample = text[:5000].replace("\u2019", "'")  # the typographic apostrophe, U+2019
    words = [word.lower() for word in _WORD.findall(sample)]
    hits = {
        language: sum(word in common for word in words)
        for language, common in _COMMON_WORDS.items()
    }
    ranked = sorted(hits.items(), key=lambda item: item[1], reverse=True)
    (first, first_hits), (_, second_hits) = ranked[0], ranked[1]
    if first_hits >= _FEWEST_HITS and first_hits >= _LEAD * second_hits:
        return first
    return None
