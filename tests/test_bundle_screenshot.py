"""`workbench --screenshot PATH` (app/screenshot.py): what the desktop bundle's
smoke test runs to prove the frozen window draws."""

import os
import struct
import subprocess
import sys

from app.screenshot import save_when_idle
from tests.test_app_compression import make_window


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_flag_saves_the_window_once_the_model_loads(tmp_path, tiny_llama_dir):
    """The launcher's route, in a subprocess as the smoke test starts it."""
    png = tmp_path / "window.png"
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        XDG_CONFIG_HOME=str(tmp_path / "config"),  # the window's QSettings
        WORKBENCH_DATA_DIR=str(tmp_path / "data"),
        OMP_NUM_THREADS="1",
    )
    args = ["--screenshot", str(png), "--model", str(tiny_llama_dir), "--threads", "1"]
    out = subprocess.run(
        [sys.executable, "-m", "app.launcher", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    width, height = png_size(png)
    assert width >= 800 and height >= 500
    assert png.stat().st_size > 20_000  # the drawn window, not an empty frame


def test_a_failed_load_gives_status_1_and_still_a_picture(qtbot, tmp_path, capsys):
    window = make_window(qtbot, tmp_path)
    png, codes = tmp_path / "window.png", []
    save_when_idle(window, png, done=codes.append)
    window.load_model(str(tmp_path / "no-such-model"))
    qtbot.waitUntil(lambda: bool(codes), timeout=60_000)
    assert codes == [1]
    assert "no model loaded" in capsys.readouterr().err
    assert png_size(png)[0] > 0  # the window with its error, for whoever looks


def test_gives_up_after_the_timeout(qtbot, tmp_path, capsys):
    window = make_window(qtbot, tmp_path)
    codes = []
    save_when_idle(window, tmp_path / "window.png", timeout_s=0.2, done=codes.append)
    qtbot.waitUntil(lambda: bool(codes), timeout=5_000)
    assert codes == [1]
    assert "did not load within 0.2 s" in capsys.readouterr().err
    assert not (tmp_path / "window.png").exists()
