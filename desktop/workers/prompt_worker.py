"""Renders and tokenizes both sides' prompts off the GUI thread, for the inspector and for Run."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal, Slot

from desktop.core.errors import BasedError, failure_sentence
from desktop.core.gguf_info import validate_gguf
from desktop.core.prompts import (
    BaseMode,
    Conversation,
    PromptInspection,
    RenderedPrompt,
    file_tokenizer,
    inspect_prompt,
    render_base,
    render_instruct,
    tokenizer_facts_for,
)
from desktop.core.types import GGUFInfo
from desktop.workers.events import PairJob, PairReport, PromptJob, PromptReport, SidePrompt
from desktop.workers.threads import new_thread, quit_and_wait

DEFAULT_N_CTX = 4096


def _inspect(info: GGUFInfo, rendered: RenderedPrompt, n_ctx: int) -> PromptInspection:
    return inspect_prompt(
        rendered, file_tokenizer(info.path), bos_token_id=info.bos_token_id, n_ctx=n_ctx,
    )


def _conversations(job: PromptJob, infos: dict[str, GGUFInfo | None]) -> dict[str, Conversation]:
    """Each side's conversation: the earlier turns with *its own* answers, then the new message.
    A model's answer keeps the control tokens it generated (its tokenizer's facts)."""
    from desktop.core.conversation import ComparedTurn, Message, answer_message, side_conversation

    system = job.system or None
    if not job.turns:
        conv = Conversation(job.user, system)
        return {"base": conv, "instruct": conv}
    facts = {s: tokenizer_facts_for(i) if i is not None else None for s, i in infos.items()}
    turns = [
        ComparedTurn((Message("user", t.user),),
                     answer_message(t.base_text, t.base_tokens, facts["base"]),
                     answer_message(t.instruct_text, t.instruct_tokens, facts["instruct"]))
        for t in job.turns
    ]
    then = (Message("user", job.user),)
    return {s: side_conversation(system, turns, s, then) for s in ("base", "instruct")}


def build_report(job: PromptJob, n_ctx: int = DEFAULT_N_CTX) -> PromptReport:
    """Plain function (no Qt) so it is testable and reusable by the self-test."""
    infos: dict[str, GGUFInfo | None] = {"base": None, "instruct": None}
    errors: dict[str, str | None] = {"base": None, "instruct": None}
    for side, path in (("base", job.base_path), ("instruct", job.instruct_path)):
        if not path:
            errors[side] = "Pick a model for this side."
            continue
        try:
            infos[side] = validate_gguf(path)
        except BasedError as exc:
            errors[side] = str(exc)

    try:
        convs = _conversations(job, infos)
    except BasedError as exc:
        return PromptReport(job.request_id, SidePrompt("base", None, str(exc)),
                            SidePrompt("instruct", None, str(exc)))

    def side_prompt(side: str) -> SidePrompt:
        info = infos[side]
        if info is None:
            return SidePrompt(side, None, errors[side])
        given = job.n_ctx[0 if side == "base" else 1]
        if given > 0:
            ctx = given  # the loaded model's context
        else:
            ctx = min(n_ctx, info.context_length) if info.context_length else n_ctx
        try:
            if side == "instruct":
                rendered = render_instruct(info, convs[side], merge_system_if_refused=True)
            else:
                rendered = render_base(BaseMode(job.base_mode), convs[side], base=info,
                                       twin=infos["instruct"],
                                       raw_control_tokens=job.raw_control_tokens)
            return SidePrompt(side, _inspect(info, rendered, ctx), None, rendered.template.text)
        except BasedError as exc:
            return SidePrompt(side, None, str(exc))
        except Exception as exc:  # never let a stranger's template kill the worker
            return SidePrompt(side, None, failure_sentence("The prompt could not be built", exc))

    shift_base = None
    if job.turns and infos["base"] is not None:
        try:
            shift_base = render_base(BaseMode(job.base_mode), convs["instruct"], base=infos["base"],
                                     twin=infos["instruct"],
                                     raw_control_tokens=job.raw_control_tokens)
        except BasedError:
            shift_base = None
        except Exception:
            shift_base = None
    return PromptReport(job.request_id, side_prompt("base"), side_prompt("instruct"), shift_base)


class PromptWorker(QObject):
    ready = Signal(object)
    pairChecked = Signal(object)  # PairReport

    def __init__(self, n_ctx: int = DEFAULT_N_CTX) -> None:
        super().__init__()
        self.n_ctx = n_ctx

    @Slot(object)
    def compute(self, job: PromptJob) -> None:
        self.ready.emit(build_report(job, self.n_ctx))

    @Slot(object)
    def check_pair(self, job: PairJob) -> None:
        from desktop.core.pair import check_pair

        self.pairChecked.emit(PairReport(job.request_id, check_pair(job.base_path, job.instruct_path)))


class PromptHost(QObject):
    """GUI-side owner of the prompt worker thread."""

    _compute = Signal(object)
    _check_pair = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.qthread = new_thread("prompt-inspector")
        self.worker = PromptWorker()
        self.worker.moveToThread(self.qthread)
        self._compute.connect(self.worker.compute)
        self._check_pair.connect(self.worker.check_pair)
        self.qthread.start()
        self._alive = True

    def compute(self, job: PromptJob) -> None:
        self._compute.emit(job)

    def check_pair(self, job: PairJob) -> None:
        self._check_pair.emit(job)

    def shutdown(self, timeout_ms: int = 3000) -> bool:
        if not self._alive:
            return True
        self._alive = False
        return quit_and_wait(self.qthread, timeout_ms)
