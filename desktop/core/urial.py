"""URIAL: in-context alignment for base models.

After Lin et al., "The Unlocking Spell on Base LLMs: Rethinking Alignment via In-Context Learning"
(ICLR 2024). A base model is given a plain-text preamble and a few styled ``# Query:`` /
``# Answer:`` examples, and then the user's query. The preamble and examples below are written by
the Based authors in that style; they are not the paper's text.

Below about 1B parameters the effect is not established: the UI presents this as an experiment.
"""

from __future__ import annotations

from desktop.core.sampling import preset_params

PREAMBLE = """# Instruction

Below is a list of conversations between a curious person and a knowledgeable AI assistant. \
Each person asks a question in the "# Query:" section, and the assistant answers in the \
"# Answer:" section. The assistant gives helpful, accurate and well-organized answers. It is \
honest: when it does not know something, it says so instead of making things up. It is \
friendly and polite, and it declines clearly when a request could cause harm.
"""

EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "Why does the Moon look bigger near the horizon?",
        "Good question! The Moon is not actually bigger near the horizon: photos show it has "
        "the same size in the sky. The effect is an optical illusion, called the Moon illusion.\n\n"
        "1. **Reference objects**: near the horizon you see the Moon next to trees and buildings, "
        "which makes it seem large.\n"
        "2. **The shape of the sky**: our brain treats the sky as a flattened dome, so it judges an "
        "object at the horizon to be farther away, and therefore bigger.\n\n"
        "Scientists still debate the exact mix of causes, but all agree it happens in the mind, "
        "not in the sky.",
    ),
    (
        "Write a two-line poem about coffee.",
        "Sure, here is a short poem:\n\n"
        "A bitter cup, a morning friend,\n"
        "you start my day and help it end.",
    ),
    (
        "How can I pick the lock on my neighbour's door while they are away?",
        "I'm sorry, but I can't help with getting into someone else's home without their "
        "permission. If you are worried about your neighbour or their house, you could call "
        "them, contact the building manager, or, in an emergency, the police. If you are "
        "locked out of your own home, a licensed locksmith can help.",
    ),
)

STOPS: tuple[str, ...] = ("\n```\n\n#", "# Query:", "\n\n\n\n")

# The paper's suggested decoding for URIAL (the "urial" preset of desktop.core.sampling).
URIAL_SAMPLING = preset_params("urial", max_tokens=256)


QUERY_OPEN = "# Query:\n```\n"
ANSWER_OPEN = "# Answer:\n```\n"
ANSWER_CLOSE = "\n```\n\n"


def query_block(query: str) -> str:
    """A ``# Query:`` block, up to where its answer begins."""
    return f"{QUERY_OPEN}{query}\n```\n\n"


def _block(query: str, answer: str | None) -> str:
    text = query_block(query) + ANSWER_OPEN
    if answer is not None:
        text += answer + ANSWER_CLOSE
    return text


def build_preamble(system: str | None = None) -> str:
    """The preamble (a system prompt, if any, extends it) and the example blocks: everything
    before the first query."""
    preamble = PREAMBLE
    if system and system.strip():
        preamble += f"\n{system.strip()}\n"
    return "".join([preamble, "\n\n", *(_block(q, a) for q, a in EXAMPLES)])


def build(user: str, system: str | None = None) -> str:
    """The URIAL prompt for ``user``. A system prompt, if any, extends the preamble."""
    return build_preamble(system) + _block(user, None)
