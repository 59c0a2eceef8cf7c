"""The rows of the benchmark: a backend plus the options it runs with.

Adding a row is one line in ``VARIANTS``. ``fit`` holds keywords for
``nn.fit`` (``grad``, ``epoch_mode``); ``backend`` holds
keywords for the backend's constructor. A variant whose options the
installed code does not accept is reported as "unsupported", never a crash.
Variants of ``torch`` pass their options to the PyTorch reference script.
"""

from dataclasses import dataclass, field

TORCH = "torch"


@dataclass(frozen=True)
class Variant:
    name: str
    backend: str
    fit: dict = field(default_factory=dict)
    backend_options: dict = field(default_factory=dict)
    # A comparison row (the same backend without one optimisation): left out of
    # --quick unless named, to keep the quick run short.
    comparison: bool = False

    @property
    def is_torch(self):
        return self.backend == TORCH

    def describe(self):
        """The options in one short phrase, for tables and charts."""
        options = {**self.fit, **self.backend_options}
        return ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"

    def to_json(self):
        return {"name": self.name, "backend": self.backend, "fit": dict(self.fit),
                "backend_options": dict(self.backend_options)}

    @classmethod
    def from_json(cls, data):
        return cls(data["name"], data["backend"], data.get("fit", {}), data.get("backend_options", {}))


VARIANTS = (
    Variant("numpy", "numpy"),
    Variant("jax", "jax"),  # its defaults: jax.grad, each epoch one compiled lax.scan
    Variant("jax-step", "jax", fit={"epoch_mode": "step"}, comparison=True),  # one jitted call per minibatch
    Variant("jax-manual", "jax", fit={"grad": "manual"}),  # the hand-written backward, scanned
    Variant("cupy", "cupy"),  # our kernels, the step captured as a CUDA graph
    Variant("cupy-no-graph", "cupy", backend_options={"cuda_graph": False}, comparison=True),
    Variant("torch", TORCH),
)

# The row every other row is divided by.
REFERENCE = "torch"


def select(names, quick=False):
    """The variants called ``names`` in table order; None or "all": every one (``quick``: no comparison rows)."""
    from backends import XpnetError

    if names is None or names == ["all"]:
        return [v for v in VARIANTS if not (quick and v.comparison)]
    known = {v.name: v for v in VARIANTS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise XpnetError(
            f"unknown benchmark variant {', '.join(unknown)}: choose from {', '.join(known)} or all"
        )
    return [v for v in VARIANTS if v.name in names]
