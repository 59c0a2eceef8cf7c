"""What a run is made of, from train.py's flags: backend, model, optimizer, schedule, starting weights."""

import os

from cli.train_args import ADAM_WEIGHT_DECAY, augment_from_args


def build_run(args, threads=None):
    """Backend, model, optimizer and schedule from the flags; fails before any data is read.
    ``threads``: (count, where it comes from) for the BLAS threads instead of --threads."""
    import nn
    from backends import XpnetError, get_backend

    activations = args.activation * len(args.hidden) if len(args.activation) == 1 else args.activation
    if len(activations) != len(args.hidden):
        raise XpnetError(
            f"--activation lists {len(activations)} names for {len(args.hidden)} hidden layers: give one, or one per layer"
        )
    _check_memory(args)
    init = args.init or ("he" if all(a in ("relu", "leaky_relu") for a in activations) else "glorot")
    model = nn.MLP(
        sizes=(784, *args.hidden, 10),
        activations=tuple(activations),
        output=args.output,
        loss=args.loss,
        dropout=args.dropout,
        reg=args.reg,
        reg_lambda=args.reg_lambda if args.reg != "none" else 0.0,
        init=init,
    )
    if args.optimizer == "adam":
        if args.momentum or args.nesterov:
            raise XpnetError("--momentum and --nesterov belong to --optimizer sgd; Adam keeps its own moments")
        decay = ADAM_WEIGHT_DECAY if args.weight_decay is None else args.weight_decay
        optimizer = nn.Adam(weight_decay=decay)
    else:
        decay = args.weight_decay or 0.0
        optimizer = nn.SGD(momentum=args.momentum, nesterov=args.nesterov, weight_decay=decay)
    schedule = nn.Schedule(args.schedule, args.lr, args.epochs, args.lr_decay)
    be = get_backend(_distributed_backend(args))
    if args.cuda_graph is not None:
        if be.name == "cupy":
            be.cuda_graph = args.cuda_graph
        elif args.cuda_graph:
            raise XpnetError(f"--cuda-graph needs --backend cupy (the {be.name} backend has no CUDA graphs)")
    be.use_devices(args.devices)
    be.use_threads(*(threads or (args.threads, None)))
    be.check_batch_size(args.batch_size)
    grad = be.check_grad_mode(args.grad)
    stopping = nn.EarlyStopping(args.patience, args.min_delta, args.restore_best)
    return be, grad, model, optimizer, schedule, stopping, augment_from_args(args)


def _training_bytes(args):
    """A lower bound on the memory a run needs: weights, gradients and two optimizer moments in float32,
    plus each layer's activations and their gradients for one batch."""
    sizes = (784, *args.hidden, 10)
    params = sum((n_in + 1) * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    activations = args.batch_size * sum(sizes)
    return 4 * (4 * params + 4 * activations)


def _check_memory(args):
    from backends import XpnetError

    needed = _training_bytes(args)
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): nothing to compare with
        return
    if needed > physical:
        raise XpnetError(
            f"--hidden {','.join(map(str, args.hidden))} with --batch-size {args.batch_size} needs at least "
            f"{needed / 2**30:,.1f} GiB, more than this machine's {physical / 2**30:,.1f} GiB: choose smaller layers"
        )


def _env_int(name, flag):
    text = os.environ.get(name)
    if text is None or not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        from backends import XpnetError

        raise XpnetError(f"${name}={text!r} must be a whole number (like {flag})") from None


def _distributed_backend(args):
    """Join a jax.distributed run when a coordinator is given; returns the backend name to use.

    jax.distributed.initialize() must come before any other JAX call, so
    this runs before the backend is made.
    """
    from backends import XpnetError

    coordinator = args.coordinator or os.environ.get("XPNET_COORDINATOR") or None
    num_processes = args.num_processes if args.num_processes is not None else _env_int("XPNET_NUM_PROCESSES", "--num-processes")
    process_id = args.process_id if args.process_id is not None else _env_int("XPNET_PROCESS_ID", "--process-id")
    if coordinator is None:
        if num_processes is not None or process_id is not None:
            raise XpnetError("--num-processes and --process-id need --coordinator HOST:PORT (or $XPNET_COORDINATOR)")
        return args.backend
    backend = (args.backend or os.environ.get("XPNET_BACKEND") or "jax").strip().lower()
    if backend not in ("jax", "auto"):
        raise XpnetError(f"--coordinator runs jax.distributed: use --backend jax, not {backend}")
    from backends.jax_backend import start_distributed

    start_distributed(coordinator, num_processes, process_id, timeout=args.distributed_timeout)
    return "jax"


def initial_params(path, model):
    """The weights of the model file ``path``, which must be the network this run builds."""
    from backends import XpnetError
    from nn.serialize import load_model

    saved, params = load_model(path)
    mine = {k: getattr(model, k) for k in ("sizes", "activations", "output", "loss")}
    theirs = {k: getattr(saved, k) for k in mine}
    if mine != theirs:
        hidden = ",".join(map(str, saved.sizes[1:-1]))
        raise XpnetError(
            f"--init-from {path} is a {'-'.join(map(str, saved.sizes))} {','.join(saved.activations)} network "
            f"({saved.output} output, {saved.loss} loss), this run builds {'-'.join(map(str, model.sizes))} "
            f"{','.join(model.activations)} ({model.output}, {model.loss}): pass --hidden {hidden} --activation "
            f"{','.join(saved.activations)} --output {saved.output} --loss {saved.loss}"
        )
    return params


def threads_to_resume_with(args, checkpoint):
    """(count, why) of the BLAS threads a resumed NumPy run started with, or None: --threads or
    $OPENBLAS_NUM_THREADS given now, another backend, or a checkpoint that does not say."""
    from backends.threads import asked_in_environment

    # The validation pass's matrix products round differently on another count of
    # threads (seen on a 16-core machine whose free cores changed between the runs):
    # the same count keeps a resumed run bit for bit the uninterrupted one.
    started_with = checkpoint.run.get("blas_threads")
    if args.threads is not None or asked_in_environment() is not None or args.backend != "numpy":
        return None
    if type(started_with) is not int or started_with < 1:
        return None
    return started_with, f"as the run started (--resume {args.resume})"
