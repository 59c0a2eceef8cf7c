"""gui.py, headless: the brush, the state machine, the event loop, the pixels, the front door."""

import math
import os
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

os.environ["SDL_VIDEODRIVER"] = "dummy"  # before pygame opens anything: no window, no display needed

import pygame

import nn
from backends import XpnetError, get_backend, unavailable_reason
from drawing import render
from drawing.app import App, open_window, run
from drawing.brush import SOFTNESS, segment_coverage
from drawing.demo import digit_events, key_events
from drawing.predictor import Predictor, load_predictor
from drawing.render import LAYOUT, Resources, View, draw_window
from drawing.state import QUIT, DrawingState, Mode, Save
from nn.preprocess import SIDE, to_mnist
from nn.samples import load_samples
from nn.serialize import load_model, save_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def screen():
    surface = open_window()
    yield surface
    pygame.quit()


@pytest.fixture
def model_file(tmp_path):
    """An untrained default MLP: its outputs move with its input, which is all these tests need."""
    model = nn.MLP()
    path = tmp_path / "model.npz"
    save_model(path, model, model.init_params(0))
    return path


def pixel(array, xy):
    return tuple(int(c) for c in array[xy[0], xy[1]])


def colours_in(array, rect):
    x, y, w, h = rect
    return {tuple(c) for c in array[x : x + w, y : y + h].reshape(-1, 3).tolist()}


# --- brush and state ------------------------------------------------------------------


def test_a_fast_stroke_is_one_unbroken_line_of_the_brush_width():
    state = DrawingState.blank(392)
    state.press("draw", (50, 100))
    state.move((300, 100))  # one mouse sample 250 px later
    inked = state.canvas >= 0.5
    assert inked[100, 50:301].all()
    # Across the line the stroke is 2 * radius wide: pixels within the radius of its axis.
    column = inked[:, 175]
    assert column.sum() == 2 * math.floor(state.radius) + 1
    assert not state.canvas[: math.floor(100 - state.radius - SOFTNESS), :].any()


def test_a_dot_has_the_area_of_the_soft_disc():
    radius = 16.0
    _, coverage = segment_coverage((200, 200), (100, 100), (100, 100), radius)
    # Integral of clip((r - d) / s + 1/2, 0, 1) over the plane: pi r^2 + pi s^2 / 12.
    expected = math.pi * radius**2 + math.pi * SOFTNESS**2 / 12
    assert coverage.sum() == pytest.approx(expected, rel=2e-3)


def test_the_eraser_removes_ink_and_an_erased_canvas_is_blank():
    state = DrawingState.blank(392)
    state.press("draw", (100, 200))
    state.move((300, 200))
    state.release()
    assert state.has_ink
    state.press("erase", (90, 200))
    state.move((310, 200))
    state.release()
    assert not state.has_ink
    assert state.canvas.max() < 0.5


def test_keys_drive_the_state_machine():
    state = DrawingState.blank(392)
    assert state.key("s") is None and state.mode is Mode.IDLE and "nothing to save" in state.status
    state.press("draw", (100, 100))
    state.move((100, 300))
    state.release()
    assert state.key("s") is None and state.mode is Mode.AWAIT_LABEL
    assert state.key("q") is None and state.mode is Mode.AWAIT_LABEL  # waiting for a digit, not quitting
    assert state.key("7") == Save(7) and state.mode is Mode.IDLE
    state.key("s")
    assert state.key("escape") is None and state.mode is Mode.IDLE and "cancelled" in state.status
    version = state.version
    assert state.key("c") is None and not state.canvas.any() and state.version > version
    assert state.key("q") is QUIT and state.key("escape") is QUIT


# --- the event loop -------------------------------------------------------------------


def test_a_stroke_of_a_one_moves_the_bars_then_c_empties_them_and_q_quits(screen, model_file):
    predictor, error = load_predictor(model_file, get_backend("numpy"))
    assert error is None
    app = App(predictor)
    stroke = digit_events("1")
    after = []  # (mode, probabilities, bar pixels) after each frame

    def script():
        for batch in stroke + key_events(pygame.K_c) + key_events(pygame.K_q) + [[]]:
            yield batch
            bars = pygame.surfarray.array3d(screen.subsurface(LAYOUT.bars))
            after.append((app.state.mode, app.probabilities, bars))

    frames = run(app, screen, fps=0, script=script())
    assert frames == len(stroke) + 2  # the frame after Q never ran
    assert not app.running

    during = after[1 : len(stroke) - 1]  # frames with the button held and the pen moving
    assert all(mode is Mode.DRAWING for mode, _, _ in during)
    seen = [(p, bars) for _, p, bars in during if p is not None]
    assert len(seen) >= len(during) - 3  # a prediction on (nearly) every frame of the stroke
    changed = sum(not np.allclose(a[0], b[0]) for a, b in pairwise(seen))
    redrawn = sum(not np.array_equal(a[1], b[1]) for a, b in pairwise(seen))
    assert changed >= len(seen) - 2 and redrawn >= len(seen) // 2

    _, cleared, bars = after[len(stroke)]  # after C
    assert cleared is None and not app.state.canvas.any()
    assert colours_in(bars, (0, 0, *LAYOUT.bars[2:])).isdisjoint({render.ACCENT, render.BAR})


def test_a_dot_is_not_a_digit_and_an_empty_canvas_gets_no_prediction(model_file):
    predictor, _ = load_predictor(model_file, get_backend("numpy"))
    app = App(predictor)
    app.update()
    assert app.probabilities is None and app.notice == "draw a digit" and app.predictions == 0
    app.state.press("draw", (200, 200))
    app.state.release()
    app.update()
    assert app.probabilities is None and app.notice == "keep drawing" and app.predictions == 0


def test_s_then_a_digit_saves_the_network_input_as_a_labelled_sample(screen, model_file, tmp_path):
    predictor, _ = load_predictor(model_file, get_backend("numpy"))
    app = App(predictor, samples=tmp_path / "mine")
    run(app, screen, fps=0, script=digit_events("1") + key_events(pygame.K_s) + key_events(pygame.K_KP1))
    images, labels = load_samples(tmp_path / "mine")
    assert labels.tolist() == [1] and images.shape == (1, SIDE * SIDE)
    np.testing.assert_allclose(images[0], np.rint(to_mnist(app.state.canvas).ravel() * 255) / 255, atol=1e-6)
    assert "saved" in app.state.status and "digit-1-" in app.state.status


# --- pixels where the layout says ------------------------------------------------------


def test_a_render_saved_as_png_has_canvas_preview_and_ten_bars_in_place(screen, tmp_path):
    canvas = np.zeros((392, 392), np.float32)
    canvas[100:150, 60:90] = 1.0  # rows are y, columns x
    preview = np.zeros((SIDE, SIDE), np.float32)
    preview[10:14, 20:24] = 1.0
    p = np.array([0.02, 0.01, 0.05, 0.70, 0.01, 0.15, 0.02, 0.02, 0.01, 0.01])
    draw_window(screen, View(canvas=canvas, preview=preview, probabilities=p), Resources())
    pygame.image.save(screen, str(tmp_path / "window.png"))
    png = pygame.surfarray.array3d(pygame.image.load(str(tmp_path / "window.png")))  # indexed [x, y]
    assert png.shape[:2] == LAYOUT.window

    cx, cy = LAYOUT.canvas[:2]
    assert pixel(png, (cx + 75, cy + 125)) == render.INK
    assert pixel(png, (cx + 200, cy + 300)) == render.PAPER
    px, py, side, _ = LAYOUT.preview
    cell = side // SIDE
    assert pixel(png, (px + 22 * cell + cell // 2, py + 12 * cell + cell // 2)) == (255, 255, 255)
    assert pixel(png, (px + 5 * cell, py + 5 * cell)) == (0, 0, 0)
    for digit in range(10):
        track = LAYOUT.bar_track(digit)
        filled = round(p[digit] * track.width)
        colour = render.ACCENT if digit == 3 else render.BAR
        if filled > 4:
            assert pixel(png, (track.x + filled - 2, track.centery)) == colour, digit
        assert pixel(png, (track.x + filled + 2, track.centery)) == render.TRACK, digit
    assert render.ACCENT in colours_in(png, LAYOUT.verdict)  # the big 3
    assert render.UNSURE not in colours_in(png, LAYOUT.verdict)


def test_a_low_confidence_says_it_is_unsure(screen):
    p = np.array([0.05, 0.05, 0.05, 0.40, 0.05, 0.05, 0.05, 0.05, 0.05, 0.20])
    draw_window(screen, View(canvas=np.ones((392, 392), np.float32), probabilities=p), Resources())
    colours = colours_in(pygame.surfarray.array3d(screen), LAYOUT.verdict)
    assert render.UNSURE in colours and render.ACCENT not in colours


def test_percentages_never_round_up_to_certainty():
    assert render.percent(0.99996) == "99.9%"
    assert render.percent(1.0) == "100.0%"
    assert render.percent(0.123) == "12.3%"


# --- the model ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_the_predictor_gives_the_models_softmax(model_file, backend):
    if unavailable_reason(backend):
        pytest.skip(f"{backend} backend unavailable: {unavailable_reason(backend)}")
    model, params = load_model(model_file)
    predictor, _ = load_predictor(model_file, get_backend(backend))
    image = np.random.default_rng(0).random((SIDE, SIDE), dtype=np.float32)
    logits, _ = model.forward([{k: v.astype(np.float64) for k, v in layer.items()} for layer in params],
                              image.reshape(1, -1).astype(np.float64))
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(predictor(image), expected[0], rtol=1e-4, atol=1e-6)


def _write_bad_model(kind, path):
    if kind == "corrupt":
        path.write_bytes(b"PK\x03\x04 not really a zip")
    elif kind == "pickle":
        np.savez(path, architecture=np.array([{"evil": 1}], dtype=object))
    elif kind == "not mnist":
        save_model(path, nn.MLP(sizes=(10, 4, 3)), nn.MLP(sizes=(10, 4, 3)).init_params(0))


@pytest.mark.parametrize("kind, words", [
    ("missing", "not found"), ("corrupt", "corrupt"), ("pickle", "pickle"), ("not mnist", "784 inputs"),
])
def test_a_missing_or_broken_model_opens_the_window_with_the_message(screen, tmp_path, kind, words):
    path = tmp_path / "model.npz"
    _write_bad_model(kind, path)
    predictor, error = load_predictor(path, get_backend("numpy"))
    assert predictor is None and words in error
    app = App(None, error, path)
    run(app, screen, fps=0, script=digit_events("1"))  # drawing still works
    assert app.preview is not None and app.probabilities is None
    lines = [text for text, _ in render.model_help_lines(error, path)]
    assert error in lines and any("uv run train.py" in line for line in lines)
    png = pygame.surfarray.array3d(screen)
    assert render.UNSURE in colours_in(png, LAYOUT.verdict)  # "no model loaded"
    assert render.ACCENT in colours_in(png, LAYOUT.bars)  # the command to run
    assert render.BAR not in colours_in(png, LAYOUT.bars)


def test_a_model_of_the_wrong_kind_is_refused_with_the_reason():
    with pytest.raises(XpnetError, match="784 inputs"):
        Predictor(nn.MLP(sizes=(784, 8, 5)), nn.MLP(sizes=(784, 8, 5)).init_params(0), get_backend("numpy"))


# --- the front door -------------------------------------------------------------------


def run_gui(*args, timeout=120):
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy"}
    return subprocess.run([sys.executable, str(ROOT / "gui.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)


@pytest.mark.parametrize("with_model", [True, False], ids=["model", "no-model"])
def test_gui_runs_until_killed_without_a_traceback(model_file, tmp_path, with_model):
    model = model_file if with_model else tmp_path / "absent.npz"
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy"}
    process = subprocess.Popen([sys.executable, str(ROOT / "gui.py"), "--model", str(model)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    time.sleep(2.5)
    still_running = process.poll() is None
    process.terminate()
    out, err = process.communicate(timeout=30)
    assert still_running, err
    assert "Traceback" not in out + err
    if not with_model:
        assert len(err.strip().splitlines()) == 1 and "not found" in err


def test_screenshot_mode_draws_a_digit_and_saves_the_window(model_file, tmp_path):
    shot = tmp_path / "gui.png"
    result = run_gui("--model", model_file, "--screenshot", shot, "--demo", "7")
    assert result.returncode == 0, result.stderr
    png = pygame.surfarray.array3d(pygame.image.load(str(shot)))
    assert png.shape[:2] == LAYOUT.window
    assert render.INK in colours_in(png, LAYOUT.canvas)
    assert render.ACCENT in colours_in(png, LAYOUT.bars)


@pytest.mark.parametrize("args, words", [
    (["--backend", "nope"], "unknown backend"),
    (["--screenshot", "no/such/folder/x.png"], "does not exist"),
    (["--fps", "fast"], "--fps"),
    (["--fps", "0"], "--fps 0"),
])
def test_bad_flags_are_one_line_and_exit_2(tmp_path, model_file, args, words):
    result = run_gui("--model", model_file, *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.stderr
