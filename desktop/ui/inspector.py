"""Prompt-format inspector: exactly what one model was given, as a string and as tokens."""

from __future__ import annotations

import html
from itertools import groupby

from PySide6.QtCore import QEvent, QObject
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QTextBrowser,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from desktop.core.prompts import PromptInspection
from desktop.core.tokenization import display_piece
from desktop.core.types import TokenInfo
from desktop.core.words import count

SPECIAL_BG = "#f5c2e7"
SPECIAL_FG = "#7a1f5c"
TYPED_STYLE = "background:#fff7d6;color:#92400e;text-decoration:underline wavy #d97706"
TYPED_TIP = "typed as text: looks like a control token, but the model reads it as plain text"
CHIP_BGS = ("#dbeafe", "#dcfce7", "#fef3c7", "#fde2e4", "#e0e7ff")


# A zero-width space after each space or tab marker: the marker replaces the space, so without
# it a line could only break inside a word ("a / ccurate"); with it, lines break where the text
# has whitespace, as it would without markers.
BREAK = "&#8203;"


def visible_whitespace(text: str) -> str:
    """HTML for text with spaces, tabs and newlines made visible; lines wrap at whitespace."""
    out = []
    for ch in text:
        if ch == " ":
            out.append(f"<span style='color:#9ca3af'>·</span>{BREAK}")
        elif ch == "\t":
            out.append(f"<span style='color:#9ca3af'>→</span>{BREAK}")
        elif ch == "\n":
            out.append("<span style='color:#9ca3af'>↵</span><br>")
        elif ch == "\r":
            out.append("<span style='color:#9ca3af'>␍</span>")
        else:
            out.append(html.escape(ch))
    return "".join(out)


def prompt_html(tokens: tuple[TokenInfo, ...] | list[TokenInfo], text: str) -> str:
    """The exact prompt string, special tokens highlighted, control-looking text typed by people
    marked, whitespace visible. Runs of text tokens are decoded together, so a character split
    over several tokens (an emoji) reads as itself here and as bytes in the token chips."""
    if not tokens:
        return f"<div style='font-family:monospace'>{visible_whitespace(text)}</div>"
    parts = []
    for (special, typed), run in groupby(tokens, key=lambda t: (t.special, t.typed)):
        toks = list(run)
        if special:
            parts += [
                f"<span style='background:{SPECIAL_BG};color:{SPECIAL_FG};font-weight:bold'>"
                f"{html.escape(t.piece)}</span>" for t in toks
            ]
            continue
        if all(t.raw for t in toks):
            shown = display_piece(b"".join(t.raw for t in toks))
        else:
            shown = "".join(t.piece for t in toks)
        if typed:
            parts.append(f"<span style='{TYPED_STYLE}' title='{TYPED_TIP}'>"
                         f"{visible_whitespace(shown)}</span>")
        else:
            parts.append(visible_whitespace(shown))
    return "<div style='font-family:monospace'>" + "".join(parts) + "</div>"


def chips_html(tokens: tuple[TokenInfo, ...] | list[TokenInfo]) -> str:
    """Tokens as coloured chips; each is an anchor so hover can show its id."""
    parts = []
    for i, t in enumerate(tokens):
        if t.special:
            style = f"background:{SPECIAL_BG};color:{SPECIAL_FG};font-weight:bold"
        elif t.typed:
            style = TYPED_STYLE
        else:
            style = f"background:{CHIP_BGS[i % len(CHIP_BGS)]};color:#111"
        piece = visible_whitespace(t.piece) if t.piece else "∅"
        parts.append(f"<a href='tok:{i}' style='text-decoration:none;{style}'>{piece}</a>")
    return "<div style='font-family:monospace;line-height:160%'>" + "&#8203;".join(parts) + "</div>"


class _TokenBrowser(QTextBrowser):
    """Shows a tooltip with the token id for the chip under the mouse."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.viewport().setMouseTracking(True)
        self.viewport().installEventFilter(self)
        self.tokens: tuple[TokenInfo, ...] = ()

    def tooltip_at(self, anchor: str) -> str:
        if not anchor.startswith("tok:"):
            return ""
        i = int(anchor[4:])
        if i >= len(self.tokens):
            return ""
        t = self.tokens[i]
        kind = "special token" if t.special else "token"
        tip = f"#{i + 1}: {kind} id {t.id} {t.piece!r}"
        return f"{tip} ({TYPED_TIP})" if t.typed else tip

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if obj is self.viewport() and event.type() == QEvent.Type.MouseMove:
            pos = event.position().toPoint()  # type: ignore[attr-defined]
            tip = self.tooltip_at(self.anchorAt(pos))
            if tip:
                QToolTip.showText(self.viewport().mapToGlobal(pos), tip, self.viewport())
            else:
                QToolTip.hideText()
        return super().eventFilter(obj, event)


class TemplateDialog(QDialog):
    def __init__(self, title: str, source: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(720, 520)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("This Jinja template is rendered in a sandbox with time and size limits."))
        edit = QPlainTextEdit(source)
        edit.setReadOnly(True)
        edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        lay.addWidget(edit)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)


class PromptInspector(QWidget):
    def __init__(self, side: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.side = side
        self._template_source: str | None = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        top = QHBoxLayout()
        self.source_label = QLabel("Template: –")
        self.source_label.setWordWrap(True)
        self.view_template = QPushButton("View template…")
        self.view_template.setToolTip("Show the Jinja source of the chat template")
        self.view_template.setEnabled(False)
        self.view_template.clicked.connect(self._show_template)
        top.addWidget(self.source_label, 1)
        top.addWidget(self.view_template)
        lay.addLayout(top)
        self.count_bar = QProgressBar()
        self.count_bar.setTextVisible(True)
        self.count_bar.setFormat("– tokens")
        self.count_bar.setToolTip("Prompt tokens against the model's context window, and the "
                                  "tokens left for the answer and later turns")
        lay.addWidget(self.count_bar)
        self.warnings = QLabel("")
        self.warnings.setWordWrap(True)
        self.warnings.setStyleSheet("color:#b45309")
        self.warnings.hide()
        lay.addWidget(self.warnings)
        self.tabs = QTabWidget()
        self.text_view = QTextBrowser()
        self.text_view.setToolTip("The exact prompt: special tokens highlighted, ·=space ↵=newline →=tab")
        self.chips = _TokenBrowser()
        self.chips.setToolTip("")
        self.tabs.addTab(self.text_view, "Prompt text")
        self.tabs.addTab(self.chips, "Tokens")
        lay.addWidget(self.tabs, 1)
        self.inspection: PromptInspection | None = None

    def show_error(self, message: str) -> None:
        self.inspection = None
        self.source_label.setText("Template: –")
        self.text_view.setHtml(f"<p style='color:#b91c1c'>{html.escape(message)}</p>")
        self.chips.setHtml("")
        self.chips.tokens = ()
        self.count_bar.setRange(0, 1)
        self.count_bar.setValue(0)
        self.count_bar.setFormat("– tokens")
        self.warnings.hide()

    def show_inspection(self, ins: PromptInspection, template_source: str | None) -> None:
        self.inspection = ins
        spec = ins.rendered.template
        self.source_label.setText(f"Template: {spec.where} — {spec.name}")
        self._template_source = template_source
        self.view_template.setEnabled(bool(template_source))
        self.text_view.setHtml(prompt_html(ins.tokens, ins.rendered.text))
        self.chips.tokens = ins.tokens
        self.chips.setHtml(chips_html(ins.tokens))
        n_ctx = max(ins.n_ctx, 1)
        self.count_bar.setRange(0, n_ctx)
        self.count_bar.setValue(min(ins.token_count, n_ctx))
        bos = "BOS added by tokenizer" if ins.rendered.add_bos else "no BOS added by tokenizer"
        if ins.rendered.add_eos:
            bos += ", EOS added by tokenizer"
        left = max(ins.n_ctx - ins.token_count, 0)
        self.count_bar.setFormat(f"{ins.token_count:,} / {count(ins.n_ctx, 'token')}, "
                                 f"{left:,} left ({bos})")
        if ins.warnings:
            self.warnings.setText("⚠ " + "\n⚠ ".join(ins.warnings))
            self.warnings.show()
        else:
            self.warnings.hide()

    def _show_template(self) -> None:
        if self._template_source:
            TemplateDialog(f"Chat template ({self.side})", self._template_source, self).exec()

