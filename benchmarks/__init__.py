"""Every backend side by side with PyTorch: ``python -m benchmarks``.

The parent process (``runner``) loads MNIST once, writes it as raw arrays
and starts one child process per (variant, phase), one after another, so a
crash or a thread setting of one cannot skew another:

    worker           an xpnet variant, through nn.fit and the backend's own steps
    torch_reference  the same model written as a PyTorch user would, run by
                     another interpreter (``--torch-python``) when this one has no torch

Beside it, ``python -m benchmarks.gui_frames`` times the drawing window's
frames and ``python -m benchmarks.jax_parts`` splits a JAX scan epoch into
its pieces (the first layer's two matmuls, shuffle, gathers).

A variant is a backend plus options (``variants.py``); adding a row is one
line there. This package imports only the standard library, so the PyTorch
interpreter can import ``benchmarks.probe`` without NumPy or xpnet's
dependencies.
"""
