"""A conversation through the tokenizer's own chat template.

The template is Jinja text shipped in the model's tokenizer_config.json (or
chat_template.jinja): a template that raises on purpose (``raise_exception``
for a role it refuses), has a syntax error, or indexes a message that is not
there fails inside jinja2 with its own exception types. Any of them is the
template's refusal, said in one line; the generate command, the window and
the server each show it their own way.
"""

from __future__ import annotations

from core.errors import UnsupportedModelError
from core.message_text import first_line


class ChatTemplateError(UnsupportedModelError):
    """The model's chat template cannot render these messages."""


def chat_template_ids(tokenizer, turns: list[dict]) -> list[int]:
    try:
        ids = tokenizer.apply_chat_template(
            turns, add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
    except Exception as err:  # noqa: BLE001 - jinja2 raises its own types, and any is the template's
        raise ChatTemplateError(
            f"the model's chat template refused these messages ({type(err).__name__}: "
            f"{first_line(err, 200)})"
        ) from None
    return list(ids)
