"""Draw a digit with the mouse and watch an xpnet model read it, live.

    uv run gui.py                                  # the model train.py saved: model.npz
    uv run gui.py --model mine.npz --backend jax
    SDL_VIDEODRIVER=dummy uv run gui.py --screenshot gui.png

Left drag draws, right drag erases, C clears, S then a digit key saves the
drawing as a labelled 28x28 sample (``train.py --extra-data FOLDER`` learns
from them), Q or Esc quits. Without a usable model the window still opens
and says how to train one. Bad flags are one line and exit status 2.
"""

import argparse
import sys

from cli.flags import Parser

DEFAULT_MODEL = "model.npz"  # what train.py writes by default
DEMO_DIGITS = ("1", "2", "3", "4", "5", "7", "9")  # drawing.demo.DIGITS, listed here so --help never imports pygame


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
    p.add_argument("--demo", choices=DEMO_DIGITS, default="1", help="the digit --screenshot draws")
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.fps < 1:
        parser.error(f"--fps {args.fps} must be a whole number >= 1")
    if args.screenshot is not None:
        from cli.paths import check_writable_file

        check_writable_file("--screenshot", args.screenshot, "gui.png")  # before the window opens, not after
    import io

    from drawing.app import App, open_window, run  # first: sets pygame and BLAS defaults
    from drawing.demo import digit_events
    from drawing.predictor import load_predictor

    import pygame

    from backends import get_backend
    from nn.files import atomic_write_bytes

    be = get_backend(args.backend)
    predictor, model_error = load_predictor(args.model, be)
    if model_error is not None:
        print(f"gui.py: {model_error} (the window opens without predictions)", file=sys.stderr)
    screen = open_window()
    app = App(predictor, model_error, args.model, args.samples)
    try:
        if args.screenshot is None:
            run(app, screen, fps=args.fps)
        else:
            idle = [[]] * 3  # a few quiet frames so the last prediction is on screen
            run(app, screen, fps=0, script=digit_events(args.demo) + idle)
            buffer = io.BytesIO()
            pygame.image.save(screen, buffer, "screenshot.png")
            atomic_write_bytes(args.screenshot, buffer.getvalue())
            print(f"saved {args.screenshot}")
    finally:
        pygame.quit()
    return 0


def run_cli(argv=None):
    from backends.errors import run_front_door

    return run_front_door(main, argv, "gui.py", interrupted=None)


if __name__ == "__main__":
    sys.exit(run_cli())
