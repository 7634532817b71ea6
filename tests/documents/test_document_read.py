"""Reading each kind of document: its text (in order, accents intact, paragraphs separated by
blank lines), its title, its pages, and the same result from a path or from bytes."""

from __future__ import annotations

import re
from io import BytesIO
from pathlib import Path

import docx
from pypdf import PdfReader, PdfWriter

from aiservice.documents import (
    Document,
    document_from_text,
    read_document,
    read_document_bytes,
)
from document_samples import (
    ATTACHMENT_NAME,
    ATTACHMENT_TEXT,
    DOCX_TITLE,
    EMAIL_SUBJECT,
    MARKDOWN_TITLE,
    PDF_PAGES,
    PDF_TITLE,
    Samples,
    pdf_bytes,
    pdf_sentence,
)


def _paragraphs(document: Document) -> list[str]:
    return document.text.split("\n\n")


def _in_order(text: str, wanted: list[str]) -> bool:
    position = 0
    for piece in wanted:
        found = text.find(piece, position)
        if found < 0:
            return False
        position = found + len(piece)
    return True


def test_a_30_page_pdf_reads_30_pages_with_its_title(samples: Samples):
    document = read_document(samples.thirty_pages_pdf)
    assert (document.name, document.kind) == ("rapport.pdf", "pdf")
    assert document.pages == PDF_PAGES
    assert document.title == PDF_TITLE


def test_a_pdf_gives_its_known_sentences_in_order_with_their_accents(samples: Samples):
    document = read_document(samples.thirty_pages_pdf)
    sentences = [pdf_sentence(page, n) for page in range(1, PDF_PAGES + 1) for n in (1, 2, 3)]
    assert _in_order(document.text, sentences)
    assert "réflexion" in document.text and "l'élève" in document.text


def test_a_pdf_is_reflowed_into_paragraphs_without_its_page_numbers(samples: Samples):
    paragraphs = _paragraphs(read_document(samples.thirty_pages_pdf))
    # Each printed paragraph (wrapped over several lines) is one paragraph of the text...
    assert sum(p.startswith("Phrase témoin") for p in paragraphs) == PDF_PAGES * 3
    assert all("\n" not in p for p in paragraphs)
    # ...each heading one of its own, and no page's number is left standing alone.
    assert "Chapitre 17 : bilan du trimestre" in paragraphs
    assert not [p for p in paragraphs if re.fullmatch(r"\d+", p)]


def test_a_pdf_encrypted_with_an_empty_password_is_read(tmp_path: Path):
    writer = PdfWriter(clone_from=PdfReader(BytesIO(pdf_bytes(_hello))))
    writer.encrypt(user_password="", owner_password="owner-secret", algorithm="AES-128")
    path = tmp_path / "protected.pdf"
    writer.write(path)
    document = read_document(path)
    assert "Bonjour, ceci est protégé." in document.text
    assert document.pages == 1


def _hello(pdf) -> None:
    pdf.multi_cell(0, 8, "Bonjour, ceci est protégé.")


def test_a_word_file_gives_headings_paragraphs_and_table_cells_in_order(samples: Samples):
    document = read_document(samples.word)
    assert (document.kind, document.title, document.pages) == ("docx", DOCX_TITLE, None)
    paragraphs = _paragraphs(document)
    assert paragraphs[:3] == [DOCX_TITLE, "Introduction", paragraphs[2]]
    assert "Résultats" in paragraphs
    table = "Région\nChiffre d'affaires\nNord\n1,2 M€\nSud\n0,8 M€"
    assert paragraphs.index("Résultats") + 1 == paragraphs.index(table)
    assert paragraphs[-1] == "La conclusion suit le tableau."
    assert "Besançon" in document.text


def test_a_word_file_without_a_core_title_is_named_by_its_title_paragraph(tmp_path: Path):
    word = docx.Document()
    word.add_heading("Notes de lecture", 0)
    word.add_paragraph("Un paragraphe.")
    word.save(str(tmp_path / "notes.docx"))
    assert read_document(tmp_path / "notes.docx").title == "Notes de lecture"


def test_french_text_keeps_its_accents_and_paragraphs(samples: Samples):
    document = read_document(samples.french_txt)
    assert (document.kind, document.title, document.pages) == ("txt", None, None)
    assert _paragraphs(document)[0] == "Le rapport de l'été"
    assert "« Nous recommencerons l'année prochaine. »" in document.text
    assert "Ça coûte cher, mais ça vaut le coût : où est le problème ?" in document.text


def test_text_not_in_utf8_is_read_as_windows_1252(tmp_path: Path):
    path = tmp_path / "ancien.txt"
    text = "Déjà l\u2019été : 5 € le café."  # a typographic apostrophe, the euro sign
    path.write_bytes(text.encode("cp1252"))
    assert read_document(path).text == text


def test_bytes_windows_1252_leaves_undefined_are_read_as_latin_1():
    # 0x81 has no character in windows-1252: only Latin-1 decodes it.
    assert read_document_bytes(b"caf\xe9 \x81", "x.txt").text == "café \x81"


def test_text_line_endings_and_blank_line_runs_are_made_regular():
    data = "\ufeffPremier.\r\n\r\n\r\n\r\nSecond.  \r\nSuite.\r\n".encode()
    assert read_document_bytes(data, "dos.txt").text == "Premier.\n\nSecond.\nSuite."


def test_a_file_without_a_suffix_is_read_as_text(tmp_path: Path):
    (tmp_path / "LISEZMOI").write_text("Lisez-moi d'abord.", encoding="utf-8")
    document = read_document(tmp_path / "LISEZMOI")
    assert (document.name, document.kind, document.text) == (
        "LISEZMOI",
        "txt",
        "Lisez-moi d'abord.",
    )


def test_markdown_is_named_by_its_first_heading(samples: Samples):
    document = read_document(samples.markdown)
    assert (document.kind, document.title) == ("md", MARKDOWN_TITLE)
    assert f"# {MARKDOWN_TITLE}" in document.text  # the text is kept as written


def test_markdown_titles_from_front_matter_and_underlines():
    front = "---\ntitle: 'Mon carnet'\ntags: [a]\n---\n\n# Autre\n"
    assert read_document_bytes(front.encode(), "carnet.markdown").title == "Mon carnet"
    underlined = "```\n# not a heading\n```\n\nVrai titre\n==========\n\nTexte.\n"
    assert read_document_bytes(underlined.encode(), "u.md").title == "Vrai titre"
    assert read_document_bytes(b"Just text.\n", "plain.md").title is None


def test_an_email_gives_its_headers_body_and_text_attachment(samples: Samples):
    document = read_document(samples.email)
    assert (document.kind, document.title, document.pages) == ("eml", EMAIL_SUBJECT, None)
    assert "From: Alice Martin <alice@example.org>" in document.text
    assert _in_order(
        document.text,
        ["Bonjour à tous,", "Les décisions sont prises.", f"Attachment: {ATTACHMENT_NAME}\n"],
    )
    assert document.text.endswith(f"Attachment: {ATTACHMENT_NAME}\n{ATTACHMENT_TEXT.strip()}")
    assert "logo.png" not in document.text  # not text: not read


def test_bytes_read_as_their_file_does(samples: Samples):
    for path in (samples.thirty_pages_pdf, samples.word, samples.markdown, samples.email):
        assert read_document_bytes(path.read_bytes(), path.name) == read_document(path)


def test_the_suffix_is_read_whatever_its_case_and_the_name_kept_on_one_line(samples: Samples):
    document = read_document_bytes(samples.word.read_bytes(), "C:\\Docs\\Bilan\nFINAL.DOCX")
    assert (document.kind, document.name) == ("docx", "C:\\Docs\\Bilan FINAL.DOCX")


def test_a_text_in_hand_becomes_a_document():
    document = document_from_text("Une ligne.\r\n\r\nUne autre.")
    assert document == Document("text", "txt", "Une ligne.\n\nUne autre.", None, None)
    markdown = document_from_text("# Titre\n\nCorps.", name="note.md")
    assert (markdown.kind, markdown.title) == ("md", "Titre")
    assert document_from_text("Depuis l'entrée standard.", name="stdin").name == "stdin"
