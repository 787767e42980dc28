"""``--threads auto``: a measured sweep over a few thread counts, remembered
per machine, model and runtime; a remembered choice is reused without
measuring; a broken memory is measured again, never trusted."""

from __future__ import annotations

import json

import pytest
import torch

from core.jobs import threads as threads_job
from core.jobs.threads import CACHE_FILE, auto_threads, candidate_counts, sweep_key
from core.models.loading import load_model


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    yield tmp_path
    torch.set_num_threads(1)


@pytest.fixture
def quiet(monkeypatch):
    """The machine taken as quiet: the test suite's other worker keeps it busy,
    and a choice swept on a busy machine is not remembered (its own test)."""
    from core.measure.machine_load import MachineLoad

    monkeypatch.setattr(MachineLoad, "busy", property(lambda self: ""))


@pytest.fixture(scope="module")
def loaded(tiny_llama_dir):
    return load_model(str(tiny_llama_dir), device="cpu")


def test_candidate_counts_cover_one_to_all_cores():
    assert candidate_counts(1) == [1]
    assert candidate_counts(2) == [1, 2]
    assert candidate_counts(16) == [1, 2, 4, 8, 12, 16]
    assert candidate_counts(6) == [1, 2, 4, 6]


def test_sweep_measures_each_count_and_is_remembered(loaded, cache_dir, monkeypatch, quiet):
    monkeypatch.setattr(threads_job, "candidate_counts", lambda cores: [1, 2])
    chosen = auto_threads(loaded, "torch")
    assert torch.get_num_threads() == chosen
    entry = json.loads((cache_dir / CACHE_FILE).read_text())[sweep_key(loaded, "torch")]
    timings = {int(n): ms for n, ms in entry["decode_ms_per_token"].items()}
    assert set(timings) == {1, 2} and all(ms > 0 for ms in timings.values())
    fastest = min(timings.values())
    # the fewest threads within 3% of the fastest
    assert chosen == min(n for n, ms in timings.items() if ms <= fastest * 1.03)

    def no_sweep(*args, **kwargs):
        raise AssertionError("a remembered choice must not be measured again")

    monkeypatch.setattr(threads_job, "_sweep", no_sweep)
    torch.set_num_threads(3)
    assert auto_threads(loaded, "torch") == chosen == torch.get_num_threads()


def test_a_broken_memory_is_measured_again(loaded, cache_dir, monkeypatch):
    monkeypatch.setattr(threads_job, "candidate_counts", lambda cores: [1, 2])
    (cache_dir / CACHE_FILE).write_text("{not json")
    swept = []
    monkeypatch.setattr(threads_job, "_sweep", lambda *a: swept.append(a) or ({1: 5.0, 2: 3.0}, ""))
    assert auto_threads(loaded, "torch") == 2 and len(swept) == 1
    key = sweep_key(loaded, "torch")
    (cache_dir / CACHE_FILE).write_text(json.dumps({key: {"threads": 999}}))
    assert auto_threads(loaded, "torch") == 2 and len(swept) == 2  # not a count it would try


def test_a_choice_measured_on_a_busy_machine_is_used_not_remembered(loaded, cache_dir, monkeypatch):
    # a sweep beside another process chose 1 thread and kept it (sweep 13)
    monkeypatch.setattr(threads_job, "candidate_counts", lambda cores: [1, 2])
    busy = ({1: 1.4, 2: 15.4}, "load 3.0 on 2 cores")
    monkeypatch.setattr(threads_job, "_sweep", lambda *a: busy)
    lines = []
    assert auto_threads(loaded, "torch", lines.append) == 1
    assert "not remembered" in lines[-1].stage
    assert not (cache_dir / CACHE_FILE).exists()


def test_each_runtime_has_its_own_choice(loaded):
    assert sweep_key(loaded, "torch") != sweep_key(loaded, "ort-w4")


def test_cli_bench_with_auto_threads(tiny_llama_dir, cache_dir, capsys, quiet):
    from core.cli.main import main

    args = ["bench", "-m", str(tiny_llama_dir), "--threads", "auto", "--json"]
    args += ["--prompt-tokens", "8", "--new-tokens", "3", "--min-repeats", "1", "--min-time", "0"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    (entry,) = json.loads((cache_dir / CACHE_FILE).read_text()).values()
    assert data["environment"]["threads"] == entry["threads"]


@pytest.mark.parametrize("value", ["banana", "0", "1.5"])
def test_cli_refuses_bad_threads(tiny_llama_dir, value, capsys):
    from core.cli.main import main

    assert main(["bench", "-m", str(tiny_llama_dir), "--threads", value]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--threads" in line
