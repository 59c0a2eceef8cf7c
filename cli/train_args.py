"""train.py's flags: the parser, its defaults, and the flags a resumed run takes from its checkpoint."""

import argparse

from cli.console import version
from cli.flags import (
    DefaultsFormatter,
    Parser,
    augment_value,
    hidden_sizes,
    names,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    seed_value,
)

DEFAULT_OUT = "model.npz"
# The distortion parameters, each a flag --aug-NAME (nn.augment.RANGES has their help and ranges).
AUGMENT_PARAMS = ("rotate", "shear", "scale", "shift", "sigma", "alpha", "thicken", "thin", "clean")
# The flags that define a run: --resume keeps the checkpoint's, and refuses others.
RUN_FLAGS = (
    "seed", "hidden", "activation", "loss", "output", "init", "dropout", "reg", "reg_lambda", "epochs",
    "batch_size", "optimizer", "lr", "schedule", "lr_decay", "momentum", "nesterov", "weight_decay",
    "val_size", "patience", "min_delta", "restore_best", "augment", *(f"aug_{name}" for name in AUGMENT_PARAMS),
)
# The default recipe, Adam from 6e-3 on a cosine to 0 with decoupled
# (AdamW-style) decay 0.1, was chosen on the median test accuracy of 3 seeds
# after 5 and 15 epochs (README, The default recipe). SGD's rate is an order of
# magnitude larger, so it keeps no decay unless asked.
DEFAULT_LR = 6e-3
ADAM_WEIGHT_DECAY = 0.1
# The default model is the one gui.py loads, so it trains on distorted digits
# (elastic, the nn.augment defaults) for 30 epochs, 784-256-128-10: chosen on
# drawings of validation digits, then measured on drawn test digits and MNIST's
# test set, 3 seeds, within 60 s on a 2-core CPU (README, Reading drawings).
DEFAULT_AUGMENT, DEFAULT_EPOCHS, DEFAULT_HIDDEN = "elastic", 30, [256, 128]


def build_parser():
    from nn.activations import HIDDEN_ACTIVATIONS
    from nn.regularizers import REGULARIZERS
    from nn.schedules import SCHEDULES

    p = Parser(
        prog="train.py",
        description="Train an MLP on MNIST with xpnet. The defaults (elastic distortions, 30 epochs) reach about "
                    "99.0% test accuracy and read drawn digits.",
        formatter_class=DefaultsFormatter,
    )
    p.add_argument("--version", action="version", version=f"xpnet {version()}")
    run = p.add_argument_group("backend and data")
    run.add_argument("--backend", default=None, metavar="NAME",
                     help="numpy, jax, cupy or auto (default: $XPNET_BACKEND, else auto: cupy if a GPU works, else jax, else numpy)")
    run.add_argument("--grad", choices=("manual", "autodiff"), default=None,
                     help="how gradients are obtained: the hand-written backward, or jax.grad (JAX only; JAX's default)")
    run.add_argument("--data", default=None, metavar="PATH",
                     help="folder with the four MNIST IDX files (gzipped or not) or an mnist.npz; default: $MNIST_DATA, else download and cache")
    run.add_argument("--extra-data", default=None, metavar="FOLDER",
                     help="also train on your own digits saved by gui.py (S then the digit key); never used for validation or test")
    run.add_argument("--seed", type=seed_value, default=0,
                     help="seeds init, shuffling, dropout and augmentation: same seed, same run (0 to 2^32-1)")
    run.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction, default=None,
                     help="cupy: capture one training step as a CUDA graph and replay it per batch "
                          "(default: on where capture works); --no-cuda-graph launches the kernels one by one")
    run.add_argument("--epoch-mode", choices=("step", "scan"), default=None,
                     help="one compiled step per minibatch, or each whole epoch as one compiled jax.lax.scan "
                          "(JAX only; same result, no progress bar) (default: scan on jax, else step)")
    run.add_argument("--devices", type=positive_int, default=None, metavar="N",
                     help="JAX: split each batch across N devices of this process (default: all of them)")
    run.add_argument("--threads", type=positive_int, default=None, metavar="N",
                     help="NumPy: BLAS threads (default: $OPENBLAS_NUM_THREADS, else the cores idle at the start, "
                          "so a busy machine is not made to spin against itself)")

    dist = p.add_argument_group("several machines (JAX, jax.distributed)")
    dist.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                      help="address of process 0, the same on every process (default: $XPNET_COORDINATOR)")
    dist.add_argument("--num-processes", type=positive_int, default=None, metavar="N",
                      help="how many processes take part (default: $XPNET_NUM_PROCESSES)")
    dist.add_argument("--process-id", type=non_negative_int, default=None, metavar="I",
                      help="this process's rank, 0 to N-1 (default: $XPNET_PROCESS_ID)")
    dist.add_argument("--distributed-timeout", type=positive_int, default=300, metavar="SECONDS",
                      help="how long to wait for every process to join before giving up")

    arch = p.add_argument_group("model")
    arch.add_argument("--hidden", type=hidden_sizes, default=DEFAULT_HIDDEN, metavar="N,N",
                      help=f"hidden layer widths, comma-separated (default: {','.join(map(str, DEFAULT_HIDDEN))})")
    arch.add_argument("--activation", type=names, default=["relu"], metavar="NAME",
                      help=f"hidden activation, one for all or one per layer: {', '.join(HIDDEN_ACTIVATIONS)} (default: relu)")
    arch.add_argument("--loss", choices=("ce", "mse"), default="ce",
                      help="softmax cross-entropy, or mean squared error against one-hot targets")
    arch.add_argument("--output", choices=("softmax", "linear"), default="softmax",
                      help="output activation (cross-entropy needs softmax)")
    arch.add_argument("--init", choices=("he", "glorot"), default=None,
                      help="weight init (default: he for relu-like activations, else glorot)")
    arch.add_argument("--init-from", default=None, metavar="MODEL",
                      help="start from this saved model's weights instead (fine-tuning); the architecture flags "
                           "must build the same network")
    arch.add_argument("--dropout", type=non_negative_float, default=0.0,
                      help="dropout rate on hidden activations while training (never on the logits)")
    arch.add_argument("--reg", choices=REGULARIZERS, default="none", help="weight penalty (biases are never penalised)")
    arch.add_argument("--reg-lambda", type=non_negative_float, default=1e-4, help="strength of --reg")

    from nn.augment import KINDS, RANGES, Augment

    aug = p.add_argument_group("augmentation: every training batch distorted anew, per sample (nn/augment.py)")
    aug.add_argument("--augment", choices=KINDS, default=DEFAULT_AUGMENT,
                     help="none; affine (rotation, shear, x/y scale, shift, stroke width); elastic (affine plus "
                          "Simard's elastic field)")
    for name in AUGMENT_PARAMS:
        what, low, high = RANGES[name]
        aug.add_argument(f"--aug-{name}", type=augment_value(name), default=getattr(Augment(), name),
                         metavar="X", help=f"{what}, {low:g} to {high:g}")

    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=positive_int, default=DEFAULT_EPOCHS, help="maximum number of epochs")
    opt.add_argument("--batch-size", type=positive_int, default=128, help="minibatch size")
    opt.add_argument("--optimizer", choices=("sgd", "adam"), default="adam", help="update rule")
    opt.add_argument("--lr", type=positive_float, default=DEFAULT_LR, help="initial learning rate")
    opt.add_argument("--schedule", choices=SCHEDULES, default="cosine",
                     help="learning-rate schedule: cosine decays to 0 over --epochs, step by step")
    opt.add_argument("--lr-decay", type=positive_float, default=0.9, help="per-epoch factor of --schedule exponential")
    opt.add_argument("--momentum", type=non_negative_float, default=0.0, help="SGD momentum")
    opt.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    opt.add_argument("--weight-decay", type=non_negative_float, default=None,
                     help=f"decoupled weight decay on weights (default: {ADAM_WEIGHT_DECAY} with adam, 0 with sgd)")

    stop = p.add_argument_group("validation and early stopping")
    stop.add_argument("--val-size", type=non_negative_int, default=5000,
                      help="images held out from the END of the training set for validation (never the test set)")
    stop.add_argument("--patience", type=non_negative_int, default=0,
                      help="stop after this many epochs without validation-loss improvement (0: never; "
                           "the cosine schedule already ends the run at a rate of 0)")
    stop.add_argument("--min-delta", type=non_negative_float, default=0.0,
                      help="smallest validation-loss decrease that counts as an improvement")
    stop.add_argument("--no-restore-best", dest="restore_best", action="store_false",
                      help="keep the last epoch's weights instead of the best validation epoch's")

    out = p.add_argument_group("output")
    out.add_argument("--out", default=DEFAULT_OUT, metavar="PATH",
                     help="where to save the trained model: .npz or .safetensors, chosen by the extension")
    out.add_argument("--metrics-json", default=None, metavar="PATH",
                     help="write final figures and the per-epoch history as JSON, and the history as CSV beside it "
                          "(m.json: m.csv)")
    out.add_argument("--plot", default=None, metavar="PATH",
                     help="draw loss and accuracy per epoch, training and validation, as a PNG (needs matplotlib: "
                          "the bench extra)")
    out.add_argument("--export-onnx", default=None, metavar="PATH",
                     help="also write the model as an ONNX graph (needs the onnx extra)")
    out.add_argument("--push-to-hub", default=None, metavar="OWNER/NAME",
                     help="upload config.json, model.safetensors and a model card to this Hugging Face Hub repo")

    out.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    resume = p.add_argument_group("checkpoints")
    resume.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                        help="save a checkpoint after every epoch (Ctrl-C also saves one: here, else next to --out)")
    resume.add_argument("--resume", default=None, metavar="DIR",
                        help="continue the run checkpointed in DIR exactly; it keeps its own settings")
    return p


def augment_from_args(args):
    from nn.augment import Augment

    return Augment(args.augment, **{name: getattr(args, f"aug_{name}") for name in AUGMENT_PARAMS})


def _flag(dest):
    return "--no-restore-best" if dest == "restore_best" else "--" + dest.replace("_", "-")


def resumed_args(argv, folder):
    """The checkpoint's flags, with the ones given now on top; a run-defining flag that differs is an error."""
    from backends import XpnetError
    from nn.checkpoint import read_checkpoint

    checkpoint = read_checkpoint(folder)
    parser = build_parser()
    defaults = vars(parser.parse_args([]))
    saved = checkpoint.run.get("args")
    if isinstance(saved, dict) and "augment" not in saved:  # written before --augment existed: none then
        saved = {**{k: defaults[k] for k in RUN_FLAGS if k.startswith("aug_")}, "augment": "none", **saved}
    if not isinstance(saved, dict) or any(
        k not in saved or (defaults[k] is not None and type(saved[k]) is not type(defaults[k])) for k in RUN_FLAGS
    ):
        raise XpnetError(f"{checkpoint.path} has no usable record of its run's flags: start a new run")
    prefilled = argparse.Namespace(**{k: v for k, v in saved.items() if k in defaults and k != "resume"})
    args = parser.parse_args(argv, namespace=prefilled)
    conflicts = [
        f"{_flag(k)} {getattr(args, k)} (the checkpoint has {saved[k]})" for k in RUN_FLAGS if getattr(args, k) != saved[k]
    ]
    if conflicts:
        further = (f"; to train the finished model further, start a new run from it: --init-from {args.out}"
                   if getattr(args, "epochs") != saved["epochs"] else "")
        raise XpnetError(
            f"--resume {folder} continues the run with its own settings; drop the conflicting "
            f"{'flags' if len(conflicts) > 1 else 'flag'}: {'; '.join(conflicts)}{further}"
        )
    return args, checkpoint
