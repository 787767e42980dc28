"""A conversation through the tokenizer's own chat template.

The template is Jinja text shipped in the model's tokenizer_config.json (or
chat_template.jinja): a template that raises on purpose (``raise_exception``
for a role it refuses), has a syntax error, or indexes a message that is not
there fails inside jinja2 with its own exception types. Any of them is the
template's refusal, said in one line; the generate command, the window and
the server each show it their own way.
"""

from __future__ import annotations

import sys
import time

from core.errors import UnsupportedModelError
from core.message_text import first_line

# A real template renders in milliseconds; one that loops for billions of
# steps (jinja2's sandbox bounds ``range``, not nested loops) would hang the
# generate command, a job or a server request.
RENDER_SECONDS = 5.0
TEMPLATE_FILE = "<template>"  # the file name jinja2 compiles a template's code under


class ChatTemplateError(UnsupportedModelError):
    """The model's chat template cannot render these messages."""


class _TooLong(Exception):
    pass


def chat_template_ids(tokenizer, turns: list[dict]) -> list[int]:
    try:
        with _Deadline(RENDER_SECONDS):
            ids = tokenizer.apply_chat_template(
                turns, add_generation_prompt=True, tokenize=True, return_dict=True
            )["input_ids"]
    except _TooLong:
        raise ChatTemplateError(
            f"the model's chat template did not finish rendering these messages in "
            f"{RENDER_SECONDS:g} s (a loop that runs too long); it was stopped"
        ) from None
    except Exception as err:  # noqa: BLE001 - jinja2 raises its own types, and any is the template's
        raise ChatTemplateError(
            f"the model's chat template refused these messages ({type(err).__name__}: "
            f"{first_line(err, 200)})"
        ) from None
    return list(ids)


class _Deadline:
    """Stops the template's own code once ``seconds`` have passed.

    jinja2 compiles a template to Python code under ``TEMPLATE_FILE``; a
    trace function on this thread (``sys.settrace``) sees each line that code
    runs and raises there once the time is up. Other code is not traced
    line by line, so the cost is the template's alone. A thread cannot be
    stopped from outside, and a process per prompt would cost more than the
    render, so this is done by hand.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.lines = 0

    def __enter__(self):
        self.end = time.monotonic() + self.seconds
        self.previous = sys.gettrace()
        sys.settrace(self._call)
        return self

    def __exit__(self, *_exc) -> None:
        sys.settrace(self.previous)

    def _call(self, frame, _event, _arg):
        return self._line if frame.f_code.co_filename == TEMPLATE_FILE else None

    def _line(self, _frame, _event, _arg):
        self.lines += 1
        if self.lines % 1024 == 0 and time.monotonic() > self.end:
            raise _TooLong
        return self._line
