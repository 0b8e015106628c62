"""The prompt editor, system prompt, base-mode selector, sampling and Run/Stop."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop.core.prompts import BaseMode
from desktop.core.settings import Settings
from desktop.core.types import SamplingParams

PRESETS = {
    "deterministic": SamplingParams.deterministic(),
    "creative": SamplingParams.creative(),
}


class PromptEdit(QPlainTextEdit):
    """Multi-line prompt: Ctrl+Enter runs, Esc stops."""

    runRequested = Signal()
    stopRequested = Signal()

    def keyPressEvent(self, e: QKeyEvent) -> None:  # noqa: N802
        if e.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and e.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.runRequested.emit()
            return
        if e.key() == Qt.Key.Key_Escape:
            self.stopRequested.emit()
            return
        super().keyPressEvent(e)


class ControlsPanel(QWidget):
    runRequested = Signal()
    stopRequested = Signal()
    inputsChanged = Signal()  # prompt, system or mode changed (the inspector refreshes)
    runModeChanged = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QHBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        left = QVBoxLayout()
        self.prompt = PromptEdit()
        self.prompt.setPlaceholderText("Type a question or the start of a text… (Ctrl+Enter runs, Esc stops)")
        self.prompt.setToolTip("Your message. Both models get it; Ctrl+Enter runs, Esc stops.")
        self.prompt.setAccessibleName("prompt")
        self.prompt.setMinimumHeight(60)
        self.prompt.setMaximumHeight(140)
        self.prompt.runRequested.connect(self.runRequested)
        self.prompt.stopRequested.connect(self.stopRequested)
        self.prompt.textChanged.connect(self.inputsChanged)
        left.addWidget(self.prompt, 1)
        self.system = QLineEdit()
        self.system.setPlaceholderText("Optional system prompt for the instruct model")
        self.system.setToolTip("Sent as the system message to the instruct model (and used by the base modes that can)")
        self.system.textChanged.connect(self.inputsChanged)
        left.addWidget(self.system)
        mode_row = QHBoxLayout()
        mode_row.addWidget(QLabel("Base model sees:"))
        self.mode = QComboBox()
        for m in BaseMode:
            self.mode.addItem(m.label, m.value)
        self.mode.setToolTip("How your message is turned into a prompt for the base model")
        self.mode.currentIndexChanged.connect(self._mode_changed)
        mode_row.addWidget(self.mode)
        self.mode_help = QLabel("")
        self.mode_help.setWordWrap(True)
        self.mode_help.setStyleSheet("color: palette(mid)")
        mode_row.addWidget(self.mode_help, 1)
        left.addLayout(mode_row)
        self.raw_controls = QCheckBox("My text contains control tokens")
        self.raw_controls.setToolTip(
            "For chat markup written by hand: text such as <|im_start|> or <eos> is sent as the "
            "model's control token. Off: everything you type is read as plain text."
        )
        self.raw_controls.setAccessibleName("raw control tokens")
        self.raw_controls.toggled.connect(self.inputsChanged)
        left.addWidget(self.raw_controls)
        outer.addLayout(left, 3)

        box = QGroupBox("Sampling (shared)")
        grid = QGridLayout(box)
        self.preset = QComboBox()
        self.preset.addItem("Deterministic (greedy, fixed seed)", "deterministic")
        self.preset.addItem("Creative", "creative")
        self.preset.addItem("Custom", "custom")
        self.preset.setToolTip("Deterministic: same answer every run. Creative: varied answers.")
        self.preset.activated.connect(self._preset_chosen)
        grid.addWidget(self.preset, 0, 0, 1, 4)
        self.temperature = self._dspin(0, 2, 0.05, "Higher is more random; 0 is greedy")
        self.top_p = self._dspin(0, 1, 0.05, "Keep the smallest set of tokens whose probability adds up to this")
        self.top_k = self._ispin(0, 200, "Keep only the k most likely tokens (0: all)")
        self.min_p = self._dspin(0, 1, 0.01, "Drop tokens less likely than this fraction of the top token")
        self.repeat_penalty = self._dspin(0.5, 2, 0.05, "Above 1 discourages repeating recent tokens")
        self.seed = self._ispin(0, 2**31 - 1, "Same seed and settings give the same answer")
        self.max_tokens = self._ispin(1, 8192, "Longest answer, in tokens")
        f1, f2 = QFormLayout(), QFormLayout()
        f1.addRow("Temperature", self.temperature)
        f1.addRow("Top-p", self.top_p)
        f1.addRow("Top-k", self.top_k)
        f1.addRow("Min-p", self.min_p)
        f2.addRow("Repeat penalty", self.repeat_penalty)
        f2.addRow("Seed", self.seed)
        f2.addRow("Max tokens", self.max_tokens)
        self.run_mode = QComboBox()
        self.run_mode.addItem("Auto", "auto")
        self.run_mode.addItem("Side by side", "parallel")
        self.run_mode.addItem("One after the other", "sequential")
        self.run_mode.setToolTip(
            "Side by side splits the CPU between both models; one after the other gives each all of it. "
            "Auto picks what is faster on this computer."
        )
        self.run_mode.activated.connect(self._run_mode_chosen)
        f2.addRow("Run", self.run_mode)
        grid.addLayout(f1, 1, 0, 1, 2)
        grid.addLayout(f2, 1, 2, 1, 2)
        buttons = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("Run both models (Ctrl+Enter)")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.runRequested)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop both models (Esc)")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stopRequested)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.stop_button)
        grid.addLayout(buttons, 2, 0, 1, 4)
        outer.addWidget(box, 2)
        for w in (self.temperature, self.top_p, self.min_p, self.repeat_penalty):
            w.valueChanged.connect(self._edited)
        for s in (self.top_k, self.seed, self.max_tokens):
            s.valueChanged.connect(self._edited)
        self._applying = False
        self._mode_changed()

    def _dspin(self, lo: float, hi: float, step: float, tip: str) -> QDoubleSpinBox:
        w = QDoubleSpinBox()
        w.setRange(lo, hi)
        w.setSingleStep(step)
        w.setDecimals(2)
        w.setToolTip(tip)
        return w

    def _ispin(self, lo: int, hi: int, tip: str) -> QSpinBox:
        w = QSpinBox()
        w.setRange(lo, hi)
        w.setToolTip(tip)
        return w

    # -- values --------------------------------------------------------------------------------

    def params(self) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature.value(),
            top_p=self.top_p.value(),
            top_k=self.top_k.value(),
            min_p=self.min_p.value(),
            repeat_penalty=self.repeat_penalty.value(),
            seed=self.seed.value(),
            max_tokens=self.max_tokens.value(),
            top_logprobs=10,
        )

    def base_mode(self) -> str:
        return str(self.mode.currentData())

    def raw_control_tokens(self) -> bool:
        """Raw mode's "my text contains control tokens" switch (False in the other modes)."""
        return self.raw_controls.isChecked() and self.base_mode() == BaseMode.RAW.value

    def apply_params(self, p: SamplingParams) -> None:
        self._applying = True
        self.temperature.setValue(p.temperature)
        self.top_p.setValue(p.top_p)
        self.top_k.setValue(p.top_k)
        self.min_p.setValue(p.min_p)
        self.repeat_penalty.setValue(p.repeat_penalty)
        self.seed.setValue(p.seed)
        self._applying = False

    def load_settings(self, s: Settings) -> None:
        self.prompt.setPlainText(s.user_prompt)
        self.system.setText(s.system_prompt)
        idx = self.mode.findData(s.base_mode)
        self.mode.setCurrentIndex(max(idx, 0))
        self.apply_params(
            SamplingParams(s.temperature, s.top_p, s.top_k, s.min_p, s.repeat_penalty, s.seed)
        )
        self.max_tokens.setValue(s.max_tokens)
        self.preset.setCurrentIndex(max(self.preset.findData(s.preset), 0))
        self.run_mode.setCurrentIndex(max(self.run_mode.findData(s.run_mode), 0))

    def store_settings(self, s: Settings) -> None:
        p = self.params()
        s.user_prompt = self.prompt.toPlainText()
        s.system_prompt = self.system.text()
        s.base_mode = self.base_mode()
        s.temperature, s.top_p, s.top_k, s.min_p = p.temperature, p.top_p, p.top_k, p.min_p
        s.repeat_penalty, s.seed, s.max_tokens = p.repeat_penalty, p.seed, p.max_tokens
        s.preset = str(self.preset.currentData())
        s.run_mode = str(self.run_mode.currentData())

    def set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    # -- slots ---------------------------------------------------------------------------------

    @Slot()
    def _mode_changed(self) -> None:
        self.mode_help.setText(BaseMode(self.base_mode()).describe())
        self.raw_controls.setVisible(self.base_mode() == BaseMode.RAW.value)
        self.inputsChanged.emit()

    @Slot(int)
    def _preset_chosen(self, index: int) -> None:
        key = self.preset.itemData(index)
        if key in PRESETS:
            self.apply_params(PRESETS[key])

    def choose_preset(self, key: str) -> None:
        """Select a sampling preset and apply its values, as if the user picked it."""
        i = self.preset.findData(key)
        self.preset.setCurrentIndex(i)
        self._preset_chosen(i)

    @Slot(int)
    def _run_mode_chosen(self, _index: int) -> None:
        self.runModeChanged.emit(str(self.run_mode.currentData()))

    @Slot()
    def _edited(self) -> None:
        if not self._applying:
            self.preset.setCurrentIndex(self.preset.findData("custom"))
