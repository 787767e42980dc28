"""A chat template that fails (raises on purpose, a syntax error, a message
it indexes that is not there) is the template's refusal, said in one line,
in the generate command as in the engine; a working template is applied."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil

import pytest

from core.cli.main import main
from core.models.loading import load_model
from core.runtime.chat_template import ChatTemplateError
from core.runtime.generation import encode_prompt

FAILING = {
    "raises": ("{{ raise_exception('no system role') }}", "TemplateError: no system role"),
    "syntax": ("{% for m in messages %}{{ m.content ", "TemplateSyntaxError"),
    "index": ("{{ messages[5].content }}", "UndefinedError"),
}


@pytest.fixture(scope="module")
def loaded(tiny_llama_dir):
    return load_model(str(tiny_llama_dir), device="cpu")


def _with_template(loaded, template):
    tokenizer = copy.deepcopy(loaded.tokenizer)
    tokenizer.chat_template = template
    return dataclasses.replace(loaded, tokenizer=tokenizer)


@pytest.mark.parametrize("kind", list(FAILING))
def test_a_failing_template_is_refused_in_one_line(loaded, kind):
    template, said = FAILING[kind]
    with pytest.raises(ChatTemplateError, match=said) as refused:
        encode_prompt(_with_template(loaded, template), "hi", chat=True)
    assert "\n" not in str(refused.value)


def test_a_template_that_loops_too_long_is_stopped(loaded, monkeypatch):
    """10**10 steps of nested loops (jinja2's sandbox bounds each range only):
    stopped once its time is up, in one line; the next render is untraced."""
    import sys
    import time

    from core.runtime import chat_template

    monkeypatch.setattr(chat_template, "RENDER_SECONDS", 0.3)
    looping = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    before, start = sys.gettrace(), time.monotonic()
    with pytest.raises(ChatTemplateError, match="did not finish rendering") as refused:
        encode_prompt(_with_template(loaded, looping), "hi", chat=True)
    assert time.monotonic() - start < 5
    assert "\n" not in str(refused.value)
    assert sys.gettrace() is before  # the trace function is gone after the render
    template = "{% for m in messages %}[{{ m['content'] }}]{% endfor %}"
    assert loaded.tokenizer.decode(encode_prompt(_with_template(loaded, template), "hi", True)[0])


def test_a_working_template_is_applied(loaded):
    template = "{% for m in messages %}[{{ m['content'] }}]{% endfor %}"
    ids = encode_prompt(_with_template(loaded, template), "hi", chat=True)
    assert loaded.tokenizer.decode(ids[0]) == "[hi]"


def test_the_cli_says_it_and_exits_2(tiny_llama_dir, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(tiny_llama_dir, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["chat_template"] = FAILING["raises"][0]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    args = ["generate", "-m", str(folder), "--chat", "--prompt", "hi", "--max-new-tokens", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "chat template refused" in err[-1]
    assert not any("Traceback" in line for line in err)
