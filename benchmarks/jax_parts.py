"""Where a JAX scan epoch's time goes: ``uv run python -m benchmarks.jax_parts``.

Times, on this machine, the pieces of one epoch of the default model at
batch 128, each as its own compiled ``jax.lax.scan`` over the epoch's steps
so that dispatch is paid once, as in xpnet's scan epoch:

    forward matmul      (batch x 784) @ (784 x 128), the first layer
    weight gradient     (784 x batch) @ (batch x 128), its dW
    shuffle             the epoch order: ``permutation_from_key``, a sort
    gather              each batch's rows taken from the dataset
    whole epoch         xpnet's own scan epoch (jax.grad, Adam 1e-3), for scale
    large matmul        4096² float32, the ceiling the benchmark divides by

A first layer's two products carry 92% of the model's FLOPs, so their rate at
these shapes, against the large matmul's, bounds what any scan epoch can do.
"""

import itertools
import time

import numpy as np


def _seconds(fn, *args, repeats):
    import jax

    jax.block_until_ready(fn(*args))  # compile and warm up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - started)
    return best


def measure(n=55_000, batch=128, hidden=128, inputs=784, repeats=5, large=4096):
    """{piece: (seconds per epoch, GFLOP/s or None)}, the fastest of ``repeats``."""
    import jax
    import jax.numpy as jnp

    from backends.random import permutation_from_key

    steps = n // batch
    rng = np.random.default_rng(0)
    x_all = jnp.asarray(rng.random((n, inputs), dtype=np.float32))
    x_steps = x_all[: steps * batch].reshape(steps, batch, inputs)
    d_steps = jnp.asarray(rng.random((steps, batch, hidden), dtype=np.float32))
    w = jnp.asarray(rng.random((inputs, hidden), dtype=np.float32) * 0.01)
    flops = 2.0 * batch * inputs * hidden * steps

    @jax.jit
    def forward(w, x_steps):
        # The carry changes each step, so XLA cannot hoist the product out of the loop.
        def body(w, x):
            return w * 1.0000001, (x @ w)[0, 0]
        return jax.lax.scan(body, w, x_steps)[1]

    @jax.jit
    def weight_gradient(x_steps, d_steps):
        def body(total, xd):
            x, d = xd
            return total + (x.T @ d)[0, 0], None
        return jax.lax.scan(body, 0.0, (x_steps, d_steps))[0]

    shuffle = jax.jit(lambda key: permutation_from_key(jnp, key, n))
    order = shuffle(jnp.uint32(12345))

    @jax.jit
    def gather(x_all, order):
        def body(total, idx):
            return total + x_all[idx].sum(), None
        return jax.lax.scan(body, 0.0, order[: steps * batch].reshape(steps, batch))[0]

    epoch = _xpnet_epoch(n, batch, hidden, x_all)
    big = jnp.asarray(rng.random((large, large), dtype=np.float32))
    matmul = jax.jit(lambda a: a @ a)

    results = {}
    seconds = _seconds(forward, w, x_steps, repeats=repeats)
    results[f"forward matmul {batch}x{inputs} @ {inputs}x{hidden}"] = (seconds, flops / seconds / 1e9)
    seconds = _seconds(weight_gradient, x_steps, d_steps, repeats=repeats)
    results[f"weight gradient {inputs}x{batch} @ {batch}x{hidden}"] = (seconds, flops / seconds / 1e9)
    results[f"shuffle of {n:,} (sort)"] = (_seconds(shuffle, jnp.uint32(7), repeats=repeats), None)
    results[f"gather of {steps} batches"] = (_seconds(gather, x_all, order, repeats=repeats), None)
    results["whole xpnet scan epoch, no validation"] = (_seconds(epoch, repeats=repeats), None)
    seconds = _seconds(matmul, big, repeats=max(1, repeats // 2))
    results[f"large matmul {large}²"] = (seconds, 2.0 * large**3 / seconds / 1e9)
    return results


def _xpnet_epoch(n, batch, hidden, x_all):
    """A call that runs one training epoch of xpnet's JAX scan on ``x_all``, the default model's shape."""
    from cli.build import build_run
    from cli.train_args import build_parser

    flags = ["--backend", "jax", "--hidden", f"{hidden},{hidden // 2}", "--batch-size", str(batch),
             "--optimizer", "adam", "--lr", "1e-3", "--schedule", "constant", "--weight-decay", "0"]
    be, grad, model, optimizer, _, _, _ = build_run(build_parser().parse_args(flags))
    run_epoch = be.make_train_epoch(model, optimizer, seed=0, grad=grad, n=n, batch_size=batch)
    y_all = be.asarray(np.arange(n, dtype=np.int32) % 10)
    x_all = be.asarray(x_all)
    lrs = np.full(-(-n // batch), 1e-3, np.float32)
    carry = {"params": be.tree_asarray(model.init_params(0))}
    carry["state"] = be.place(optimizer.init(carry["params"]))
    epochs = itertools.count()

    def epoch():
        # params and state are donated to the compiled epoch: each call feeds the last result back.
        carry["params"], carry["state"], loss, _ = run_epoch(carry["params"], carry["state"], x_all, y_all,
                                                             next(epochs), lrs)
        return loss

    return epoch


def main(argv=None):
    from cli.flags import Parser, positive_int

    p = Parser(prog="python -m benchmarks.jax_parts", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=positive_int, default=55_000, help="training images (default: 55,000)")
    p.add_argument("--batch", type=positive_int, default=128)
    p.add_argument("--repeats", type=positive_int, default=5)
    p.add_argument("--large", type=int, default=4096, help="side of the large matmul (default: 4096)")
    args = p.parse_args(argv)
    import jax

    print(f"JAX {jax.__version__} on {jax.devices()[0].device_kind}; one epoch of {args.n:,} images, batch {args.batch}")
    print("| piece | ms per epoch | GFLOP/s |")
    print("| --- | --- | --- |")
    for piece, (seconds, rate) in measure(args.n, args.batch, repeats=args.repeats, large=args.large).items():
        print(f"| {piece} | {seconds * 1e3:.1f} | {'–' if rate is None else f'{rate:.0f}'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
