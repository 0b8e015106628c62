"""Token-level answer view: hover alternatives, heatmap, overlays."""

from __future__ import annotations

import math

from desktop.core.types import StreamToken, TopAlt
from desktop.ui.answer_view import AnswerView, alternatives_html, prob_color


def toks() -> list[StreamToken]:
    alts = (TopAlt(5, " world", math.log(0.6)), TopAlt(6, " there", math.log(0.3)))
    return [
        StreamToken(0, 4, "Hello", "Hello", math.log(0.9), (TopAlt(4, "Hello", math.log(0.9)),)),
        StreamToken(1, 5, " world", " world", math.log(0.6), alts),
        StreamToken(2, 7, "\xe2", "", math.log(0.2), ()),  # a partial character: no text yet
        StreamToken(3, 8, "\x82\xac", "€", math.log(0.5), ()),
    ]


def test_tokens_map_to_text_positions(qtbot) -> None:
    v = AnswerView()
    qtbot.addWidget(v)
    v.append_tokens(toks())
    assert v.text() == "Hello world€"
    assert v._starts == [0, 5, 11, 11] and v._ends == [5, 11, 11, 12]  # noqa: SLF001
    assert len(v.tokens()) == 4


def test_alternatives_tooltip_has_bars_and_probabilities() -> None:
    html = alternatives_html(toks()[1], "Token 2")
    assert "60.0%" in html and "30.0%" in html and "bgcolor" in html
    assert "id 5" in html


def test_heatmap_and_overlay_colour_tokens(qtbot) -> None:
    from PySide6.QtGui import QColor, QTextCursor

    v = AnswerView()
    qtbot.addWidget(v)
    v.append_tokens(toks())
    v.set_heatmap(True)
    cur = QTextCursor(v.document())
    cur.setPosition(2)
    assert cur.charFormat().background().color() == prob_color(0.9)
    assert "Heatmap" in v.legend
    v.set_overlay(["a", "b", None, "a"], {"a": QColor("#00ff00"), "b": QColor("#ff0000")},
                  [None, "shifted", None, None], "Legend")
    cur.setPosition(7)
    assert cur.charFormat().background().color() == QColor("#ff0000")
    assert "shifted" in v.tooltip_for(1)
    assert prob_color(0.0) != prob_color(1.0)


def test_hovering_a_token_shows_its_alternatives(qtbot) -> None:
    from PySide6.QtCore import QPoint
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QToolTip

    v = AnswerView()
    qtbot.addWidget(v)
    v.resize(400, 200)
    v.show()
    qtbot.waitExposed(v)
    v.append_tokens(toks())
    from PySide6.QtGui import QTextCursor

    cur = QTextCursor(v.document())
    cur.setPosition(8)  # inside " world"
    rect = v.cursorRect(cur)
    QTest.mouseMove(v.viewport(), QPoint(rect.left() + 1, rect.center().y()))
    qtbot.waitUntil(lambda: "Token 2" in QToolTip.text(), timeout=2000)
    assert "60.0%" in QToolTip.text()
    QTest.mouseMove(v.viewport(), QPoint(rect.left() + 1, 190))  # below the text: no token
    qtbot.waitUntil(lambda: not QToolTip.isVisible() or "Token 2" not in QToolTip.text(), timeout=2000)


def test_streamed_text_is_coalesced_but_positions_stay_per_token(qtbot) -> None:
    v = AnswerView()
    qtbot.addWidget(v)
    v.append_tokens(toks()[:2])
    v.append_tokens(toks()[2:])
    assert v.text() == "Hello world€"
    assert v._starts == [0, 5, 11, 11] and v._ends == [5, 11, 11, 12]  # noqa: SLF001
    v.set_heatmap(True)
    v.append_tokens([StreamToken(4, 9, "!", "!", math.log(0.9), ())])  # coloured tokens one by one
    from PySide6.QtGui import QTextCursor

    cur = QTextCursor(v.document())
    cur.setPosition(13)
    assert cur.charFormat().background().color() == prob_color(0.9)
