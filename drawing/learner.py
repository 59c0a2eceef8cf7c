"""The window learns your handwriting: a few training steps on each digit you label.

A lesson is one labelled drawing. Before learning from it the model is
asked to read it (so "right before the lesson" is a held-out score of the
person's own style); then it takes ``STEPS`` training steps, each on a
batch of ``YOURS`` of the person's drawings (the newest always among them,
every one distorted anew by ``nn.augment``, so one drawing teaches many)
and ``REPLAY`` MNIST training images, so it does not forget the rest. The
steps are the backend's own (``be.make_train_step``), the numbers seeded
by (seed, lesson): the same lessons in the same order give the same
weights. ``undo`` puts back the weights (and optimizer state) from before
the last lesson.

``Learner`` does the work when called; ``BackgroundLearner`` runs it in a
thread of its own and hands finished weights to the drawing loop, which
never waits for it (``poll``).
"""

import copy
import queue
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

import nn
from nn.augment import Augment
from nn.training import map_arrays

# Chosen on a simulated person (benchmarks.learning): with 24 steps at 1e-3 the style was learned
# in one lesson but MNIST lost 0.7 points in 50; these keep the loss near 0.2 and learn it in two.
STEPS = 8  # training steps per lesson (about 70 ms on NumPy, 2-core Xeon)
YOURS = 8  # of each batch: the person's drawings (with replacement), the newest always one of them
REPLAY = 56  # ... and MNIST training images
LR = 3e-4  # Adam, constant
CHECK_SIZE = 1000  # MNIST test images scored after each lesson
CAPACITY = 2000  # the person's drawings kept for replay
# Lessons that U can take back: each keeps a copy of the weights and Adam's two moments
# (2.8 MB for the default model), so a long session does not grow without bound.
UNDO_DEPTH = 20


@dataclass
class Progress:
    """What the status line shows: lessons, the held-out score of your drawings, MNIST on a fixed subset."""

    lessons: int = 0
    right_before: int = 0  # lessons whose drawing the model already read right, before learning from it
    mnist: float = float("nan")
    mnist_start: float = float("nan")
    version: int = 0  # grows with every change of the weights

    def describe(self):
        if not self.lessons:
            return f"learning: type the digit you drew | MNIST {self.mnist:.1%}"
        return (f"{self.lessons} lesson{'s' if self.lessons > 1 else ''}, {self.right_before} right at first | "
                f"MNIST {self.mnist:.1%} (was {self.mnist_start:.1%})")


class Learner:
    def __init__(self, be, model, params, replay, check, *, seed=0, augment=None, steps=STEPS, yours=YOURS,
                 replay_per_batch=REPLAY, lr=LR):
        """``replay``: MNIST training (x, y), host float32 / int; ``check``: the test (x, y) subset scored."""
        self.be, self.model, self.seed = be, model, seed
        self.steps, self.yours_per_batch, self.replay_per_batch, self.lr = steps, yours, replay_per_batch, lr
        self.augment = augment or Augment("elastic")
        self.optimizer = nn.Adam()
        self.params = [{k: be.owned(be.asarray(v)) for k, v in layer.items()} for layer in params]
        self.state = be.place(self.optimizer.init(self.params))
        x_replay, y_replay = replay
        self.n_replay = len(x_replay)
        # One dataset for the step to gather from: MNIST first, the person's drawings after it.
        self.x_all = np.zeros((self.n_replay + CAPACITY, x_replay.shape[1]), np.float32)
        self.y_all = np.zeros(self.n_replay + CAPACITY, np.int32)
        self.x_all[: self.n_replay], self.y_all[: self.n_replay] = x_replay, y_replay
        self._device_data = None
        self.yours = 0
        self.step = be.make_train_step(model, self.optimizer, seed=seed, augment=self.augment)
        self._predict = be.make_predict(model)
        self.check = check
        self.progress = Progress()
        self.progress.mnist = self.progress.mnist_start = self.mnist_accuracy()
        self._undo = deque(maxlen=UNDO_DEPTH)

    def digits(self, x):
        """The digits the model reads now in ``x`` (n, 784), on the host."""
        return np.argmax(self.be.to_host(self._predict(self.params, self.be.asarray(x))), axis=1)

    def read(self, image):
        """The digit the model reads in one 28x28 image now."""
        return int(self.digits(np.asarray(image, np.float32).reshape(1, -1))[0])

    def mnist_accuracy(self):
        x, y = self.check
        return float(np.mean(self.digits(x) == y))

    def lesson(self, image, label):
        """Learn that ``image`` (28x28 floats in [0, 1]) is a ``label``; returns the new Progress."""
        if self.yours >= CAPACITY:
            raise ValueError(f"{CAPACITY} of your drawings is as many as one session learns from")
        right = self.read(image) == label
        self._undo.append((self._copy(self.params), self._copy(self.state), copy.copy(self.progress)))
        row = self.n_replay + self.yours
        self.x_all[row], self.y_all[row] = np.asarray(image, np.float32).reshape(-1), label
        self.yours += 1
        self._device_data = None
        x_all, y_all = self._data()
        lesson = self.progress.lessons
        rng = np.random.default_rng([self.seed, lesson])
        for k in range(self.steps):
            yours = self.n_replay + np.append(rng.integers(0, self.yours, self.yours_per_batch - 1), self.yours - 1)
            idx = np.concatenate([yours, rng.integers(0, self.n_replay, self.replay_per_batch)]).astype(np.int32)
            self.params, self.state, _, _ = self.step(self.params, self.state, x_all, y_all, self.be.asarray(idx),
                                                      self.lr, lesson * self.steps + k)
        p = self.progress
        self.progress = Progress(p.lessons + 1, p.right_before + right, self.mnist_accuracy(), p.mnist_start,
                                 p.version + 1)
        return self.progress

    def undo(self):
        """Back to the weights before the last lesson; False when there is none (or it is
        more than UNDO_DEPTH lessons back)."""
        if not self._undo:
            return False
        params, state, progress = self._undo.pop()
        self.params, self.state = params, state
        self.yours -= 1
        self._device_data = None
        self.progress = Progress(progress.lessons, progress.right_before, progress.mnist, progress.mnist_start,
                                 self.progress.version + 1)
        return True

    def host_params(self):
        return self.be.tree_to_host(self.params)

    def _data(self):
        if self._device_data is None:
            self._device_data = (self.be.asarray(self.x_all), self.be.asarray(self.y_all))
        return self._device_data

    def _copy(self, tree):
        return map_arrays(self.be.owned, tree)


class BackgroundLearner:
    """A Learner in a thread: ``teach`` and ``undo`` return at once; ``poll`` gives new weights when ready."""

    def __init__(self, learner):
        self.learner = learner
        self._commands = queue.Queue()
        self._lock = threading.Lock()
        self._published = (learner.progress, learner.host_params())
        self._taken = learner.progress.version
        self.error = None
        self._thread = threading.Thread(target=self._work, name="xpnet-learner", daemon=True)
        self._thread.start()

    def teach(self, image, label):
        self._commands.put(("lesson", np.array(image, np.float32), int(label)))

    def undo(self):
        self._commands.put(("undo",))

    def poll(self):
        """(Progress, host params) when the weights changed since the last poll, else None."""
        with self._lock:
            progress, params = self._published
        if progress.version == self._taken:
            return None
        self._taken = progress.version
        return progress, params

    @property
    def progress(self):
        with self._lock:
            return self._published[0]

    def finish(self):
        """Wait for the lessons asked for, stop the thread; the final host params."""
        self._commands.put(None)
        self._thread.join()
        return self._published[1]

    def _work(self):
        while True:
            command = self._commands.get()
            if command is None:
                return
            try:
                if command[0] == "lesson":
                    self.learner.lesson(command[1], command[2])
                elif not self.learner.undo():
                    continue
            except Exception as exc:  # noqa: BLE001  (shown in the window; the drawing goes on)
                self.error = f"{type(exc).__name__}: {exc}"
                continue
            published = (self.learner.progress, self.learner.host_params())
            with self._lock:
                self._published = published
