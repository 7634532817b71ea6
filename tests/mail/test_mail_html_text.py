"""html_to_text: what a reader of the HTML would see, as lines of text."""

from __future__ import annotations

from aiservice.mail.html_text import html_to_text


def test_paragraphs_and_line_breaks_are_kept():
    html = "<p>First   paragraph\nwrapped.</p><p>Second<br>line two<br/>line three</p>"
    assert html_to_text(html) == "First paragraph wrapped.\n\nSecond\nline two\nline three"


def test_scripts_styles_and_the_title_are_dropped():
    html = (
        "<html><head><title>Newsletter</title><style>p{color:red}</style></head>"
        "<body><script>track()</script><p>Hello</p></body></html>"
    )
    assert html_to_text(html) == "Hello"


def test_entities_are_decoded():
    assert html_to_text("<p>&lt;b&gt; &amp; &eacute;t&eacute; &#8364; &#x2019;&nbsp;ok</p>") == (
        "<b> & été € \u2019 ok"
    )


def test_a_link_keeps_its_text_not_its_address():
    html = '<p>See <a href="https://track.example/?u=1">the report</a>.</p>'
    assert html_to_text(html) == "See the report."


def test_lists_and_table_rows_get_lines_of_their_own():
    html = (
        "<ul><li>One</li><li> Two </li></ul>"
        "<table><tr><td>A</td><td>B</td></tr><tr><td>C</td></tr></table>"
    )
    assert html_to_text(html) == "- One\n- Two\n\nA B\nC"


def test_blockquotes_become_quoted_lines():
    html = "<p>Yes.</p><blockquote><p>Can you?</p><blockquote>Really?</blockquote></blockquote>"
    assert html_to_text(html) == "Yes.\n\n> Can you?\n>\n> > Really?"


def test_preformatted_text_keeps_its_spaces():
    assert html_to_text("<pre>  a\n    b</pre>") == "  a\n    b"


def test_nested_blocks_make_one_blank_line_at_most():
    assert html_to_text("<div><div><p>a</p></div></div><p></p><p></p><div>b</div>") == "a\n\nb"


def test_outlook_conditional_comments_go_and_a_stray_marked_section_is_text():
    html = "<p>a <![ b</p><![if !mso]><p>c</p><![endif]>"
    assert html_to_text(html) == "a <![ b\n\nc"
