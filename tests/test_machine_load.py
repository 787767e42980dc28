"""The machine-busy check: other programs' CPU use around a timed region."""

import subprocess
import sys
import time

import pytest

from core.measure.machine_load import (
    BUSY_CORES,
    MIN_REGION_S,
    CpuReading,
    MachineLoadMonitor,
    other_cores,
    read_cpu,
)


def _fake(readings):
    """A monitor reading ``readings`` (busy_s, own_s, wall_s) in turn, never sleeping."""
    it = iter(CpuReading(*r) for r in readings)
    return MachineLoadMonitor(read=lambda: next(it), sleep=lambda s: None)


def _run(readings):
    monitor = _fake(readings)
    monitor.start()
    return monitor.stop()


def test_our_own_cpu_time_is_not_counted_as_other_programs():
    # 2 s timed: the cores were busy 3.8 s, of which 3.6 s were ours.
    others, own = other_cores(CpuReading(10.0, 5.0, 100.0), CpuReading(13.8, 8.6, 102.0))
    assert others == pytest.approx(0.1) and own == pytest.approx(1.8)


def test_quiet_busy_during_and_busy_around():
    # readings: before sample (2), start, end, after sample (2): busy_s, own_s, wall_s
    quiet = _run([(0, 0, 0), (0.01, 0, 0.1), (1, 0, 1), (4.2, 3, 3), (4.2, 3, 3), (4.21, 3, 3.1)])
    assert quiet.status == "measured" and quiet.busy == ""
    assert quiet.other_cores_during == pytest.approx(0.1) and quiet.own_cores_during == 1.5
    during = _run([(0, 0, 0), (0, 0, 0.1), (1, 0, 1), (6, 3, 3), (6, 3, 3), (6, 3, 3.1)])
    assert during.other_cores_during == pytest.approx(1.0)
    assert during.busy.startswith("other programs used 1.0 cores on average while timing")
    around = _run([(0, 0, 0), (0.1, 0, 0.1), (1, 0, 1), (4, 3, 3), (4, 3, 3), (4.1, 3, 3.1)])
    assert around.other_cores_during == 0 and around.busy  # 1 core busy before and after
    edge = _run([(0, 0, 0), (0, 0, 0.1), (1, 0, 1), (1 + 2 * BUSY_CORES, 0, 3)] + [(9, 0, 9)] * 2)
    assert edge.busy == ""  # exactly at the bound is still quiet


def test_unknown_where_proc_stat_is_missing():
    monitor = MachineLoadMonitor(read=lambda: None, sleep=lambda s: None)
    monitor.start()
    load = monitor.stop()
    assert load.status.startswith("unknown") and load.busy == ""
    assert load.to_dict()["other_cores_during"] is None


@pytest.mark.skipif(read_cpu() is None, reason="needs /proc/stat (Linux)")
def test_real_reading_counts_own_cpu_like_process_time():
    monitor = MachineLoadMonitor()
    monitor.start()
    cpu0 = time.process_time()
    end = time.monotonic() + 0.5
    while time.monotonic() < end:  # our own work: not another program's
        pass
    own_s = time.process_time() - cpu0
    load = monitor.stop()
    assert load.status == "measured" and load.cpus >= 1
    assert load.own_cores_during * load.seconds == pytest.approx(own_s, abs=0.05)
    assert 0 <= load.other_cores_during <= load.cpus + 0.2


@pytest.mark.skipif(read_cpu() is None, reason="needs /proc/stat (Linux)")
def test_two_spinning_programs_make_it_busy():
    spin = [sys.executable, "-c", "while True: pass"]
    spinners = [subprocess.Popen(spin) for _ in range(2)]
    try:
        time.sleep(0.3)
        monitor = MachineLoadMonitor()
        monitor.start()
        time.sleep(1.0)
        load = monitor.stop()
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert load.other_cores_during > 2 * BUSY_CORES
    assert load.busy.startswith("other programs used")


@pytest.mark.skipif(read_cpu() is None, reason="needs /proc/stat (Linux)")
def test_benchmark_record_cli_and_report_carry_the_load(tiny_llama_dir, capsys):
    from types import SimpleNamespace

    from core.cli.bench import _print_bench
    from core.cli.record_text import print_record
    from core.export.report import build_report, render_html
    from core.measure.speed import BenchSettings, run_benchmark
    from core.models.loading import load_model
    from core.passes.recipe import Recipe
    from tests.test_health import _record

    loaded = load_model(str(tiny_llama_dir), device="cpu")
    settings = BenchSettings(prompt_tokens=8, new_tokens=4, warmup=0, min_repeats=3, min_time_s=0)
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.3)
        result = run_benchmark(loaded, settings)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert result.machine_load.status == "measured"
    assert result.to_dict()["machine_busy"] == result.machine_busy != ""
    _print_bench(SimpleNamespace(json=False), loaded, result, "  (timings)")
    assert f"  BUSY MACHINE: {result.machine_busy}" in capsys.readouterr().out.splitlines()

    busy = _record(machine_busy=result.machine_busy, machine_load=result.machine_load.to_dict())
    print_record(busy)
    assert f"  BUSY MACHINE: {result.machine_busy}" in capsys.readouterr().out
    page = render_html(build_report("m", Recipe(), [busy], None, {}, ("report",), {}))
    assert "<p class='busy'>The exported run was timed on a busy machine: other programs" in page
    quiet = render_html(build_report("m", Recipe(), [_record()], None, {}, ("report",), {}))
    assert "class='busy'" not in quiet


@pytest.mark.skipif(read_cpu() is None, reason="needs /proc/stat (Linux)")
def test_run_records_keep_the_load_of_their_timing(tiny_llama_dir, tiny_classifier_dir):
    from core.jobs.experiment import ExperimentSettings, run_experiment
    from core.measure.speed import BenchSettings
    from core.models.loading import load_model
    from core.passes.recipe import Recipe
    from tests.test_classifier_experiment import TINY as CLASSIFIER

    bench = BenchSettings(prompt_tokens=8, new_tokens=4, warmup=0, min_repeats=1, min_time_s=0)
    for folder, settings in (
        (tiny_llama_dir, ExperimentSettings(bench=bench, evaluate=False)),
        (tiny_classifier_dir, CLASSIFIER),
    ):
        loaded = load_model(str(folder), device="cpu")
        record = list(run_experiment(loaded, Recipe(), settings))[-1]
        load = record.machine_load
        during = load["other_cores_during"]  # None: a region too short to read within
        assert load["status"] == "measured" and (during is None or during >= 0)
        assert (during is None) == (load["seconds"] < MIN_REGION_S)
        around = (load["other_cores_before"] + load["other_cores_after"]) / 2
        busy = max(during or 0.0, around)
        assert bool(record.machine_busy) == (busy > BUSY_CORES)


def test_a_region_shorter_than_the_ticks_is_judged_by_its_surroundings():
    """10 ms timed with one 10 ms tick more gave "11.2 cores" of 2 (sweep eleven)."""
    short = [(0, 0, 0), (0, 0, 0.1), (1, 0, 1), (1.112, 0, 1.01), (1.112, 0, 1.01)]
    quiet = _run(short + [(1.112, 0, 1.11)])
    assert quiet.other_cores_during is None and quiet.busy == ""
    busy = _run(short[:4] + [(2, 0, 2), (2.1, 0, 2.1)])  # one core busy just after
    assert busy.other_cores_during is None
    assert busy.busy.startswith("other programs used 0.5 cores on average just before and after")
    assert "10 ms timed were too short" in busy.busy
