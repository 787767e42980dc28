import os
import tempfile

# Qt must never need a display in tests.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Never reach for the model hub from a test.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Runs the CLI stores (compress, distill) never land in the user's results.
os.environ.setdefault("WORKBENCH_DATA_DIR", tempfile.mkdtemp(prefix="workbench-test-data-"))

import pytest  # noqa: E402

from tests.tiny_models import save_tiny_classifier, save_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory):
    return save_tiny_model("gpt2", tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    return save_tiny_model("llama", tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory):
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny-bert-classifier"))


@pytest.fixture(params=["gpt2", "llama"])
def tiny_dir(request, tiny_gpt2_dir, tiny_llama_dir):
    return {"gpt2": tiny_gpt2_dir, "llama": tiny_llama_dir}[request.param]


@pytest.fixture
def window(qtbot, tmp_path, tiny_llama_dir):
    """The main window (tiny run settings, a private results store) with the
    tiny Llama loaded; closed after the test with no job left running."""
    from tests.test_app_compression import load, make_window

    w = make_window(qtbot, tmp_path)
    load(qtbot, w, tiny_llama_dir)
    yield w
    w.close()
    assert not w.runner.busy


@pytest.fixture(autouse=True)
def _collect_in_the_gui_thread_after_window_tests(request):
    """A window test's Qt garbage is collected here, in the GUI thread, before
    the next test (app/gui_gc.py says why), even if a window was not closed."""
    yield
    if "qtbot" in request.fixturenames:
        from app import gui_gc

        gui_gc.release_all()


@pytest.fixture
def private_store(tmp_path, monkeypatch):
    """A temporary folder whose data/ holds the run store the CLI writes."""
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    return tmp_path
