"""``uv run python -m benchmarks.augment_cost``: an augmented epoch against a plain one, in one run.

For each backend and model, runs ``train.py`` for ``--epochs`` epochs with
``--augment none`` and with ``elastic`` (the default distortions) on real
MNIST, each in a process of its own as a user would (BLAS threads and all),
and reports the median epoch time after the first (which compiles on JAX)
and the ratio. Plain and augmented runs of one row take turns, ``--rounds``
times, and each keeps its fastest round: on a VM whose speed drifts within
minutes, a single pair compares two different machines.

First, in this process, it times one distorted batch of 128 images alone
(the default distortions, median of 100 calls): NumPy through
``nn.augment``'s ufuncs, NumPy's own path (the C warp where a compiler is
at hand), and on JAX, where installed, ``nn.augment`` jitted and the
backend's own path jitted (on the CPU, the C warp as an XLA custom call).
"""

MODELS = ("256,128", "800")  # the default model (train.py's --hidden) and Simard's


def epoch_seconds(backend, hidden, augment, epochs, data, openblas_threads=None):
    from backends.threads import BLAS_ENV
    from benchmarks.script import median_epoch_seconds, train_run

    argv = ["--backend", backend, "--hidden", hidden, "--augment", augment, "--epochs", str(epochs),
            *(["--data", data] if data else [])]
    env = {BLAS_ENV: str(openblas_threads) if openblas_threads else None}
    return median_epoch_seconds(train_run(argv, env))


def batch_microseconds(backends, batch=128, repeats=100):
    """{path: median microseconds} of distorting one batch of ``batch`` random images, one step each call."""
    import itertools

    import numpy as np

    from backends import cpu_kernels, get_backend, unavailable_reason
    from benchmarks.probe import time_calls
    from nn.augment import Augment, augment_batch

    augment = Augment("elastic")
    x = np.random.default_rng(0).random((batch, 784), dtype=np.float32)
    steps = itertools.count()
    paths = {"numpy, nn.augment's ufuncs": lambda: augment_batch(np, x, 0, next(steps), augment)}
    if "numpy" in backends:
        distort = get_backend("numpy").distort_fn(augment, 0)
        how = "C warp" if cpu_kernels.library() is not None else cpu_kernels.describe()
        paths[f"numpy, the backend's ({how})"] = lambda: distort(x, next(steps))
    if "jax" in backends and unavailable_reason("jax") is None:
        be = get_backend("jax")
        x_device = be.asarray(x)
        own = be.distort_fn(augment, 0)
        how = cpu_kernels.xla_describe() or "XLA's own warp"
        for name, jax_distort in (("jax, nn.augment jitted", lambda x, step: augment.apply(be.xp, x, 0, step)),
                                  (f"jax, the backend's, jitted ({how})", own)):
            jitted = be.compile(jax_distort)
            paths[name] = lambda jitted=jitted: be.block(jitted(x_device, be.asarray(np.int32(next(steps)))))
    return {name: 1e6 * float(np.median(time_calls(fn, repeats))) for name, fn in paths.items()}


def main(argv=None):
    from benchmarks.script import add_data_flag, check_json, script_parser, write_json
    from cli.flags import positive_int

    p = script_parser("python -m benchmarks.augment_cost", __doc__)
    p.add_argument("--backends", default="numpy,jax", metavar="NAMES", help="comma-separated backends")
    p.add_argument("--epochs", type=positive_int, default=3, help="epochs per run; the first is not counted")
    p.add_argument("--rounds", type=positive_int, default=2, help="plain and augmented runs per row, taking turns")
    p.add_argument("--openblas-threads", type=positive_int, default=None, metavar="N",
                   help="run train.py with OPENBLAS_NUM_THREADS=N, as a user who sets it does (default: unset, "
                        "train.py's own choice)")
    add_data_flag(p)
    args = p.parse_args(argv)
    check_json(args)
    names = [b.strip() for b in args.backends.split(",") if b.strip()]
    batch = batch_microseconds(names)
    print("| one batch of 128, default distortions | median |")
    print("| --- | --- |")
    for name, us in batch.items():
        print(f"| {name} | {us:,.0f} µs |", flush=True)
    print()
    rows = []
    print(f"| backend | model | plain epoch (fastest of {args.rounds}) | augmented epoch (elastic) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for backend in names:
        for hidden in MODELS:
            times = {"none": [], "elastic": []}
            for _ in range(args.rounds):
                for augment, seen in times.items():
                    seen.append(epoch_seconds(backend, hidden, augment, args.epochs, args.data, args.openblas_threads))
            plain, augmented = min(times["none"]), min(times["elastic"])
            rows.append({"backend": backend, "model": f"784-{hidden.replace(',', '-')}-10", "plain_s": plain,
                         "augmented_s": augmented, "ratio": augmented / plain,
                         "plain_rounds_s": times["none"], "augmented_rounds_s": times["elastic"],
                         "openblas_threads": args.openblas_threads})
            r = rows[-1]
            print(f"| {backend} | {r['model']} | {plain:.2f} s | {augmented:.2f} s | {r['ratio']:.2f}x |", flush=True)
    write_json(args, {"one_batch_us": batch, "rows": rows})
    return 0


if __name__ == "__main__":
    from benchmarks.script import run

    run(main, "python -m benchmarks.augment_cost")
