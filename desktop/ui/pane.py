"""One side of the comparison: model picker, status, the streaming answer and its inspector."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QGuiApplication, QPainter, QPaintEvent, QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from desktop.core.types import GenerationStats, GGUFInfo, LoadedModelInfo, StopReason, StreamToken
from desktop.core.words import count, no_text_reason
from desktop.ui.answer_view import AnswerView
from desktop.ui.inspector import PromptInspector

OPEN_FILE = "__open__"
# where models run (Settings.gpu): the choice's menu entry and tooltip
GPU_CHOICES = (
    ("auto", "Auto", "Every layer on the GPU when the model and its context fit its free memory, "
                     "else as many layers as fit, else the CPU"),
    ("cpu", "CPU only", "Run the model on the processor only"),
    ("layers", "GPU layers", "Put this many of the model's layers on the GPU, the rest on the CPU"),
)
PLACEHOLDER = "The answer will stream here."


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1000  # type: ignore[assignment]
    return f"{n:.1f} TB"


class StatusLine(QWidget):
    """Up to two lines of status text that never re-lays out the window when the text changes.

    A word-wrapped QLabel asks its layout for a new size on every setText, which re-lays out the
    whole window; while a model streams, that cost the model a third of its speed on two cores.
    This widget has a fixed height and only repaints itself."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._text = ""
        fm = self.fontMetrics()
        self.setFixedHeight(fm.lineSpacing() * 2 + 4)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:  # noqa: N802 (QLabel's name, so callers need not care)
        if text != self._text:
            self._text = text
            self.setToolTip(text)
            self.update()

    def paintEvent(self, _ev: QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        p.setPen(self.palette().color(QPalette.ColorRole.WindowText))
        r = self.rect().adjusted(0, 2, 0, -2)
        p.drawText(r, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap),
                   self._text)
        p.end()


def transcript_html(turns: list[tuple[str, str]], current: str | None) -> str:
    """One side of a conversation: each earlier message and this model's own answer to it, then
    the message being answered now."""

    def para(text: str) -> str:
        return html.escape(text).replace("\n", "<br>")

    parts = []
    for n, (user, answer) in enumerate(turns, 1):
        parts.append(f"<p style='margin:6px 0 2px 0'><b>You</b> <span style='color:#6b7280'>"
                     f"· turn {n}</span><br>{para(user)}</p>")
        shown = para(answer) if answer.strip() else "<i>(no text)</i>"
        parts.append(f"<p style='margin:2px 0 6px 14px; color:#374151'><b>This model</b> "
                     f"<span style='color:#6b7280'>· turn {n}</span><br>{shown}</p>")
    if current is not None:
        parts.append(f"<p style='margin:6px 0 2px 0'><b>You</b> <span style='color:#6b7280'>"
                     f"· turn {len(turns) + 1} (its answer is below)</span><br>{para(current)}</p>")
    return "".join(parts)


class ModelPane(QWidget):
    modelChosen = Signal(str)  # path
    gpuChoiceChanged = Signal(str, int)  # Settings.gpu ("auto" | "cpu" | "layers"), its layer count

    def __init__(self, side: str, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.side = side
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        head = QHBoxLayout()
        self.title = QLabel(f"<b>{html.escape(title)}</b>")
        head.addWidget(self.title)
        self.picker = QComboBox()
        self.picker.setMinimumContentsLength(16)
        self.picker.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.picker.setToolTip(f"Choose the {side} model")
        self.picker.setAccessibleName(f"{side} model")
        self.picker.activated.connect(self._picked)
        head.addWidget(self.picker, 1)
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip(f"Pick a .gguf model file from your disk as the {side} model")
        self.open_button.clicked.connect(self.open_file)
        head.addWidget(self.open_button)
        lay.addLayout(head)
        self.info = QLabel("No model chosen")
        self.info.setWordWrap(True)
        self.info.setStyleSheet("color: palette(mid)")
        self.info.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.info.setMinimumHeight(self.info.fontMetrics().lineSpacing())
        lay.addWidget(self.info)
        # where the model runs ("GPU: Radeon 780M via Vulkan, 30/30 layers" or "CPU (AVX2)") and
        # the choice of where models run: with the line above, both panes' answers start at the
        # same height
        where_row = QHBoxLayout()
        self.where = QLabel("")
        self.where.setAccessibleName(f"{side} runs on")
        self.where.setStyleSheet("color: palette(mid)")
        self.where.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        where_row.addWidget(self.where, 1)
        self.gpu_choice = QComboBox()
        for key, entry, tip in GPU_CHOICES:
            self.gpu_choice.addItem(entry, key)
            self.gpu_choice.setItemData(self.gpu_choice.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.gpu_choice.setToolTip("Where models run: Auto uses the GPU when the model fits its memory")
        self.gpu_choice.setAccessibleName("where models run")
        self.gpu_choice.activated.connect(self._gpu_choice_edited)
        where_row.addWidget(self.gpu_choice)
        self.gpu_layers = QSpinBox()
        self.gpu_layers.setRange(-1, 999)
        self.gpu_layers.setSpecialValueText("all")  # -1: every layer (llama.cpp's "negative: all")
        self.gpu_layers.setToolTip("How many of the model's layers go to the GPU (all: every one)")
        self.gpu_layers.setAccessibleName("GPU layers")
        self.gpu_layers.editingFinished.connect(self._gpu_choice_edited)
        self.gpu_layers.hide()
        where_row.addWidget(self.gpu_layers)
        lay.addLayout(where_row)
        self.status = StatusLine()
        self.status.setAccessibleName(f"{side} status")
        lay.addWidget(self.status)
        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(
            "QLabel { color: #991b1b; background: #fee2e2; border: 1px solid #fca5a5;"
            " border-radius: 4px; padding: 6px; }"
        )
        self.error.hide()
        lay.addWidget(self.error)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        answer_box = QWidget()
        al = QVBoxLayout(answer_box)
        al.setContentsMargins(0, 0, 0, 0)
        al.setSpacing(2)
        # a conversation: this model's side of the earlier turns, above the answer
        self.transcript = QTextBrowser()
        self.transcript.setAccessibleName(f"{side} conversation")
        self.transcript.setToolTip("The conversation so far, with this model's own earlier answers")
        self.transcript.hide()
        self.answer = AnswerView()
        self.answer_split = QSplitter(Qt.Orientation.Vertical)
        self.answer_split.setChildrenCollapsible(False)
        self.answer_split.addWidget(self.transcript)
        self.answer_split.addWidget(self.answer)
        self.answer_split.setStretchFactor(0, 2)
        self.answer_split.setStretchFactor(1, 3)
        al.addWidget(self.answer_split, 1)
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self.legend.setStyleSheet("color: palette(mid)")
        self.legend.hide()
        al.addWidget(self.legend)
        # the answer's tools sit in the tab bar's corner, so the answer keeps the height
        tools = QWidget()
        tl = QHBoxLayout(tools)
        tl.setContentsMargins(0, 0, 2, 0)
        self.heatmap = QCheckBox("Heatmap")
        self.heatmap.setToolTip("Colour each token by how likely the model found it (hover a token for alternatives)")
        self.heatmap.toggled.connect(self._toggle_heatmap)
        tl.addWidget(self.heatmap)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy this answer to the clipboard")
        self.copy_button.setEnabled(False)
        self.copy_button.clicked.connect(self.copy_answer)
        tl.addWidget(self.copy_button)
        self.tabs.setCornerWidget(tools, Qt.Corner.TopRightCorner)
        self.tools = tools  # they act on the answer: shown with the Answer tab only
        self.tabs.currentChanged.connect(self._tab_changed)
        self.tabs.addTab(answer_box, "Answer")
        self.inspector = PromptInspector(side)
        self.tabs.addTab(self.inspector, "Prompt inspector")
        lay.addWidget(self.tabs, 1)
        self._run_error = False  # the error shown came from a run (not from loading the model)
        self._paths: list[str] = []

    # -- model list ----------------------------------------------------------------------------

    def set_models(self, entries: list[tuple[str, str]], current: str) -> None:
        """``entries``: (label, path). Keeps ``current`` selected (adding it if needed)."""
        self.picker.blockSignals(True)
        self.picker.clear()
        self._paths = []
        if current and current not in [p for _, p in entries]:
            entries = [(Path(current).name, current), *entries]
        if not entries:
            self.picker.addItem("No models yet", "")
        for label, path in entries:
            self.picker.addItem(label, path)
            self.picker.setItemData(self.picker.count() - 1, path, 3)  # tooltip role
            self._paths.append(path)
        self.picker.addItem("Open GGUF file…", OPEN_FILE)
        idx = self.picker.findData(current) if current else 0
        self.picker.setCurrentIndex(max(idx, 0))
        self.picker.blockSignals(False)

    def current_path(self) -> str:
        data = self.picker.currentData()
        return data if isinstance(data, str) and data != OPEN_FILE else ""

    @Slot(int)
    def _picked(self, index: int) -> None:
        data = self.picker.itemData(index)
        if data == OPEN_FILE:
            self.open_file()
        elif data:
            self.modelChosen.emit(str(data))

    @Slot()
    def open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, f"Open a {self.side} model", str(Path.home()), "GGUF models (*.gguf);;All files (*)"
        )
        if path:
            self.modelChosen.emit(path)

    # -- state ---------------------------------------------------------------------------------

    def set_model_info(self, info: LoadedModelInfo | None, gguf: GGUFInfo | None,
                       path: str = "") -> None:
        if gguf is None:
            self.info.setText(Path(path).name if path else "No model chosen")
            self.info.setToolTip(path)
            self.where.setText("")
            return
        bits = [gguf.name, gguf.file_type or "?", gguf.size_label or "", human_size(gguf.file_size)]
        text = " · ".join(b for b in bits if b)
        self.where.setText(f"Runs on {info.where}" if info else "")
        self.where.setToolTip(info.where if info else "")
        if info and info.note:
            text += f" — {info.note}"
        self.info.setText(text)
        self.info.setToolTip(gguf.path)

    def set_gpu_choice(self, choice: str, layers: int) -> None:
        """Show the setting of where models run (no signal)."""
        self.gpu_choice.blockSignals(True)
        self.gpu_layers.blockSignals(True)
        self.gpu_choice.setCurrentIndex(max(0, self.gpu_choice.findData(choice)))
        self.gpu_layers.setValue(max(-1, min(layers, self.gpu_layers.maximum())))
        self.gpu_layers.setVisible(choice == "layers")
        self.gpu_choice.blockSignals(False)
        self.gpu_layers.blockSignals(False)

    def gpu_setting(self) -> tuple[str, int]:
        return str(self.gpu_choice.currentData()), int(self.gpu_layers.value())

    @Slot()
    def _gpu_choice_edited(self) -> None:
        choice, layers = self.gpu_setting()
        self.gpu_layers.setVisible(choice == "layers")
        self.gpuChoiceChanged.emit(choice, layers)

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def set_transcript(self, turns: list[tuple[str, str]], current: str | None = None) -> None:
        """Show this side of the conversation's earlier turns (message, this model's answer) and
        the message answered now above the answer; hidden when there are none."""
        if not turns:
            self.transcript.clear()
            self.transcript.hide()
            return
        self.transcript.setHtml(transcript_html(turns, current))
        self.transcript.show()
        bar = self.transcript.verticalScrollBar()
        bar.setValue(bar.maximum())

    def show_error(self, message: str, *, from_run: bool = False) -> None:
        self.error.setText(message)
        self.error.show()
        self._run_error = from_run

    def clear_error(self) -> None:
        self.error.hide()
        self.error.setText("")
        self._run_error = False

    def start_answer(self) -> None:
        self.answer.setPlaceholderText(PLACEHOLDER)
        self.answer.clear_answer()
        self.clear_error()
        self.copy_button.setEnabled(False)
        self._show_legend(self.answer.legend)

    def clear_answer(self, status: str = "") -> None:
        """Forget the last answer and everything shown about it (its error, stats, colours),
        because the inputs it came from changed; an error about loading the model stays."""
        self.answer.setPlaceholderText(PLACEHOLDER)
        self.answer.clear_answer()
        if self._run_error:
            self.clear_error()
        self.copy_button.setEnabled(False)
        self._show_legend(self.answer.legend)
        self.set_status(status)

    def append_tokens(self, tokens: list[StreamToken]) -> None:
        self.answer.append_tokens(tokens)
        if any(t.text for t in tokens):
            self.copy_button.setEnabled(True)

    def finish_answer(self, stats: GenerationStats) -> None:
        """An answer with no text says why, instead of a blank pane."""
        if not self.answer.text().strip():
            reason = no_text_reason(stats.stop_reason)
            if stats.stop_reason is StopReason.STOP_STRING:
                reason += " The Prompt inspector shows what it was given."
            self.answer.setPlaceholderText(f"({reason})")

    def set_legend(self, text: str) -> None:
        self._show_legend(text)

    def _show_legend(self, text: str) -> None:
        self.legend.setText(text)
        self.legend.setVisible(bool(text))

    def finish(self, stats: GenerationStats) -> None:
        self.set_status(stats_line(stats))

    @Slot()
    def copy_answer(self) -> None:
        QGuiApplication.clipboard().setText(self.answer.text())

    @Slot(int)
    def _tab_changed(self, index: int) -> None:
        self.tools.setVisible(index == 0)

    @Slot(bool)
    def _toggle_heatmap(self, on: bool) -> None:
        self.answer.set_heatmap(on)
        self._show_legend(self.answer.legend)


def stats_line(stats: GenerationStats) -> str:
    reused = (f" ({count(stats.cached_tokens, 'token')} reused from the cache)"
              if stats.cached_tokens else "")
    return (
        f"{count(stats.prompt_tokens, 'prompt token')}{reused} · first token after "
        f"{stats.time_to_first_token_s:.2f} s · {count(stats.generated_tokens, 'token')} at "
        f"{stats.tokens_per_second:.1f} tok/s · {stats.stop_reason.words}"
    )
