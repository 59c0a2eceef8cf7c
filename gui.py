"""Draw a digit with the mouse and watch an xpnet model read it, live.

    uv run gui.py                                  # the model train.py saved: model.npz
    uv run gui.py --model mine.npz --backend jax
    SDL_VIDEODRIVER=dummy uv run gui.py --screenshot gui.png

Left drag draws, right drag erases, C clears, S then a digit key saves the
drawing as a labelled 28x28 sample (``train.py --extra-data FOLDER`` learns
from them), Q or Esc quits. Without a usable model the window still opens
and says how to train one. Bad flags are one line and exit status 2.

With ``--learn`` the window also learns your handwriting: a digit key after
drawing says which digit it is, the sample is saved, and the model takes a
few training steps on it in the background (your drawings, distorted, mixed
with MNIST replayed so it does not forget); U undoes the last lesson. The
adapted model is written to ``--learn-out`` when you quit, never over
``--model``; starting again with ``--learn`` continues from it.
"""

import argparse
import sys
from pathlib import Path

from cli.flags import Parser, seed_value

DEFAULT_MODEL = "model.npz"  # what train.py writes by default
DEMO_DIGITS = ("1", "2", "3", "4", "5", "7", "9", "1-flag")  # drawing.demo.DIGITS, listed so --help never imports pygame
LEARN_SUFFIX = ".learned"  # model.npz -> model.learned.npz


def default_learn_out(model):
    path = Path(model)
    return str(path.with_name(path.stem + LEARN_SUFFIX + (path.suffix or ".npz")))


def build_parser():
    p = Parser(
        prog="gui.py",
        description="Draw a digit and watch a trained xpnet model read it while you draw.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="PATH", help="model file written by train.py")
    p.add_argument("--backend", default="numpy", metavar="NAME",
                   help="numpy, jax, cupy or auto; one digit is tiny work, so NumPy is the default and needs no GPU")
    p.add_argument("--samples", default="samples", metavar="DIR",
                   help="where S then a digit key saves your labelled 28x28 drawings")
    p.add_argument("--fps", type=int, default=60, help="frames (and live predictions) per second at most")
    p.add_argument("--screenshot", default=None, metavar="PATH",
                   help="draw --demo with scripted mouse events, save the window as a PNG and exit "
                        "(works headless with SDL_VIDEODRIVER=dummy)")
    p.add_argument("--demo", choices=DEMO_DIGITS, default="1",
                   help="the digit --screenshot draws (1-flag: a 1 with a long flag; with --learn it is then taught)")
    learn = p.add_argument_group("learning your handwriting")
    learn.add_argument("--learn", action="store_true",
                       help="a digit key after drawing teaches the model that digit, in the background; U undoes")
    learn.add_argument("--learn-out", default=None, metavar="PATH",
                       help="where the adapted model is saved on quitting (default: beside --model, "
                            f"with {LEARN_SUFFIX} before the extension); continued from when it exists")
    learn.add_argument("--data", default=None, metavar="PATH",
                       help="MNIST, replayed while learning so the model does not forget "
                            "(default: $MNIST_DATA, else download and cache)")
    learn.add_argument("--seed", type=seed_value, default=0, help="seeds the lessons: the same lessons, the same weights")
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.fps < 1:
        parser.error(f"--fps {args.fps} must be a whole number >= 1")
    if args.learn_out is not None and not args.learn:
        parser.error(f"--learn-out {args.learn_out} needs --learn (it is where learning saves the adapted model)")
    if args.screenshot is not None:
        from cli.paths import check_writable_file

        check_writable_file("--screenshot", args.screenshot, "gui.png")  # before the window opens, not after
    import io

    from drawing.app import App, open_window, run  # first: sets pygame and BLAS defaults
    from drawing.predictor import load_predictor

    import pygame

    from backends import get_backend
    from nn.files import atomic_write_bytes

    be = get_backend(args.backend)
    predictor, model_error = load_predictor(args.model, be)
    learner, learn_out = None, None
    if args.learn:
        learner, learn_out = start_learning(args, predictor, model_error, be)
    elif model_error is not None:
        print(f"gui.py: {model_error} (the window opens without predictions)", file=sys.stderr)
    screen = open_window()
    app = App(predictor, model_error, args.model, args.samples, learner=learner)
    try:
        if args.screenshot is None:
            run(app, screen, fps=args.fps)
        else:
            run(app, screen, fps=0, script=screenshot_script(args.demo, learner))
            buffer = io.BytesIO()
            pygame.image.save(screen, buffer, "screenshot.png")
            atomic_write_bytes(args.screenshot, buffer.getvalue())
            print(f"saved {args.screenshot}")
    finally:
        pygame.quit()
        if learner is not None:
            finish_learning(learner, predictor.model, learn_out)
    return 0


def start_learning(args, predictor, model_error, be):
    """(BackgroundLearner, the path it saves to), or XpnetError before any window opens."""
    from backends import XpnetError
    from cli.paths import check_no_clash, check_writable_file
    from drawing.learner import CHECK_SIZE, BackgroundLearner, Learner
    from nn.data import load_mnist
    from nn.serialize import load_model

    if predictor is None:
        raise XpnetError(f"--learn needs a model to start from: {model_error}")
    learn_out = args.learn_out or default_learn_out(args.model)
    check_no_clash([("--model", args.model)], [("--learn-out", learn_out)])
    check_writable_file("--learn-out", learn_out)
    model, params = predictor.model, predictor.host_params()
    if Path(learn_out).exists():
        saved, params = load_model(learn_out)
        if saved.sizes != model.sizes or saved.activations != model.activations:
            raise XpnetError(f"--learn-out {learn_out} holds a {'-'.join(map(str, saved.sizes))} network, not "
                             f"--model's {'-'.join(map(str, model.sizes))}: name another --learn-out")
        predictor.set_params(params)
        print(f"gui.py: continuing to learn from {learn_out}")
    data = load_mnist(args.data)
    learner = Learner(be, model, params, (data.x_train, data.y_train),
                      (data.x_test[:CHECK_SIZE], data.y_test[:CHECK_SIZE]), seed=args.seed)
    return BackgroundLearner(learner), learn_out


def finish_learning(learner, model, learn_out):
    from nn.serialize import save_model

    params = learner.finish()
    progress = learner.progress
    if progress.version == 0:
        print(f"gui.py: no lessons, {learn_out} not written")
        return
    save_model(learn_out, model, params)  # atomic: temp file, fsync, rename
    print(f"gui.py: {progress.describe()}; saved {learn_out}")


def screenshot_script(demo, learner, seconds=30):
    """Frames for --screenshot: draw ``demo``; with a learner, teach it and wait for the new weights."""
    import time

    import pygame

    from drawing.demo import digit_events, key_events

    yield from digit_events(demo)
    if learner is not None:
        yield from key_events(getattr(pygame, f"K_{demo[0]}"))
        deadline = time.monotonic() + seconds
        while learner.progress.lessons == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
            yield []
    yield from [[]] * 3  # a few quiet frames so the last prediction is on screen


def run_cli(argv=None):
    from backends.errors import run_front_door

    return run_front_door(main, argv, "gui.py", interrupted=None)


if __name__ == "__main__":
    sys.exit(run_cli())
