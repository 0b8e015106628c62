"""The streaming answer of one model, token-aware.

Hovering (or clicking) a generated token shows the model's top-k alternatives at that step as
small bars with probabilities. A heatmap colours each token by the probability of the chosen
token. ``set_overlay`` lets the alignment lens colour tokens by class.
"""

from __future__ import annotations

import bisect
import html
import math

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QTextCharFormat,
    QTextCursor,
)
from PySide6.QtWidgets import QTextEdit, QToolTip, QWidget

from desktop.core.types import StreamToken


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def prob_color(p: float) -> QColor:
    """Red (unlikely) through yellow to green (likely), light enough to read text on."""
    p = max(0.0, min(1.0, p))
    hue = int(120 * p)  # 0 red .. 120 green
    return QColor.fromHsv(hue, 90, 255)


def alternatives_html(token: StreamToken | None, title: str = "") -> str:
    if token is None:
        return ""
    rows = []
    for alt in token.top:
        p = math.exp(alt.logprob)
        width = max(2, int(120 * p))
        chosen = alt.id == token.id
        piece = html.escape(repr(alt.piece)[1:-1]) or "&nbsp;"
        weight = "bold" if chosen else "normal"
        rows.append(
            f"<tr><td style='font-family:monospace;font-weight:{weight}'>{piece}</td>"
            f"<td><table cellspacing=0 cellpadding=0><tr><td width={width} height=10 "
            f"bgcolor='{'#3b82f6' if chosen else '#9ca3af'}'></td></tr></table></td>"
            f"<td align=right>{p * 100:.1f}%</td></tr>"
        )
    head = html.escape(title) if title else "Chosen token"
    p_chosen = math.exp(token.logprob)
    header = (
        f"<b>{head}</b>: <span style='font-family:monospace'>{html.escape(repr(token.piece))}</span>"
        f" &nbsp;p = {p_chosen * 100:.1f}% &nbsp;(id {token.id})"
    )
    if not rows:
        return header
    return header + "<br>Top alternatives at this step:<table cellspacing=4>" + "".join(rows) + "</table>"


class AnswerView(QTextEdit):
    """Read-only text that remembers which characters came from which token."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setAcceptRichText(False)
        self.document().setUndoRedoEnabled(False)  # read-only: no undo history of every flush
        font = readable_font()
        # the streamed paragraph is laid out again at every flush; skipping optional OpenType
        # features (Latin ligatures, kerning) makes that ~18% cheaper, and scripts that need
        # shaping to be legible (Arabic, Devanagari, ...) are still shaped
        font.setStyleStrategy(QFont.StyleStrategy.PreferNoShaping)
        self.setFont(font)
        self.setLineWrapMode(QTextEdit.LineWrapMode.WidgetWidth)
        # hover through mouseMoveEvent, not an event filter: a Python filter on the viewport would
        # run for every paint event while the answer streams
        self.viewport().setMouseTracking(True)
        self._tokens: list[StreamToken] = []
        self._starts: list[int] = []  # document position where each token's text starts
        self._ends: list[int] = []
        self._pos = 0
        self._heatmap = False
        self._overlay: list[str | None] | None = None
        self._overlay_colors: dict[str, QColor] = {}
        self._overlay_tips: list[str | None] | None = None
        self.legend = ""
        self._placeholder = ""
        self.setPlaceholderText("The answer will stream here.")  # see ModelPane

    # -- placeholder: QTextEdit draws its own on one line, cut at the edge; this one wraps --------

    def setPlaceholderText(self, text: str) -> None:  # noqa: N802 (Qt's name)
        self._placeholder = text
        super().setPlaceholderText("")
        self.viewport().update()

    def placeholderText(self) -> str:  # noqa: N802 (Qt's name)
        return self._placeholder

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt's name)
        super().paintEvent(event)
        if self._placeholder and self.document().isEmpty():
            painter = QPainter(self.viewport())
            painter.setPen(self.palette().placeholderText().color())
            m = round(self.document().documentMargin())
            painter.drawText(self.viewport().rect().adjusted(m, m, -m, -m),
                             int(Qt.TextFlag.TextWordWrap) | int(Qt.AlignmentFlag.AlignLeft)
                             | int(Qt.AlignmentFlag.AlignTop), self._placeholder)
            painter.end()

    # -- content -----------------------------------------------------------------------------

    def clear_answer(self) -> None:
        self.clear()
        self._tokens.clear()
        self._starts.clear()
        self._ends.clear()
        self._pos = 0
        if self._overlay is not None:  # the overlay belonged to the old answer
            self._overlay = None
            self._overlay_tips = None
            self.set_heatmap(self._heatmap)  # its legend again

    def tokens(self) -> list[StreamToken]:
        return list(self._tokens)

    def text(self) -> str:
        return self.toPlainText()

    def append_tokens(self, tokens: list[StreamToken]) -> None:
        if not tokens:
            return
        sb = self.verticalScrollBar()
        at_bottom = sb.value() >= sb.maximum() - 4
        cur = QTextCursor(self.document())
        cur.beginEditBlock()  # first: inside an edit block, moving the cursor lays nothing out
        cur.movePosition(QTextCursor.MoveOperation.End)
        plain = self._overlay is None and not self._heatmap
        run: list[str] = []  # uncoloured text goes in with one insert per flush
        for tok in tokens:
            self._tokens.append(tok)
            self._starts.append(self._pos)
            if tok.text:
                if plain:
                    run.append(tok.text)
                else:
                    cur.insertText(tok.text, self._format_for(len(self._tokens) - 1))
                self._pos += _utf16_len(tok.text)
            self._ends.append(self._pos)
        if run:
            cur.insertText("".join(run), QTextCharFormat())
        cur.endEditBlock()
        if at_bottom:
            sb.setValue(sb.maximum())

    def append_plain(self, text: str) -> None:
        cur = QTextCursor(self.document())
        cur.movePosition(QTextCursor.MoveOperation.End)
        cur.insertText(text)
        self._pos += _utf16_len(text)

    # -- colouring ---------------------------------------------------------------------------

    def _format_for(self, i: int) -> QTextCharFormat:
        fmt = QTextCharFormat()
        if self._overlay is not None and i < len(self._overlay):
            cls = self._overlay[i]
            if cls is not None and cls in self._overlay_colors:
                fmt.setBackground(self._overlay_colors[cls])
                fmt.setForeground(QColor("#111111"))
            return fmt
        if self._heatmap:
            fmt.setBackground(prob_color(math.exp(self._tokens[i].logprob)))
            fmt.setForeground(QColor("#111111"))
        return fmt

    def _recolor(self) -> None:
        cur = QTextCursor(self.document())
        cur.beginEditBlock()
        cur.setPosition(0)
        cur.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cur.setCharFormat(QTextCharFormat())
        for i, (a, b) in enumerate(zip(self._starts, self._ends)):
            if b > a:
                cur.setPosition(a)
                cur.setPosition(b, QTextCursor.MoveMode.KeepAnchor)
                cur.setCharFormat(self._format_for(i))
        cur.endEditBlock()

    def set_heatmap(self, on: bool) -> None:
        self._heatmap = on
        self.legend = (
            "Heatmap: each token's probability under this model, red (unlikely) to green (likely)."
            if on
            else ""
        )
        self._recolor()

    def heatmap(self) -> bool:
        return self._heatmap

    def set_overlay(
        self,
        classes: list[str | None] | None,
        colors: dict[str, QColor],
        tooltips: list[str | None] | None,
        legend: str,
    ) -> None:
        """Colour token i by ``colors[classes[i]]`` (None clears the overlay)."""
        self._overlay = classes
        self._overlay_colors = dict(colors)
        self._overlay_tips = tooltips
        self.legend = legend
        self._recolor()

    # -- hover -------------------------------------------------------------------------------

    def token_index_at(self, pos: QPoint) -> int | None:
        doc_pos = self.cursorForPosition(pos).position()
        rect = self.cursorRect(self.cursorForPosition(pos))
        if abs(rect.center().y() - pos.y()) > rect.height():
            return None
        i = bisect.bisect_right(self._starts, doc_pos) - 1
        # the cursor sits between characters: prefer the token whose span contains it
        if 0 <= i < len(self._tokens) and self._starts[i] <= doc_pos < max(self._ends[i], self._starts[i] + 1):
            return i
        if i > 0 and self._starts[i - 1] <= doc_pos - 1 < self._ends[i - 1]:
            return i - 1
        return i if 0 <= i < len(self._tokens) else None

    def tooltip_for(self, i: int) -> str:
        tok = self._tokens[i]
        extra = ""
        if self._overlay_tips is not None and i < len(self._overlay_tips) and self._overlay_tips[i]:
            extra = "<hr>" + str(self._overlay_tips[i])
        return alternatives_html(tok, f"Token {i + 1}") + extra

    def _hover(self, pos: QPoint) -> None:
        i = self.token_index_at(pos)
        if i is not None:
            QToolTip.showText(self.viewport().mapToGlobal(pos), self.tooltip_for(i), self.viewport())
        else:
            QToolTip.hideText()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._hover(event.position().toPoint())
        super().mouseMoveEvent(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._hover(event.position().toPoint())
        super().mousePressEvent(event)


def readable_font() -> QFont:
    f = QFontDatabase.systemFont(QFontDatabase.SystemFont.GeneralFont)
    f.setPointSizeF(max(f.pointSizeF(), 10.0) * 1.1)
    return f

