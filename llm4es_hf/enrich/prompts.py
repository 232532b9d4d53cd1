"""The enrichment prompts: the LLM4ES authors' system and user prompts, for any domain.

The authors ask a frozen instruct LLM to rewrite a user's serialized bank transactions
into another textual form. Here the domain words (event, events, user, description)
come from the data set's ``EventSchema.domain``, so the same prompts serve ratings,
visits or clinical events. Each variant is one instruction; the serialized text goes
after it, in a delimited block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import Llm4esError
from ..schema import DomainWords, EventSchema

SYSTEM_PROMPT = (
    "You transform a structured list of {events} into another text format, preserving all original data fields. "
    "The data describes {description}."
)

_INTRO = (
    "Below are the {events} of one {user}, as a table: the first line is the header, "
    "and each following line is one {event}."
)
_PARAPHRASE = (
    "Paraphrase the category names and the types of {events} while keeping their meaning. "
    "Keep the result understandable."
)
_FREE = (
    "Creatively transform this tabular data into a different textual representation "
    "(JSON, HTML, Markdown, plain text, XML, YAML or another format). "
    "Randomize the format and the structure. " + _PARAPHRASE
)
_FIXED = "Transform this tabular data into {target}. Keep every field of every {event}. " + _PARAPHRASE


@dataclass(frozen=True)
class PromptVariant:
    """One way of asking for a rewrite.

    ``instruction`` is a template over the domain words ``{event}``, ``{events}``,
    ``{user}`` and ``{description}``; ``target_format`` names the fixed output format,
    if any (None: the model chooses).
    """

    name: str
    instruction: str
    help: str
    target_format: str | None = None


def _fixed(name: str, target: str, label: str) -> PromptVariant:
    return PromptVariant(
        name=name,
        instruction=_FIXED.replace("{target}", target),
        help=f"rewrite as {label}",
        target_format=name,
    )


VARIANTS: dict[str, PromptVariant] = {
    "free": PromptVariant(
        name="free",
        instruction=_FREE,
        help="the authors' prompt: a format and structure of the model's choice, paraphrased names",
    ),
    "json": _fixed("json", "a JSON document", "JSON"),
    "html": _fixed("html", "an HTML document", "HTML"),
    "markdown": _fixed("markdown", "a Markdown document (tables, lists or headings)", "Markdown"),
    "plain_table": _fixed(
        "plain_table",
        "a plain-text table with columns aligned by spaces (no Markdown, no HTML)",
        "an aligned plain-text table",
    ),
    "all_events": PromptVariant(
        name="all_events",
        instruction=_FREE + " Write ALL {events}: do not skip, merge or summarize any {event}.",
        help="the free rewrite, told to write every event",
    ),
    "analysis": PromptVariant(
        name="analysis",
        instruction=_FREE + " At the end, give a short analysis of this {user}'s {events}.",
        help="the free rewrite, ending with a short analysis of the user",
    ),
}


def get_variant(variant: str | PromptVariant) -> PromptVariant:
    """The registered variant of that name (a PromptVariant passes through)."""
    if isinstance(variant, PromptVariant):
        return variant
    if variant not in VARIANTS:
        raise Llm4esError(f"unknown enrichment variant {variant!r}; known: {sorted(VARIANTS)}", key="variant")
    return VARIANTS[variant]


def domain_words(schema: EventSchema | None) -> dict[str, str]:
    """The words a prompt uses for the data set's events and users."""
    words = DomainWords() if schema is None else schema.domain
    return {"event": words.event, "events": words.events, "user": words.user, "description": words.description}


def system_prompt(schema: EventSchema | None) -> str:
    """The system message, in the data set's words."""
    return SYSTEM_PROMPT.format_map(domain_words(schema))


def user_prompt(text: str, variant: str | PromptVariant, schema: EventSchema | None) -> str:
    """The user message: the variant's instruction in the data set's words, then the data."""
    spec = get_variant(variant)
    words = domain_words(schema)
    intro = _INTRO.format_map(words)
    instruction = spec.instruction.format_map(words)
    return f"{intro}\n{instruction}\n\nData:\n```\n{text}\n```"


def build_messages(text: str, variant: str | PromptVariant, schema: EventSchema | None) -> list[dict[str, str]]:
    """System + user chat messages asking to rewrite one user's serialized text."""
    return [
        {"role": "system", "content": system_prompt(schema)},
        {"role": "user", "content": user_prompt(text, variant, schema)},
    ]


def render_prompt(messages: list[dict[str, str]], tokenizer: Any) -> str:
    """The messages rendered through the generator's chat template, ready for the assistant's turn."""
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise Llm4esError(f"the generator's tokenizer {name!r} has no chat template; use an instruct model")
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
