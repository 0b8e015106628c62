"""The token-shift view: where did post-training change the answer? (after Lin et al., ICLR 2024)

A tab beside the instruct answer: which prompt the base model sees, the class shares, a strip
showing where shifted tokens sit along the answer, and the most frequent shifted tokens.
"""

from __future__ import annotations

import html

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from desktop.core.shift import (
    PROMPT_SOURCE_HELP,
    PROMPT_SOURCE_LABELS,
    ShiftClass,
    ShiftResult,
    ShiftToken,
)
from desktop.core.words import count

SOURCES = tuple(PROMPT_SOURCE_LABELS.items())

LEGEND = (
    "Token shift: "
    + " · ".join(f"<span style='background:{c.color};color:#111'>&nbsp;{c.label}&nbsp;</span>" for c in ShiftClass)
    + " — rank of each instruct token under the base model (1, 2–3, 4+)."
)


def overlay_for(result: ShiftResult, n_tokens: int) -> tuple[list[str | None], list[str | None]]:
    """Per-token class names and hover text (the base model's top-k at that position)."""
    classes: list[str | None] = [None] * n_tokens
    tips: list[str | None] = [None] * n_tokens
    for t in result.tokens:
        if t.index < n_tokens:
            classes[t.index] = t.cls.value
            tips[t.index] = base_tip(t)
    return classes, tips


def base_tip(t: ShiftToken) -> str:
    import math

    rows = []
    for alt in t.base_top:
        p = math.exp(alt.logprob)
        mark = " ◀" if alt.id == t.id else ""
        rows.append(
            f"<tr><td><code>{html.escape(repr(alt.piece)[1:-1])}</code></td>"
            f"<td><div style='background:#6b7280;width:{max(1, int(p * 80))}px;height:8px'></div></td>"
            f"<td>{p:.1%}{mark}</td></tr>"
        )
    return (
        f"<b>{t.cls.label}</b>: the base model ranked this token <b>#{t.rank}</b> "
        f"(p = {math.exp(t.base_logprob):.2%}).<br>The base model's top choices here:"
        f"<table cellspacing=3>{''.join(rows)}</table>"
    )


class PositionStrip(QWidget):
    """A thin bar of the answer's length with a tick at every shifted or marginal token."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(22)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.classes: list[ShiftClass] = []
        self.setToolTip("Where in the answer the shifted (red) and marginal (amber) tokens sit, start to end")

    def set_classes(self, classes: list[ShiftClass]) -> None:
        self.classes = classes
        self.update()

    def paintEvent(self, _ev: QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        r = QRectF(self.rect()).adjusted(1, 4, -1, -4)
        p.fillRect(r, QColor(ShiftClass.UNSHIFTED.color))
        n = len(self.classes)
        if n:
            w = r.width() / n
            for i, c in enumerate(self.classes):
                if c is not ShiftClass.UNSHIFTED:
                    p.fillRect(QRectF(r.left() + i * w, r.top(), max(w, 1.5), r.height()), QColor(c.color).darker(115))
        p.setPen(QColor("#9ca3af"))
        p.drawRect(r)
        p.end()


class ShiftPanel(QWidget):
    analyzeRequested = Signal()
    rerunGreedyRequested = Signal()
    sourceChanged = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        intro = QLabel(
            "Scores the instruct answer under the base model, token by token, in one pass. Tokens the "
            "base model would also have picked are <i>unshifted</i>; the ones it ranked low are where "
            "post-training changed the answer."
        )
        intro.setWordWrap(True)
        lay.addWidget(intro)
        row = QHBoxLayout()
        row.addWidget(QLabel("The base model reads:"))
        self.source = QComboBox()
        for key, text in SOURCES:
            self.source.addItem(text, key)
            self.source.setItemData(self.source.count() - 1, PROMPT_SOURCE_HELP[key],
                                    Qt.ItemDataRole.ToolTipRole)
        self.source.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.source.setToolTip("Which prompt comes before the instruct answer when the base model "
                               "scores it:\n" + "\n".join(f"- {PROMPT_SOURCE_HELP[k]}" for k, _ in SOURCES))
        row.addWidget(self.source)
        row.addStretch(1)
        lay.addLayout(row)
        self.source_help = QLabel(PROMPT_SOURCE_HELP["chat"])
        self.source_help.setWordWrap(True)
        self.source_help.setStyleSheet("color: palette(mid)")
        lay.addWidget(self.source_help)
        act = QHBoxLayout()
        self.analyze = QPushButton("Analyse token shift")
        self.analyze.setToolTip("Score the instruct answer under the base model and colour it by "
                                "shift class (after a comparison has run)")
        self.analyze.setEnabled(False)
        act.addWidget(self.analyze, 0, Qt.AlignmentFlag.AlignTop)
        self.message = QLabel("Run a comparison first.")
        self.message.setWordWrap(True)
        act.addWidget(self.message, 1)
        lay.addLayout(act)
        self.shares = QLabel("")
        self.shares.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(self.shares)
        self.strip = PositionStrip()
        lay.addWidget(self.strip)
        self.top = QLabel("")
        self.top.setWordWrap(True)
        self.top.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(self.top)
        note_row = QHBoxLayout()
        self.sampled = QLabel("")
        self.sampled.setWordWrap(True)
        self.sampled.setStyleSheet("color:#92400e")
        self.rerun = QPushButton("Re-run greedily")
        self.rerun.setToolTip("Run both models again with the Deterministic preset, then analyse")
        self.rerun.hide()
        note_row.addWidget(self.sampled, 1)
        note_row.addWidget(self.rerun)
        lay.addLayout(note_row)
        self.legend = QLabel(LEGEND)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        lay.addWidget(self.legend)
        lay.addStretch(1)
        self.analyze.clicked.connect(self.analyzeRequested)
        self.rerun.clicked.connect(self.rerunGreedyRequested)
        self.source.currentIndexChanged.connect(self._source_changed)

    def _source_changed(self, _i: int) -> None:
        self.source_help.setText(PROMPT_SOURCE_HELP[self.prompt_source()])
        self.sourceChanged.emit(self.prompt_source())

    def prompt_source(self) -> str:
        return str(self.source.currentData())

    def set_prompt_source(self, key: str) -> None:
        i = self.source.findData(key)
        if i >= 0:
            self.source.setCurrentIndex(i)
            self.source_help.setText(PROMPT_SOURCE_HELP[key])

    def reset(self, message: str, can_analyze: bool) -> None:
        self.message.setText(message)
        self.message.setStyleSheet("")
        self.analyze.setEnabled(can_analyze)
        self.shares.clear()
        self.top.clear()
        self.sampled.clear()
        self.rerun.hide()
        self.strip.set_classes([])

    def show_error(self, message: str) -> None:
        self.reset(message, False)
        self.message.setStyleSheet("color:#991b1b")

    def show_result(self, result: ShiftResult) -> None:
        s = result.summary
        sh = s.shares
        parts = []
        for c in ShiftClass:
            parts.append(f"<span style='background:{c.color};color:#111'>&nbsp;{c.label}&nbsp;</span> "
                         f"<b>{sh[c.value]:.0%}</b> ({getattr(s, c.value)})")
        self.shares.setText(" &nbsp; ".join(parts) + f" &nbsp; of {count(s.n_tokens, 'token')}")
        self.strip.set_classes([t.cls for t in result.tokens])
        if s.top_shifted:
            items = ", ".join(f"<code>{html.escape(repr(p)[1:-1])}</code>×{n}" for p, n in s.top_shifted[:10])
            self.top.setText("Most frequent shifted tokens: " + items)
        else:
            self.top.setText("No shifted tokens: the base model would have written every token itself.")
        done = "" if s.complete else " (stopped part-way: the figures cover the tokens scored so far)"
        self.message.setText(f"Scored {count(s.n_tokens, 'token')} in {result.score_s:.2f} s after a "
                             f"{result.prompt_tokens}-token prompt{done}.")
        self.message.setStyleSheet("")
        if not s.greedy:
            self.sampled.setText(s.note or "This answer was sampled, not greedy: the research this "
                                 "view follows measures greedy answers.")
            self.rerun.show()
        else:
            self.sampled.clear()
            self.rerun.hide()
