"""Where a NumPy training step's time goes: ``uv run python -m benchmarks.step_split``.

One step of 784-128-64-10 and of 784-4096-2048-10 (batch 128, Adam with
weight decay, as train.py trains) split in two: the forward and hand-written
backward (``MLP.loss_and_grads`` writing its gradients into the flat buffer,
as the NumPy backend runs it), and the optimizer update three ways: the
functional one (``Adam.update``, a dozen new arrays per parameter), the ufuncs
over flat buffers (``Adam.update_flat``), and the fused C pass the NumPy
backend runs where a C compiler is at hand (``backends.cpu_kernels``; "none"
and the reason where it is not). The share is the update the backend runs.
Each part is timed right after the other, as a step runs them; median of
``--repeats`` calls after a warm-up, all in one run.
"""

import statistics

import numpy as np

MODELS = ((784, 128, 64, 10), (784, 4096, 2048, 10))


def _median_ms(fn, repeats, after):
    """Median milliseconds of ``fn``, each call right after an untimed ``after()``: the other half of a
    step runs in between, as in training, so neither finds the cache as it left it. Timed back to
    back, the fused update at width 128 took a third to a half of its in-step time."""
    from benchmarks.probe import time_calls

    return 1e3 * statistics.median(time_calls(fn, repeats, warmup=1, before=after))


def split(sizes, batch, repeats):
    import nn
    from backends import cpu_kernels
    from backends.flat import FlatTraining

    model = nn.MLP(sizes=sizes)
    rng = np.random.default_rng(0)
    x = rng.random((batch, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], batch).astype(np.int32)
    params = model.init_params(0)
    optimizer = nn.Adam(weight_decay=0.1)
    _, grads, _ = model.loss_and_grads(params, x, y)
    functional_state = optimizer.init(params)
    flat = FlatTraining(np, sizes)
    flat.adopt(params, optimizer.init(params))
    model.loss_and_grads(flat.params, x, y, out=flat.grads)
    fused = cpu_kernels.fused_update(optimizer, np.float32)

    def forward_backward():
        model.loss_and_grads(flat.params, x, y, out=flat.grads)

    def flat_update():
        optimizer.update_flat(flat.flat_params, flat.flat_grads, flat.flat_state, 1e-9, flat.scratch,
                              flat.layout.n_weights)

    backend_update = (lambda: fused(flat, 1e-9)) if fused else flat_update
    return {
        "model": "-".join(map(str, sizes)),
        "forward_backward_ms": _median_ms(forward_backward, repeats, after=backend_update),
        "update_functional_ms": _median_ms(lambda: optimizer.update(params, grads, functional_state, 1e-3), repeats,
                                           after=forward_backward),
        "update_flat_ms": _median_ms(flat_update, repeats, after=forward_backward),
        "update_fused_ms": _median_ms(backend_update, repeats, after=forward_backward) if fused else None,
    }


def main(argv=None):
    from benchmarks.script import check_json, script_parser, write_json
    from cli.flags import positive_int

    p = script_parser("python -m benchmarks.step_split", __doc__)
    p.add_argument("--batch", type=positive_int, default=128, help="rows per step")
    p.add_argument("--repeats", type=positive_int, default=30, help="timed steps per part")
    args = p.parse_args(argv)
    check_json(args)
    from backends import cpu_kernels

    rows = []
    print(f"NumPy backend: {cpu_kernels.describe()}")
    print("| model | forward + backward | Adam, functional | Adam, flat ufuncs | Adam, fused C | optimizer share |")
    print("| --- | --- | --- | --- | --- | --- |")
    for sizes in MODELS:
        r = split(sizes, args.batch, max(3, args.repeats // (10 if sizes[1] > 1000 else 1)))
        update = r["update_fused_ms"] if r["update_fused_ms"] is not None else r["update_flat_ms"]
        r["optimizer_share"] = update / (r["forward_backward_ms"] + update)
        rows.append(r)
        fused = f"{r['update_fused_ms']:.2f} ms" if r["update_fused_ms"] is not None else "none"
        print(f"| {r['model']} | {r['forward_backward_ms']:.2f} ms | {r['update_functional_ms']:.2f} ms | "
              f"{r['update_flat_ms']:.2f} ms | {fused} | {r['optimizer_share']:.0%} |", flush=True)
    write_json(args, {"optimizer": cpu_kernels.describe(), "rows": rows})
    return 0


if __name__ == "__main__":
    from benchmarks.script import run

    run(main, "python -m benchmarks.step_split")
