"""``uv run python -m benchmarks.learning``: gui.py --learn on a simulated person, in figures.

    uv run python -m benchmarks.learning --model model.npz --json learning.json

The person (``drawing.person``) writes one style the model misreads (by
default a 1 with a long flag, which MNIST models read as a 7). Each lesson
is a new drawing of it, taught as ``gui.py --learn`` teaches (the same
``drawing.learner.Learner``). Reported: how many of 100 other drawings of
the style are read right before any lesson and after each of the first
ten, the held-out score (each lesson's drawing read before it was learned
from), and MNIST's whole test set before and after all the lessons. Goals
(issue 17): 90% of the style within 10 lessons; after 50, MNIST within 0.5
points of the start.
"""

import time

import numpy as np


def simulate(be, model, params, data, style="long-flag 1", lessons=50, seed=5, **settings):
    """The figures of one simulated person; ``data`` an nn.data Dataset (MNIST); ``settings``: Learner's
    steps, yours, replay_per_batch, lr."""
    from drawing.learner import CHECK_SIZE, Learner
    from drawing.person import STYLES, draw_style

    learner = Learner(be, model, params, (data.x_train, data.y_train),
                      (data.x_test[:CHECK_SIZE], data.y_test[:CHECK_SIZE]), **settings)
    rng = np.random.default_rng(99)
    others = np.stack([draw_style(style, rng)[0] for _ in range(100)]).reshape(100, -1)
    digit = STYLES[style][0]

    def read_right(x, y):
        return float(np.mean(learner.digits(x) == y))

    mnist_start = read_right(data.x_test, data.y_test)
    style_after = [read_right(others, digit)]
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for n in range(lessons):
        image, label = draw_style(style, rng)
        learner.lesson(image, label)
        if n < 10:
            style_after.append(read_right(others, digit))
    seconds = (time.perf_counter() - started) / lessons
    return {
        "style": style, "lessons": lessons, "style_read_right_after_lessons": style_after,
        "style_read_right_at_the_end": read_right(others, digit),
        "lessons_read_right_before_learning": learner.progress.right_before,
        "mnist_test_start": mnist_start, "mnist_test_end": read_right(data.x_test, data.y_test),
        "seconds_per_lesson": seconds,
        "settings": {"steps": learner.steps, "yours": learner.yours_per_batch,
                     "replay_per_batch": learner.replay_per_batch, "lr": learner.lr},
    }


def main(argv=None):
    from benchmarks.script import add_data_flag, check_json, script_parser, write_json
    from cli.flags import positive_int

    p = script_parser("python -m benchmarks.learning", __doc__)
    p.add_argument("--model", default="model.npz", metavar="PATH", help="the model to start from (train.py's)")
    p.add_argument("--lessons", type=positive_int, default=50, help="lessons in all")
    p.add_argument("--style", default="long-flag 1", help="a style of drawing.person.STYLES")
    from cli.flags import positive_float
    from drawing.learner import LR, REPLAY, STEPS, YOURS

    p.add_argument("--steps", type=positive_int, default=STEPS, help="training steps per lesson")
    p.add_argument("--yours", type=positive_int, default=YOURS, help="of each batch: your drawings")
    p.add_argument("--replay", type=positive_int, default=REPLAY, help="of each batch: MNIST images")
    p.add_argument("--lr", type=positive_float, default=LR, help="Adam's learning rate")
    add_data_flag(p)
    args = p.parse_args(argv)
    check_json(args)
    from backends import XpnetError, get_backend
    from drawing.person import STYLES
    from nn.data import load_mnist
    from nn.serialize import load_model

    if args.style not in STYLES:
        raise XpnetError(f"--style {args.style!r}: choose one of {', '.join(STYLES)}")
    model, params = load_model(args.model)
    be = get_backend("numpy")
    r = simulate(be, model, params, load_mnist(args.data), args.style, args.lessons, steps=args.steps,
                 yours=args.yours, replay_per_batch=args.replay, lr=args.lr)
    print(f"simulated person: {r['style']}, {r['lessons']} lessons, model {args.model}, {be.device_description()}; "
          f"per lesson {args.steps} steps of {args.yours} yours + {args.replay} MNIST, Adam {args.lr:g}")
    print("other drawings of the style read right, after 0..10 lessons: "
          + ", ".join(f"{a:.0%}" for a in r["style_read_right_after_lessons"]))
    print(f"after {r['lessons']} lessons: {r['style_read_right_at_the_end']:.0%}; each lesson's drawing read right "
          f"before it was learned from: {r['lessons_read_right_before_learning']} of {r['lessons']}")
    print(f"MNIST test accuracy: {r['mnist_test_start']:.2%} before, {r['mnist_test_end']:.2%} after "
          f"({100 * (r['mnist_test_end'] - r['mnist_test_start']):+.2f} points); "
          f"{1e3 * r['seconds_per_lesson']:.0f} ms a lesson")
    write_json(args, r)
    return 0


if __name__ == "__main__":
    from benchmarks.script import run

    run(main, "python -m benchmarks.learning")
