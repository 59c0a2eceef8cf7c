"""The event loop: pygame events in, the drawing state updated, the window drawn.

Each frame has three phases, as in pygame's own examples: handle the
events, update (preprocess and predict, only when the canvas changed), draw.
At 60 frames a second the bars follow the pen while it moves.
"""

from pathlib import Path

import pygame

from backends import XpnetError
from nn.preprocess import ink_bbox, to_mnist
from nn.samples import save_sample

from .render import LAYOUT, Resources, View, draw_window
from .state import QUIT, UNDO, DrawingState, Mode, Save

LEARN_HELP = "drag: draw  right: erase  C: clear  0-9: teach  U: undo  Q: quit"
UNSURE_BELOW = 0.6  # below this top probability the window says it is not sure
MIN_EXTENT = 3.0  # brush radii: a dot is not a digit yet, and blown up to 20 px it looks like a 0
BUTTON_TOOLS = {1: "draw", 3: "erase"}
KEY_NAMES = {
    pygame.K_c: "c",
    pygame.K_s: "s",
    pygame.K_q: "q",
    pygame.K_u: "u",
    pygame.K_ESCAPE: "escape",
    **{getattr(pygame, f"K_{d}"): str(d) for d in range(10)},
    **{getattr(pygame, f"K_KP{d}"): str(d) for d in range(10)},
}


class App:
    def __init__(self, predictor=None, model_error=None, model_path="model.npz", samples="samples", layout=LAYOUT,
                 learner=None):
        """``learner``: a drawing.learner.BackgroundLearner (gui.py --learn) that each labelled drawing teaches."""
        self.layout = layout
        self.state = DrawingState.blank(layout.canvas[2])
        self.learner = learner
        self.state.digit_labels = learner is not None
        if learner is not None:
            self.state.status = learner.progress.describe()
        self.predictor, self.model_error, self.model_path = predictor, model_error, str(model_path)
        self.samples = Path(samples)
        self.preview = None
        self.probabilities = None
        self.notice = "draw a digit"
        self.predictions = 0  # how often the model was asked
        self.running = True
        self._seen_version = -1
        self._resources = None

    # -- 1. events ---------------------------------------------------------------
    def handle(self, event):
        if event.type == pygame.QUIT:
            self.running = False
        elif event.type == pygame.MOUSEBUTTONDOWN and event.button in BUTTON_TOOLS:
            if pygame.Rect(self.layout.canvas).collidepoint(event.pos):
                self.state.press(BUTTON_TOOLS[event.button], self._on_canvas(event.pos))
        elif event.type == pygame.MOUSEMOTION:
            held = event.buttons[0] if self.state.mode is Mode.DRAWING else event.buttons[2]
            self.state.move(self._on_canvas(event.pos), held=bool(held))
        elif event.type == pygame.MOUSEBUTTONUP and event.button in BUTTON_TOOLS:
            self.state.release()
        elif event.type == pygame.KEYDOWN and event.key in KEY_NAMES:
            command = self.state.key(KEY_NAMES[event.key])
            if command is QUIT:
                self.running = False
            elif isinstance(command, Save):
                self.save(command.label)
            elif command is UNDO and self.learner is not None:
                self.learner.undo()
                self.state.status = "undoing the last lesson..."

    def _on_canvas(self, pos):
        return pos[0] - self.layout.canvas[0], pos[1] - self.layout.canvas[1]

    def save(self, label):
        image = to_mnist(self.state.canvas)
        try:
            path = save_sample(self.samples, image, label)
            self.state.status = f"saved {path}"
        except XpnetError as exc:
            self.state.status = str(exc)
        if self.learner is not None:
            self.learner.teach(image, label)
            self.state.status = f"learning that this is a {label}..."

    # -- 2. update -----------------------------------------------------------------
    def update(self):
        """Preprocess and predict if the canvas (or the weights) changed since the last frame; True if so."""
        if self.learner is not None:
            self._take_new_weights()
        if self.state.version == self._seen_version:
            return False
        self._seen_version = self.state.version
        canvas = self.state.canvas
        bbox = ink_bbox(canvas)
        self.preview = None if bbox is None else to_mnist(canvas, bbox)
        self.probabilities = None
        if bbox is None:
            self.notice = "draw a digit"
        elif max(bbox[1] - bbox[0], bbox[3] - bbox[2]) < MIN_EXTENT * self.state.radius:
            self.notice = "keep drawing"
        elif self.predictor is not None:
            self.probabilities = self.predictor(self.preview)
            self.predictions += 1
        return True

    def _take_new_weights(self):
        if self.learner.error:
            self.state.status, self.learner.error = f"learning failed: {self.learner.error}", None
        news = self.learner.poll()
        if news is None or self.predictor is None:
            return
        progress, params = news
        self.predictor.set_params(params)
        self.state.status = progress.describe()
        self._seen_version = -1  # read the drawing again with the new weights

    # -- 3. draw -------------------------------------------------------------------
    def view(self):
        return View(
            canvas=self.state.canvas,
            preview=self.preview,
            probabilities=self.probabilities,
            unsure_below=UNSURE_BELOW,
            notice=self.notice,
            model_error=self.model_error,
            model_path=self.model_path,
            status=self.state.status,
            help=LEARN_HELP if self.learner is not None else None,
        )

    def draw(self, surface):
        if self._resources is None:
            self._resources = Resources(self.layout)
        draw_window(surface, self.view(), self._resources, self.layout)


def open_window(layout=LAYOUT, title="xpnet: draw a digit"):
    """The display surface; only the display and fonts are initialised (no audio)."""
    try:
        pygame.display.init()
        pygame.font.init()
        screen = pygame.display.set_mode(layout.window)
    except pygame.error as exc:
        raise XpnetError(
            f"cannot open a window ({exc}); on a machine without a display set SDL_VIDEODRIVER=dummy"
        ) from None
    pygame.display.set_caption(title)
    return screen


def run(app, screen, *, fps=60, script=None):
    """Frames until the app quits, or until ``script`` (an iterable of per-frame event
    lists, posted to pygame's queue as if a person made them) runs out. Returns the frame count."""
    clock = pygame.time.Clock()
    scripted = None if script is None else iter(script)
    frames = 0
    while app.running:
        if scripted is not None:
            batch = next(scripted, None)
            if batch is None:
                break
            for event in batch:
                pygame.event.post(event)
        events = pygame.event.get()
        for event in events:
            app.handle(event)
        changed = app.update()
        if changed or events or frames == 0:  # an idle window costs (almost) nothing
            app.draw(screen)
            pygame.display.flip()
        clock.tick(fps)
        frames += 1
    return frames
