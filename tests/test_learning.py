"""gui.py --learn: lessons in the background, undo to the exact weights, the adapted model saved beside
the original; on real MNIST, a simulated person's style is learned without forgetting MNIST."""

import os
import subprocess
import sys
import time
from itertools import chain
from pathlib import Path

import numpy as np
import pytest

os.environ["SDL_VIDEODRIVER"] = "dummy"

import pygame

import nn
from backends import get_backend
from conftest import mnist_dir
from drawing.app import App, open_window, run
from drawing.demo import digit_events, key_events
from drawing.learner import BackgroundLearner, Learner
from drawing.person import draw_style
from drawing.predictor import Predictor
from nn.serialize import load_model, save_model
from digits import write_digits
from reference import assert_trees_close

ROOT = Path(__file__).resolve().parent.parent
MODEL = nn.MLP(sizes=(784, 24, 10))


def tiny_learner(seed=0):
    rng = np.random.default_rng(1)
    x, y = rng.random((300, 784), dtype=np.float32), rng.integers(0, 10, 300)
    return Learner(get_backend("numpy"), MODEL, MODEL.init_params(0), (x, y), (x[:50], y[:50]), seed=seed)


def drawings(n, seed=2):
    rng = np.random.default_rng(seed)
    return [draw_style("long-flag 1", rng) for _ in range(n)]


def test_the_same_lessons_in_the_same_order_give_the_same_weights():
    runs = []
    for _ in range(2):
        learner = tiny_learner()
        for image, digit in drawings(3):
            learner.lesson(image, digit)
        runs.append(learner.host_params())
    assert_trees_close(runs[0], runs[1], exact=True)
    other = tiny_learner(seed=1)
    for image, digit in drawings(3):
        other.lesson(image, digit)
    assert not np.array_equal(other.host_params()[0]["w"], runs[0][0]["w"])


def test_undo_puts_back_the_exact_weights_and_a_later_lesson_is_as_if_the_undone_one_never_was():
    learner = tiny_learner()
    (first, d1), (second, d2) = drawings(2)
    learner.lesson(first, d1)
    before = learner.host_params()
    learner.lesson(second, d2)
    assert not np.array_equal(learner.host_params()[0]["w"], before[0]["w"])
    assert learner.undo() and learner.progress.lessons == 1
    assert_trees_close(learner.host_params(), before, exact=True)
    assert learner.undo() and not learner.undo()  # back to the start, and no further
    assert_trees_close(learner.host_params(), MODEL.init_params(0), exact=True)


def test_a_lesson_scores_the_drawing_before_learning_from_it():
    learner = tiny_learner()
    image, digit = drawings(1)[0]
    read = learner.read(image)
    progress = learner.lesson(image, read)  # taught what it already reads: right at first
    assert (progress.lessons, progress.right_before) == (1, 1)
    progress = learner.lesson(image, (read + 1) % 10)
    assert (progress.lessons, progress.right_before) == (2, 1)


def test_teaching_in_the_window_changes_the_bars_and_u_undoes_it(tmp_path):
    screen = open_window()
    try:
        predictor = Predictor(MODEL, MODEL.init_params(0), get_backend("numpy"))
        background = BackgroundLearner(tiny_learner())
        app = App(predictor, None, "model.npz", tmp_path / "samples", learner=background)
        run(app, screen, fps=0, script=digit_events("1-flag"))
        before = app.probabilities.copy()
        run(app, screen, fps=0, script=chain(key_events(pygame.K_3), _until(lambda: background.progress.lessons == 1)))
        run(app, screen, fps=0, script=[[]])
        assert app.probabilities[3] > before[3]  # the bars moved toward the digit taught
        assert len(list((tmp_path / "samples").iterdir())) == 1  # the drawing was saved as well
        assert "1 lesson" in app.view().status
        run(app, screen, fps=0, script=chain(key_events(pygame.K_u), _until(lambda: background.progress.lessons == 0)))
        run(app, screen, fps=0, script=[[]])
        np.testing.assert_array_equal(app.probabilities, before)  # the exact weights from before
        assert_trees_close(background.finish(), MODEL.init_params(0), exact=True)
    finally:
        pygame.quit()


def _until(done, seconds=30):
    """Empty frames until ``done()`` (the learner works in its own thread)."""
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.005)
        yield []


def _tiny_mnist(folder):
    return write_digits(folder / "digits", 300, 40)


def _gui(*args):
    env = {k: v for k, v in os.environ.items() if k != "MNIST_DATA"}
    return subprocess.run([sys.executable, str(ROOT / "gui.py"), *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env={**env, "SDL_VIDEODRIVER": "dummy"}, timeout=300)


def test_gui_learn_teaches_the_demo_and_saves_beside_the_model_without_touching_it(tmp_path):
    model = tmp_path / "model.npz"
    save_model(model, MODEL, MODEL.init_params(0))
    original = model.read_bytes()
    data = _tiny_mnist(tmp_path)
    common = ("--model", model, "--learn", "--data", data, "--samples", tmp_path / "s", "--demo", "1-flag")
    result = _gui(*common, "--screenshot", tmp_path / "shot.png")
    assert result.returncode == 0, result.stderr
    learned = tmp_path / "model.learned.npz"
    assert f"saved {learned}" in result.stdout and "1 lesson" in result.stdout
    assert model.read_bytes() == original
    first = load_model(learned)[1]
    assert not np.array_equal(first[0]["w"], MODEL.init_params(0)[0]["w"])
    assert not list(tmp_path.glob("*.tmp*"))  # written through a temp file that was renamed
    again = _gui(*common, "--screenshot", tmp_path / "shot2.png")  # starting again continues from it
    assert again.returncode == 0, again.stderr
    assert f"continuing to learn from {learned}" in again.stdout
    assert not np.array_equal(load_model(learned)[1][0]["w"], first[0]["w"]) and model.read_bytes() == original


@pytest.mark.parametrize("args, words", [
    (["--learn-out", "{model}"], ["--learn-out", "--model", "destroy"]),
    (["--model", "{missing}"], ["--learn needs a model", "not found"]),
    (["--seed", "-1"], ["--seed"]),
])
def test_learn_refuses_bad_settings_and_what_would_lose_a_file_in_one_line(tmp_path, args, words):
    model = tmp_path / "model.npz"
    save_model(model, MODEL, MODEL.init_params(0))
    filled = [a.format(model=model, missing=tmp_path / "none.npz") for a in args]
    result = _gui("--model", model, "--learn", "--data", _tiny_mnist(tmp_path), *filled)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert all(w.lower() in result.stderr.lower() for w in words), result.stderr


@pytest.mark.mnist
@pytest.mark.skipif(mnist_dir() is None, reason="real MNIST not found: set MNIST_DATA to the four IDX files")
def test_a_simulated_persons_style_is_learned_in_ten_lessons_and_mnist_is_not_forgotten(tmp_path):
    """A 1 with a long flag, which a model trained on MNIST reads as a 7: at least 90% of new drawings of it
    read right within 10 lessons; after 50, MNIST's test accuracy within 0.5 points of the start."""
    from nn.data import load_mnist

    base = tmp_path / "base.npz"
    trained = subprocess.run([sys.executable, str(ROOT / "train.py"), "--data", mnist_dir(), "--epochs", "6",
                              "--out", base, "--no-progress"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert trained.returncode == 0, trained.stderr
    from benchmarks.learning import simulate

    model, params = load_model(base)
    r = simulate(get_backend("numpy"), model, params, load_mnist(mnist_dir()), "long-flag 1", lessons=50)
    assert r["style_read_right_after_lessons"][0] < 0.5, r  # the base model misreads this style
    assert r["style_read_right_after_lessons"][10] >= 0.9, r
    assert r["style_read_right_at_the_end"] >= 0.9, r
    assert r["mnist_test_end"] >= r["mnist_test_start"] - 0.005, r


def test_learn_out_without_learn_is_one_line(tmp_path):
    result = _gui("--learn-out", tmp_path / "m.npz")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"gui.py: error: --learn-out {tmp_path / 'm.npz'} needs --learn (it is where learning saves the adapted model) (see --help)"]


def test_undo_reaches_back_undo_depth_lessons_and_no_further():
    from drawing.learner import UNDO_DEPTH

    learner = tiny_learner()
    lessons = drawings(UNDO_DEPTH + 2)
    for image, digit in lessons[:2]:
        learner.lesson(image, digit)
    kept = learner.host_params()
    for image, digit in lessons[2:]:
        learner.lesson(image, digit)
    undone = 0
    while learner.undo():
        undone += 1
    assert undone == UNDO_DEPTH and learner.progress.lessons == 2
    assert_trees_close(learner.host_params(), kept, exact=True)
