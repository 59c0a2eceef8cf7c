"""Frame time of gui.py with live prediction: is the window fast enough at 60 Hz?

    uv run python -m benchmarks.gui_frames                 # model.npz if there, else an untrained MLP
    uv run python -m benchmarks.gui_frames --frames 1200 --backend jax --json gui.json
    uv run python -m benchmarks.gui_frames --learn          # while each digit drawn is also taught (gui.py --learn)

Runs the real App headless (SDL_VIDEODRIVER=dummy unless set) on scripted
strokes, one mouse sample per frame, so the canvas changes and the model is
asked on nearly every frame, the worst case of a person drawing. Frames are
not paced: each time is the work of one frame (events, preprocessing and
prediction, drawing, flip). The first frames (fonts, first call) are
reported apart. With ``--learn`` every digit drawn is then taught (its
digit key, as in ``gui.py --learn``), so lessons train in the background
while the next digit is drawn and read.
"""

import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

WARMUP = 10


def parse_args(argv):
    from cli.flags import Parser, positive_int

    p = Parser(prog="python -m benchmarks.gui_frames", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="model.npz", help="model file; an untrained default MLP when unusable (same arithmetic)")
    p.add_argument("--backend", default="numpy", help="numpy, jax, cupy or auto")
    p.add_argument("--frames", type=positive_int, default=600, help="timed frames after the warm-up")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--learn", action="store_true", help="teach every digit drawn, as gui.py --learn does")
    p.add_argument("--data", default=None, metavar="PATH", help="MNIST for --learn's replay (default: $MNIST_DATA)")
    return p.parse_args(argv)


def scripted_frames(count, teach=False):
    """Per-frame event lists: every demo digit drawn in turn (then taught, with ``teach``), cleared after
    each, until ``count`` frames."""
    import pygame

    from drawing.demo import DIGITS, digit_events, key_events

    frames = []
    while len(frames) < count:
        for digit in DIGITS:
            lesson = key_events(getattr(pygame, f"K_{digit[0]}")) if teach else []
            frames += digit_events(digit) + lesson + key_events(pygame.K_c)
    return frames[:count]


def quantiles(values):
    ordered = sorted(values)
    return {
        "median_ms": 1e3 * statistics.median(ordered),
        "p90_ms": 1e3 * ordered[int(0.9 * (len(ordered) - 1))],
        "max_ms": 1e3 * ordered[-1],
    }


def main(argv=None):
    args = parse_args(argv)
    from drawing.app import App, open_window  # first: sets pygame and BLAS defaults, as in gui.py
    from drawing.predictor import Predictor, load_predictor

    import pygame

    import nn
    from backends import get_backend

    be = get_backend(args.backend)
    predictor, error = load_predictor(args.model, be)
    model_note = args.model
    if predictor is None:
        model = nn.MLP()
        predictor = Predictor(model, model.init_params(0), be)
        model_note = f"untrained default MLP ({error})"
    learner = None
    if args.learn:
        from drawing.learner import CHECK_SIZE, BackgroundLearner, Learner
        from nn.data import load_mnist

        data = load_mnist(args.data)
        learner = BackgroundLearner(Learner(be, predictor.model, predictor.host_params(), (data.x_train, data.y_train),
                                            (data.x_test[:CHECK_SIZE], data.y_test[:CHECK_SIZE])))
    screen = open_window()
    app = App(predictor, learner=learner)
    phases = {"events": [], "update": [], "draw": [], "flip": [], "frame": []}
    predicted, warmup = 0, []
    for i, batch in enumerate(scripted_frames(WARMUP + args.frames, teach=args.learn)):
        for event in batch:
            pygame.event.post(event)
        asked = app.predictions
        t0 = time.perf_counter()
        for event in pygame.event.get():
            app.handle(event)
        t1 = time.perf_counter()
        app.update()
        t2 = time.perf_counter()
        app.draw(screen)
        t3 = time.perf_counter()
        pygame.display.flip()
        t4 = time.perf_counter()
        if i < WARMUP:
            warmup.append(1e3 * (t4 - t0))
            continue
        predicted += app.predictions > asked
        for name, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
            phases[name].append(seconds)
    pygame.quit()
    lessons = 0
    if learner is not None:
        lessons = learner.progress.lessons  # taught while the frames ran (the rest still queued)
        learner.finish()

    figures = {name: quantiles(values) for name, values in phases.items()}
    report = {
        "backend": be.name,
        "device": be.device_description(),
        "model": model_note,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}",
        "frames": args.frames,
        "frames_with_prediction": predicted,
        "learning": args.learn,
        "lessons_done": lessons,
        "first_frames_ms": warmup,
        "phases": figures,
    }
    print(f"gui.py frame time: {args.frames} frames, {predicted} with a new prediction | backend {be.name} "
          f"({be.device_description()}) | model {model_note}"
          + (f" | learning: {lessons} lessons done meanwhile" if args.learn else ""))
    print(f"{'phase':<8}{'median':>9}{'p90':>9}{'max':>9}  (ms)")
    for name, q in figures.items():
        print(f"{name:<8}{q['median_ms']:>9.2f}{q['p90_ms']:>9.2f}{q['max_ms']:>9.2f}")
    print(f"first {WARMUP} frames (fonts, first call): {', '.join(f'{t:.1f}' for t in warmup)} ms")
    budget = 1e3 / 60
    verdict = "within" if figures["frame"]["median_ms"] < budget else "OVER"
    print(f"median frame {figures['frame']['median_ms']:.2f} ms: {verdict} the {budget:.1f} ms budget of 60 Hz")
    if args.json:
        from nn.files import atomic_write_bytes

        atomic_write_bytes(args.json, (json.dumps(report, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
