"""``uv run python -m benchmarks.augment_cost``: an augmented epoch against a plain one, in one run.

For each backend and model, trains ``--epochs`` epochs with ``--augment
none`` and with ``elastic`` (the default distortions) on real MNIST, and
reports the median epoch time after the first (which compiles on JAX) and
the ratio. Plain and augmented runs of one row alternate epoch by epoch
would be fairer still; here they follow each other within seconds.
"""

import statistics


MODELS = ("256,128", "800")  # the default model (train.py's --hidden) and Simard's


def epoch_seconds(backend, hidden, augment, epochs, data):
    import nn
    import train

    args = train.build_parser().parse_args(
        ["--backend", backend, "--hidden", hidden, "--augment", augment, "--epochs", str(epochs), "--no-progress"])
    be, grad, model, optimizer, schedule, stopping, aug = train.build_run(args)
    x_train, y_train, _, _ = nn.split_validation(data.x_train, data.y_train, args.val_size)
    seconds = []
    nn.fit(be, model, optimizer, schedule, x_train, y_train, epochs=epochs, batch_size=args.batch_size,
           seed=0, grad=grad, augment=aug, on_epoch=lambda record: seconds.append(record["seconds"]))
    return statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]


def main(argv=None):
    from benchmarks.script import add_data_flag, check_json, script_parser, write_json
    from cli.flags import positive_int

    p = script_parser("python -m benchmarks.augment_cost", __doc__)
    p.add_argument("--backends", default="numpy,jax", metavar="NAMES", help="comma-separated backends")
    p.add_argument("--epochs", type=positive_int, default=3, help="epochs per run; the first is not counted")
    add_data_flag(p)
    args = p.parse_args(argv)
    from nn.data import load_mnist

    check_json(args)
    data = load_mnist(args.data)
    rows = []
    print("| backend | model | plain epoch | augmented epoch (elastic) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        for hidden in MODELS:
            plain = epoch_seconds(backend, hidden, "none", args.epochs, data)
            augmented = epoch_seconds(backend, hidden, "elastic", args.epochs, data)
            rows.append({"backend": backend, "model": f"784-{hidden.replace(',', '-')}-10", "plain_s": plain,
                         "augmented_s": augmented, "ratio": augmented / plain})
            r = rows[-1]
            print(f"| {backend} | {r['model']} | {plain:.2f} s | {augmented:.2f} s | {r['ratio']:.2f}x |", flush=True)
    write_json(args, rows)
    return 0


if __name__ == "__main__":
    from benchmarks.script import run

    run(main, "python -m benchmarks.augment_cost")
