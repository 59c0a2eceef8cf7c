"""Where a NumPy training step's time goes: ``uv run python -m benchmarks.step_split``.

One step of 784-128-64-10 and of 784-4096-2048-10 (batch 128, Adam with
weight decay, as train.py trains) split in two: the forward and hand-written
backward (``MLP.loss_and_grads`` writing its gradients into the flat buffer,
as the NumPy backend runs it), and the optimizer update, the functional one
(``Adam.update``, a dozen new arrays per parameter) beside the one the NumPy
backend runs over flat buffers (``Adam.update_flat``). Median of
``--repeats`` steps after a warm-up, all in one run.
"""

import statistics

import numpy as np

MODELS = ((784, 128, 64, 10), (784, 4096, 2048, 10))


def _median_ms(fn, repeats):
    from benchmarks.probe import time_calls

    return 1e3 * statistics.median(time_calls(fn, repeats, warmup=1))


def split(sizes, batch, repeats):
    import nn
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
    return {
        "model": "-".join(map(str, sizes)),
        "forward_backward_ms": _median_ms(lambda: model.loss_and_grads(flat.params, x, y, out=flat.grads), repeats),
        "update_functional_ms": _median_ms(lambda: optimizer.update(params, grads, functional_state, 1e-3), repeats),
        "update_flat_ms": _median_ms(lambda: optimizer.update_flat(flat.flat_params, flat.flat_grads, flat.flat_state,
                                                                   1e-9, flat.scratch, flat.layout.n_weights),
                                     repeats),
    }


def main(argv=None):
    from benchmarks.script import check_json, script_parser, write_json
    from cli.flags import positive_int

    p = script_parser("python -m benchmarks.step_split", __doc__)
    p.add_argument("--batch", type=positive_int, default=128, help="rows per step")
    p.add_argument("--repeats", type=positive_int, default=30, help="timed steps per part")
    args = p.parse_args(argv)
    check_json(args)
    rows = []
    print("| model | forward + backward | Adam, functional | Adam, flat buffers | optimizer share of the step |")
    print("| --- | --- | --- | --- | --- |")
    for sizes in MODELS:
        r = split(sizes, args.batch, max(3, args.repeats // (10 if sizes[1] > 1000 else 1)))
        r["optimizer_share"] = r["update_flat_ms"] / (r["forward_backward_ms"] + r["update_flat_ms"])
        rows.append(r)
        print(f"| {r['model']} | {r['forward_backward_ms']:.2f} ms | {r['update_functional_ms']:.2f} ms | "
              f"{r['update_flat_ms']:.2f} ms | {r['optimizer_share']:.0%} |", flush=True)
    write_json(args, rows)
    return 0


if __name__ == "__main__":
    from benchmarks.script import run

    run(main, "python -m benchmarks.step_split")
