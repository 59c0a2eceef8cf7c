"""The parts of gui.py, kept apart so each is testable without a display.

    brush      the round soft brush: a stroke segment as pixel coverage (NumPy)
    state      the drawing state machine: canvas, strokes, keys (no pygame)
    predictor  a trained model as "28x28 image -> ten probabilities" (no pygame)
    render     pure functions drawing the window onto a pygame.Surface
    app        the event loop: pygame events in, state updated, window drawn
    demo       digits drawn by scripted mouse events (screenshot, benchmark, tests)

Importing this package sets two environment defaults, which only act when it
is imported before NumPy and pygame (gui.py makes sure of that):
- one BLAS thread: a digit is a few hundred thousand multiply-adds, so
  worker threads only add wake-up latency, and on a busy machine they spin
  against other programs (measured on 2 busy cores: p90 frame 16 ms with
  OpenBLAS threads, 1.9 ms without). Set OPENBLAS_NUM_THREADS to override.
- no pygame greeting on stdout.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
