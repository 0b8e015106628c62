"""The prompt editor, system prompt, base-mode selector, sampling and Run/Stop."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.core.errors import BasedError
from desktop.core.inputs import check_user_prompt
from desktop.core.prompts import BaseMode
from desktop.core.sampling import PRESETS, SAMPLING_RULES, get_preset, shown
from desktop.core.settings import Settings
from desktop.core.types import SamplingParams

TOP_LOGPROBS = 10  # alternatives kept per token for the heatmap's hover
RUN_TIP = "Run both models (Ctrl+Enter)"
FOLLOW_UP_TIP = ("Keep these answers as a turn of a conversation and ask your next message: each "
                 "model reads its own earlier answers (Ctrl+Shift+Enter). With the message above "
                 "already changed, it is asked at once.")
FOLLOW_UP_PLACEHOLDER = "Write your follow-up… (Ctrl+Enter runs, Esc stops)"
PROMPT_PLACEHOLDER = "Type a question or the start of a text… (Ctrl+Enter runs, Esc stops)"
_MESSAGE_STYLE = {
    "error": "QLabel { color: #991b1b; background: #fee2e2; border: 1px solid #fca5a5;"
             " border-radius: 4px; padding: 4px; }",
    "note": "QLabel { color: #78350f; background: #fef3c7; border-radius: 4px; padding: 4px; }",
}


class PromptEdit(QPlainTextEdit):
    """Multi-line prompt: Ctrl+Enter runs, Ctrl+Shift+Enter follows up, Esc stops."""

    runRequested = Signal()
    stopRequested = Signal()
    followUpRequested = Signal()

    def keyPressEvent(self, e: QKeyEvent) -> None:  # noqa: N802
        if e.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and e.modifiers() & Qt.KeyboardModifier.ControlModifier:
            if e.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.followUpRequested.emit()
            else:
                self.runRequested.emit()
            return
        if e.key() == Qt.Key.Key_Escape:
            self.stopRequested.emit()
            return
        super().keyPressEvent(e)


class ControlsPanel(QWidget):
    runRequested = Signal()
    stopRequested = Signal()
    followUpRequested = Signal()
    newConversationRequested = Signal()
    editLastTurnRequested = Signal()
    inputsChanged = Signal()  # prompt, system or mode changed (the inspector refreshes)
    runModeChanged = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 0)
        outer.setSpacing(4)
        # the message, with Run and Stop beside it
        top = QHBoxLayout()
        self.prompt = PromptEdit()
        self.prompt.setPlaceholderText(PROMPT_PLACEHOLDER)
        self.prompt.setToolTip("Your message. Both models get it; Ctrl+Enter runs, Esc stops.")
        self.prompt.setAccessibleName("prompt")
        line = self.prompt.fontMetrics().lineSpacing()
        self.prompt.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.prompt.setFixedHeight(3 * line + 14)  # three lines; a longer message scrolls
        self.prompt.runRequested.connect(self.runRequested)
        self.prompt.stopRequested.connect(self.stopRequested)
        self.prompt.followUpRequested.connect(self.followUpRequested)
        self.prompt.textChanged.connect(self.inputsChanged)
        top.addWidget(self.prompt, 1)
        buttons = QGridLayout()
        buttons.setSpacing(4)
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip(RUN_TIP)
        self.run_button.setDefault(True)
        self.run_button.setMinimumWidth(96)
        font = self.run_button.font()
        font.setBold(True)
        self.run_button.setFont(font)
        self.run_button.clicked.connect(self.runRequested)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop both models (Esc)")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stopRequested)
        self.follow_button = QPushButton("Follow up")
        self.follow_button.setAccessibleName("follow up")
        self.follow_button.setEnabled(False)
        self.follow_button.setToolTip("Run a comparison first: a follow-up continues it")
        self.follow_button.clicked.connect(self.followUpRequested)
        buttons.addWidget(self.run_button, 0, 0, 1, 2)
        buttons.addWidget(self.follow_button, 1, 0)
        buttons.addWidget(self.stop_button, 1, 1)
        buttons.setRowStretch(2, 1)
        top.addLayout(buttons)
        outer.addLayout(top)
        # a conversation: which turn, what each model reads, the context left; take the last turn
        # back or start over (shown once a follow-up kept a turn)
        self.conversation_bar = QFrame()
        self.conversation_bar.setObjectName("conversation")
        self.conversation_bar.setStyleSheet(
            "QFrame#conversation { background:#eef2ff; border-radius:4px; }")
        cb = QHBoxLayout(self.conversation_bar)
        cb.setContentsMargins(6, 2, 4, 2)
        self.conversation_label = QLabel("")
        self.conversation_label.setWordWrap(True)
        self.conversation_label.setAccessibleName("conversation")
        cb.addWidget(self.conversation_label, 1)
        self.edit_turn_button = QPushButton("Edit last turn")
        self.edit_turn_button.setToolTip(
            "Take the last turn back: its message returns above with its answers, so you can "
            "change it and Run it again")
        self.edit_turn_button.clicked.connect(self.editLastTurnRequested)
        cb.addWidget(self.edit_turn_button)
        self.new_button = QPushButton("New conversation")
        self.new_button.setToolTip("Forget the earlier turns and the answers: the next Run starts over")
        self.new_button.clicked.connect(self.newConversationRequested)
        cb.addWidget(self.new_button)
        self.conversation_bar.hide()
        outer.addWidget(self.conversation_bar)
        # why Run was refused, or what Based changed in your values: right under Run
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setAccessibleName("run message")
        self.message.hide()
        outer.addWidget(self.message)
        # the system prompt, what the base model sees, and the settings behind one button
        row = QHBoxLayout()
        system_label = QLabel("System prompt:")
        row.addWidget(system_label)
        self.system = QLineEdit()
        self.system.setPlaceholderText("optional; the Prompt inspector shows where each model gets it")
        self.system.setToolTip("Sent as the system message to the instruct model (and used by the base modes that can)")
        self.system.textChanged.connect(self.inputsChanged)
        system_label.setBuddy(self.system)
        row.addWidget(self.system, 1)
        mode_label = QLabel("Base model sees:")
        row.addWidget(mode_label)
        self.mode = QComboBox()
        for m in BaseMode:
            self.mode.addItem(m.label, m.value)
            self.mode.setItemData(self.mode.count() - 1, m.describe(), Qt.ItemDataRole.ToolTipRole)
        self.mode.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.mode.setToolTip("How your message is turned into a prompt for the base model")
        self.mode.currentIndexChanged.connect(self._mode_changed)
        mode_label.setBuddy(self.mode)
        row.addWidget(self.mode)
        self.settings_button = QToolButton()
        self.settings_button.setCheckable(True)
        self.settings_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.settings_button.setArrowType(Qt.ArrowType.RightArrow)
        self.settings_button.setToolTip("Show or hide the sampling settings both models share")
        self.settings_button.setAccessibleName("settings")
        self.settings_button.toggled.connect(self._toggle_settings)
        row.addWidget(self.settings_button)
        outer.addLayout(row)
        self.mode_help = QLabel("")
        self.mode_help.setWordWrap(True)
        self.mode_help.setStyleSheet("color: palette(mid)")
        outer.addWidget(self.mode_help)
        # what the prompt means when it is empty in raw mode (a note, not an error)
        self.prompt_note = QLabel("")
        self.prompt_note.setWordWrap(True)
        self.prompt_note.setStyleSheet(_MESSAGE_STYLE["note"])
        self.prompt_note.setAccessibleName("prompt note")
        self.prompt_note.hide()
        outer.addWidget(self.prompt_note)
        # raw mode only: hand-written chat markup may be sent as control tokens (off by default)
        self.raw_controls = QCheckBox("My text contains control tokens")
        self.raw_controls.setToolTip(
            "For chat markup written by hand: text such as <|im_start|> or <eos> is sent as the "
            "model's control token. Off: everything you type is read as plain text."
        )
        self.raw_controls.setAccessibleName("raw control tokens")
        self.raw_controls.toggled.connect(self.inputsChanged)
        self.raw_controls.hide()
        row.insertWidget(row.indexOf(self.mode) + 1, self.raw_controls)

        # the sampling settings, shared by both models: hidden until asked for
        self.settings_panel = QFrame()
        self.settings_panel.setFrameShape(QFrame.Shape.StyledPanel)
        grid = QGridLayout(self.settings_panel)
        grid.setContentsMargins(6, 4, 6, 4)
        self.preset = QComboBox()
        tips = []
        for key, preset in PRESETS.items():  # the same presets as `based compare --preset`
            self.preset.addItem(preset.label, key)
            tip = f"{preset.summary} ({preset.describe()})"
            self.preset.setItemData(self.preset.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
            tips.append(f"{preset.label}: {tip}")
        self.preset.addItem("Custom", "custom")
        self.preset.setToolTip("\n".join(tips))
        self.preset.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.preset.activated.connect(self._preset_chosen)
        self.preset.currentIndexChanged.connect(self._show_preset)
        # every range lies inside desktop.core.sampling's rules (a test checks both ends)
        self.temperature = self._dspin(0, 2, 0.05, "Higher is more random; 0 is greedy")
        self.top_p = self._dspin(0.01, 1, 0.05, "Keep the smallest set of tokens whose probability adds up to this")
        self.top_k = self._ispin(0, 200, "Keep only the k most likely tokens (0: all)")
        self.min_p = self._dspin(0, 1, 0.01, "Drop tokens less likely than this fraction of the top token")
        self.repeat_penalty = self._dspin(0.5, 2, 0.05, "Above 1 discourages repeating recent tokens")
        self.seed = self._ispin(0, 2**31 - 1, "Same seed and settings give the same answer")
        self.max_tokens = self._ispin(1, 8192, "Longest answer, in tokens")
        self.fields: dict[str, QSpinBox | QDoubleSpinBox] = {
            "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
            "min_p": self.min_p, "repeat_penalty": self.repeat_penalty, "seed": self.seed,
            "max_tokens": self.max_tokens,
        }
        self.run_mode = QComboBox()
        self.run_mode.addItem("Auto", "auto")
        self.run_mode.addItem("Side by side", "parallel")
        self.run_mode.addItem("One after the other", "sequential")
        self.run_mode.setToolTip(
            "Side by side splits the CPU between both models; one after the other gives each all of it. "
            "Auto picks what is faster on this computer."
        )
        self.run_mode.activated.connect(self._run_mode_chosen)
        cells: list[tuple[str, QWidget]] = [
            ("Preset", self.preset), ("Temperature", self.temperature), ("Top-p", self.top_p),
            ("Top-k", self.top_k), ("Models run", self.run_mode), ("Min-p", self.min_p),
            ("Repeat penalty", self.repeat_penalty), ("Seed", self.seed), ("Max tokens", self.max_tokens),
        ]
        per_row = 5
        for n, (text, w) in enumerate(cells):
            r, c = divmod(n, per_row)
            label = QLabel(text)
            label.setBuddy(w)
            grid.addWidget(label, r, 2 * c, Qt.AlignmentFlag.AlignRight)
            grid.addWidget(w, r, 2 * c + 1, Qt.AlignmentFlag.AlignLeft)
        grid.setColumnStretch(2 * per_row, 1)
        self.settings_panel.hide()
        outer.addWidget(self.settings_panel)
        for w in (self.temperature, self.top_p, self.min_p, self.repeat_penalty):
            w.valueChanged.connect(self._edited)
        for s in (self.top_k, self.seed, self.max_tokens):
            s.valueChanged.connect(self._edited)
        self.prompt.textChanged.connect(self._prompt_changed)
        self.system.textChanged.connect(self._prompt_changed)
        self._applying = False
        self._blocked = ""  # why Run cannot start at all (no models), or ""
        self._running = False
        self._show_preset()
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
        """The form's values; raises InvalidSetting (one sentence) if one breaks the rules."""
        return SamplingParams(
            temperature=self.temperature.value(),
            top_p=self.top_p.value(),
            top_k=self.top_k.value(),
            min_p=self.min_p.value(),
            repeat_penalty=self.repeat_penalty.value(),
            seed=self.seed.value(),
            max_tokens=self.max_tokens.value(),
            top_logprobs=TOP_LOGPROBS,
        )

    def base_mode(self) -> str:
        return str(self.mode.currentData())

    def raw_control_tokens(self) -> bool:
        """Raw mode's "my text contains control tokens" switch (False in the other modes)."""
        return self.raw_controls.isChecked() and self.base_mode() == BaseMode.RAW.value

    def _set_value(self, field: str, value: float) -> str:
        """Show ``value`` in the field's box; a sentence when the box had to change it."""
        box = self.fields[field]
        box.setValue(value)  # type: ignore[arg-type]
        shown_value = box.value()
        if abs(float(shown_value) - float(value)) <= 1e-9:
            return ""
        name = SAMPLING_RULES[field].name
        name = name[:1].lower() + name[1:]
        return (f"Based changed {name} from {shown(value)} to {shown(shown_value)}, the nearest "
                "value this window offers.")

    def apply_params(self, p: SamplingParams, *, max_tokens: bool = False) -> list[str]:
        """Show a preset's (or saved) values; returns a sentence for each value the boxes could
        not show exactly (e.g. a temperature above 2 from the settings file)."""
        self._applying = True
        fields = ["temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed"]
        if max_tokens:
            fields.append("max_tokens")
        try:
            changed = [self._set_value(f, getattr(p, f)) for f in fields]
        finally:
            self._applying = False
        return [c for c in changed if c]

    def load_settings(self, s: Settings) -> None:
        self.prompt.setPlainText(s.user_prompt)
        self.system.setText(s.system_prompt)
        idx = self.mode.findData(s.base_mode)
        self.mode.setCurrentIndex(max(idx, 0))
        try:
            saved = SamplingParams(s.temperature, s.top_p, s.top_k, s.min_p, s.repeat_penalty,
                                   s.seed, s.max_tokens)
        except BasedError as exc:  # settings made in code, not read from the file (that is checked)
            saved = get_preset("deterministic").params(max_tokens=self.max_tokens.value())
            changed = [f"{exc} Based shows the Deterministic preset instead."]
        else:
            changed = self.apply_params(saved, max_tokens=True)
        preset = s.preset
        if preset in PRESETS and any(getattr(self.params(), f) != v for f, v in PRESETS[preset].values):
            preset = "custom"  # values edited by hand: say what they are, not the old preset
        self.preset.setCurrentIndex(max(self.preset.findData(preset), 0))
        self.run_mode.setCurrentIndex(max(self.run_mode.findData(s.run_mode), 0))
        if changed:
            self.show_message(" ".join(changed), error=False)
        else:
            self.clear_message()

    # -- messages and the checks before a run ------------------------------------------------

    def show_message(self, text: str, *, error: bool = True, blocked: bool = False) -> None:
        """One message next to Run: why a run was refused (error) or what Based changed."""
        self.message.setStyleSheet(_MESSAGE_STYLE["error" if error else "note"])
        self.message.setText(text)
        self.message.setProperty("error", error)
        self.message.setProperty("blocked", blocked)
        self.message.show()

    def clear_message(self) -> None:
        self.message.hide()
        self.message.setText("")
        self.message.setProperty("error", False)
        self.message.setProperty("blocked", False)

    def run_problem(self) -> str | None:
        """Why Run cannot start with what the form holds (one sentence), or None. Checks the
        message (empty outside raw mode) and every sampling value, before any work."""
        try:
            check_user_prompt(self.prompt.toPlainText(), self.base_mode(), system=self.system.text())
            self.params()
        except BasedError as exc:
            return str(exc)
        return None

    def check_run(self) -> bool:
        """Show the reason next to Run and return False when the form cannot run."""
        if self._blocked:
            self.show_message(self._blocked, error=True, blocked=True)
            return False
        problem = self.run_problem()
        if problem is None:
            if self.message.property("error"):
                self.clear_message()
            return True
        self.show_message(problem, error=True)
        if not self.prompt.toPlainText().strip():
            self.prompt.setFocus()
        return False

    def store_settings(self, s: Settings) -> None:
        s.user_prompt = self.prompt.toPlainText()
        s.system_prompt = self.system.text()
        s.base_mode = self.base_mode()
        s.temperature, s.top_p = self.temperature.value(), self.top_p.value()
        s.top_k, s.min_p = self.top_k.value(), self.min_p.value()
        s.repeat_penalty, s.seed = self.repeat_penalty.value(), self.seed.value()
        s.max_tokens = self.max_tokens.value()
        s.preset = str(self.preset.currentData())
        s.run_mode = str(self.run_mode.currentData())

    def set_running(self, running: bool) -> None:
        self._running = running
        self.stop_button.setEnabled(running)
        self._update_run_button()
        self.edit_turn_button.setEnabled(not running)
        self.new_button.setEnabled(not running)

    def set_follow_up(self, reason: str) -> None:
        """Follow up is possible ("") or not, with the reason as its tooltip."""
        self.follow_button.setEnabled(not reason)
        self.follow_button.setToolTip(reason or FOLLOW_UP_TIP)

    def set_conversation(self, turns: int, words: str) -> None:
        """``turns`` finished turns kept (0: no conversation, the bar hides); ``words``: what to
        say about it (which turn comes, what each model reads, the context left)."""
        self.conversation_bar.setVisible(turns > 0)
        self.conversation_label.setText(words)
        self.prompt.setPlaceholderText(FOLLOW_UP_PLACEHOLDER if turns else PROMPT_PLACEHOLDER)

    def set_blocked(self, reason: str) -> None:
        """Why Run cannot start at all ("" when it can): Run is disabled and its tooltip says why;
        Run by keyboard shows the reason next to Run."""
        self._blocked = reason
        if not reason and self.message.property("blocked"):
            self.clear_message()
        self._update_run_button()

    @property
    def blocked(self) -> str:
        return self._blocked

    def _update_run_button(self) -> None:
        self.run_button.setEnabled(not self._running and not self._blocked)
        if self._blocked:
            tip = self._blocked
        elif self._running:
            tip = "Both models are running: Stop (Esc) first, or wait for them to finish"
        else:
            tip = RUN_TIP
        self.run_button.setToolTip(tip)

    # -- slots ---------------------------------------------------------------------------------

    @Slot()
    def _mode_changed(self) -> None:
        self.mode_help.setText(BaseMode(self.base_mode()).describe())
        self.raw_controls.setVisible(self.base_mode() == BaseMode.RAW.value)
        self._prompt_changed()
        self.inputsChanged.emit()

    @Slot()
    def _prompt_changed(self) -> None:
        """Raw mode's note for an empty message; a refusal shown earlier goes once fixed."""
        try:
            note = check_user_prompt(self.prompt.toPlainText(), self.base_mode(),
                                     system=self.system.text())
        except BasedError:
            note = ""
        self.prompt_note.setText(note)
        self.prompt_note.setVisible(bool(note))
        if self.message.property("error") and not self.message.property("blocked") \
                and self.run_problem() is None:
            self.clear_message()

    @Slot(int)
    def _preset_chosen(self, index: int) -> None:
        key = self.preset.itemData(index)
        if key in PRESETS:
            self.apply_params(PRESETS[key].params())

    def choose_preset(self, key: str) -> None:
        """Select a sampling preset and apply its values, as if the user picked it."""
        i = self.preset.findData(key)
        self.preset.setCurrentIndex(i)
        self._preset_chosen(i)

    @Slot()
    def _show_preset(self) -> None:
        name = self.preset.currentText().split(" (")[0]  # "Deterministic", details in the menu
        self.settings_button.setText(f"Settings: {name}")

    @Slot(bool)
    def _toggle_settings(self, on: bool) -> None:
        self.settings_panel.setVisible(on)
        self.settings_button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)

    def show_settings(self, on: bool = True) -> None:
        self.settings_button.setChecked(on)

    @Slot(int)
    def _run_mode_chosen(self, _index: int) -> None:
        self.runModeChanged.emit(str(self.run_mode.currentData()))

    @Slot()
    def _edited(self) -> None:
        if not self._applying:
            self.preset.setCurrentIndex(self.preset.findData("custom"))
