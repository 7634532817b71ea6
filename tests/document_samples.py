"""Sample documents of every kind (tests/documents, and the document-analysis tests of the
routes, the facade and the CLI): a 30-page PDF, an image-only PDF, a Word file, French text,
Markdown, an e-mail with a text attachment, and the broken ones (empty, random bytes)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from io import BytesIO
from pathlib import Path

import docx
from fpdf import FPDF
from PIL import Image

PDF_TITLE = "Rapport annuel de l'école"
PDF_PAGES = 30
DOCX_TITLE = "Rapport trimestriel"
MARKDOWN_TITLE = "Guide d'installation"
EMAIL_SUBJECT = "Compte rendu de la réunion d'été"

FRENCH_TEXT = """\
Le rapport de l'été

L'équipe a réussi à déployer le service à Montréal. Les élèves ont apprécié la rapidité ! \
Pourquoi ce succès ? Parce que la préparation a été soignée.

Il a dit : « Nous recommencerons l'année prochaine. » Puis il est parti déjeuner à la crêperie.

Ça coûte cher, mais ça vaut le coût : où est le problème ?
"""

MARKDOWN_TEXT = f"""\
Some words before the heading, which are not the title.

# {MARKDOWN_TITLE}

Install the package, then run the server.

## Configuration

Set `AISERVICE_HOME` before the first start.
"""

EMAIL_BODY = "Bonjour à tous,\n\nVoici le compte rendu de la réunion. Les décisions sont prises.\n"
ATTACHMENT_NAME = "notes.txt"
ATTACHMENT_TEXT = "Points à retenir : le budget est validé. La date est fixée au 3 août.\n"


def pdf_sentence(page: int, paragraph: int) -> str:
    """The sentence that paragraph `paragraph` of page `page` of the 30-page PDF starts with."""
    return f"Phrase témoin {page}-{paragraph} : l'élève a réussi à l'épreuve de français."


_FILLER = (
    "Les résultats de cette période sont présentés en détail, avec leurs causes et leurs "
    "conséquences pour l'année à venir, où chacun trouvera matière à réflexion. "
)


class _NumberedPDF(FPDF):
    def footer(self) -> None:
        # A lone page number at the foot of every page, as most reports have.
        self.set_y(-15)
        self.set_font("Helvetica", size=9)
        self.cell(0, 10, str(self.page_no()), align="C")


def _thirty_page_pdf(path: Path) -> None:
    pdf = _NumberedPDF()
    pdf.set_title(PDF_TITLE)
    for page in range(1, PDF_PAGES + 1):
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 16)
        pdf.multi_cell(
            0, 10, f"Chapitre {page} : bilan du trimestre", new_x="LMARGIN", new_y="NEXT"
        )
        pdf.ln(4)
        pdf.set_font("Helvetica", size=11)
        for paragraph in range(1, 4):
            text = pdf_sentence(page, paragraph) + " " + _FILLER * 2
            pdf.multi_cell(0, 6, text.strip(), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(5)
    pdf.output(str(path))


def _image_only_pdf(path: Path) -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_fill_color(40, 90, 160)
    pdf.rect(20, 20, 120, 60, style="F")
    pdf.image(Image.new("RGB", (64, 48), (200, 30, 30)), x=20, y=100, w=80)
    pdf.output(str(path))


def _word_file(path: Path) -> None:
    word = docx.Document()
    word.core_properties.title = DOCX_TITLE
    word.add_heading(DOCX_TITLE, 0)
    word.add_heading("Introduction", 1)
    word.add_paragraph("Ce trimestre, les ventes ont progressé de façon régulière.")
    word.add_paragraph("Les équipes ont été renforcées à Genève et à Besançon.")
    word.add_heading("Résultats", 1)
    table = word.add_table(rows=3, cols=2)
    for row, (region, figure) in enumerate(
        [("Région", "Chiffre d'affaires"), ("Nord", "1,2 M€"), ("Sud", "0,8 M€")]
    ):
        table.cell(row, 0).text = region
        table.cell(row, 1).text = figure
    word.add_paragraph("La conclusion suit le tableau.")
    word.save(str(path))


def _email(path: Path) -> None:
    message = EmailMessage()
    message["From"] = "Alice Martin <alice@example.org>"
    message["To"] = "Bob Durand <bob@example.org>"
    message["Subject"] = EMAIL_SUBJECT
    when = datetime(2025, 7, 3, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    message["Date"] = format_datetime(when)
    message.set_content(EMAIL_BODY)
    message.add_attachment(ATTACHMENT_TEXT, subtype="plain", filename=ATTACHMENT_NAME)
    message.add_attachment(
        b"\x89PNG\r\n\x1a\n" + bytes(64), maintype="image", subtype="png", filename="logo.png"
    )
    path.write_bytes(message.as_bytes())


@dataclass(frozen=True)
class Samples:
    """The paths of the sample documents."""

    thirty_pages_pdf: Path
    image_only_pdf: Path
    word: Path
    french_txt: Path
    markdown: Path
    email: Path
    empty: Path
    corrupt_pdf: Path
    corrupt_docx: Path


def pdf_bytes(build) -> bytes:
    """The bytes of a one-off PDF: `build(pdf)` draws on an FPDF with one page added."""
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    build(pdf)
    buffer = BytesIO()
    pdf.output(buffer)
    return buffer.getvalue()


def write_samples(folder: Path) -> Samples:
    """Every sample, written into `folder`."""
    made = Samples(
        thirty_pages_pdf=folder / "rapport.pdf",
        image_only_pdf=folder / "scan.pdf",
        word=folder / "trimestre.docx",
        french_txt=folder / "ete.txt",
        markdown=folder / "guide.md",
        email=folder / "reunion.eml",
        empty=folder / "vide.txt",
        corrupt_pdf=folder / "casse.pdf",
        corrupt_docx=folder / "casse.docx",
    )
    _thirty_page_pdf(made.thirty_pages_pdf)
    _image_only_pdf(made.image_only_pdf)
    _word_file(made.word)
    made.french_txt.write_text(FRENCH_TEXT, encoding="utf-8")
    made.markdown.write_text(MARKDOWN_TEXT, encoding="utf-8")
    _email(made.email)
    made.empty.write_bytes(b"")
    noise = random.Random(2025)
    made.corrupt_pdf.write_bytes(bytes(noise.randrange(256) for _ in range(4096)))
    made.corrupt_docx.write_bytes(bytes(noise.randrange(256) for _ in range(4096)))
    return made
