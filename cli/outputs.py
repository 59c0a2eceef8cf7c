"""train.py's outputs: their paths checked before training, then the metrics, curves, ONNX graph and Hub copy."""

import json
import math
import os


def check_outputs(args):
    """Refuse unusable or clashing output paths before any data is read or training time spent."""
    from backends import XpnetError
    from cli.paths import check_no_clash, check_writable_file, check_writable_folder
    from nn.checkpoint import checkpoint_path, has_checkpoint
    from nn.data import data_files
    from nn.serialize import check_extension

    check_extension(args.out)
    if args.export_onnx:
        from nn.export import check_extension as check_onnx
        from nn.export import require_onnx

        check_onnx(args.export_onnx, "--export-onnx")
        require_onnx()
    if args.push_to_hub:
        from nn.hub import check_can_push

        # A token, and the Hub answering, before the training time is spent.
        check_can_push(args.push_to_hub, what=f"--push-to-hub {args.push_to_hub}",
                       otherwise=f"drop it and push the saved model later with "
                                 f"`uv run python -m nn.hub push MODEL {args.push_to_hub}`")
    if args.checkpoint_dir and not args.resume and has_checkpoint(args.checkpoint_dir):
        raise XpnetError(
            f"--checkpoint-dir {args.checkpoint_dir} already holds a checkpoint: continue that run with "
            f"--resume {args.checkpoint_dir}, or choose another folder"
        )
    if args.plot:
        from cli.history import require_matplotlib

        require_matplotlib()
    from cli.history import csv_path

    files = [("--out", args.out), ("--metrics-json", args.metrics_json), ("--export-onnx", args.export_onnx),
             ("--plot", args.plot), ("the history CSV beside --metrics-json",
                                     csv_path(args.metrics_json) if args.metrics_json else None)]
    for flag, path in files:
        if path is not None:
            check_writable_file(flag, path)
    folder = args.checkpoint_dir or args.resume
    if folder:
        check_writable_folder("--checkpoint-dir" if args.checkpoint_dir else "--resume", folder)
    data = args.data or os.environ.get("MNIST_DATA") or None
    data_flag = "--data" if args.data else "$MNIST_DATA"
    inputs = [(data_flag, file) for file in (data_files(data) if data else [])] + [("--extra-data", args.extra_data)]
    inputs.append(("--init-from", args.init_from))
    if args.resume:
        inputs.append(("--resume", checkpoint_path(args.resume)))
    check_no_clash(inputs, files)
    if folder:  # the checkpoint is written there: no other output may be that file
        check_no_clash([], [*files, ("the checkpoint", checkpoint_path(folder))])


def publish(args, model, params, metrics):
    """--export-onnx and --push-to-hub, after the model file is safely written."""
    from backends import XpnetError

    if args.export_onnx:
        from nn.export import export_onnx

        export_onnx(args.export_onnx, model, params)
        print(f"ONNX graph written to {args.export_onnx}")
    if args.push_to_hub:
        from nn.hub import push_model

        try:
            print(f"pushed to {push_model(args.push_to_hub, model, params, metrics)}")
        except XpnetError as exc:
            metrics_flag = f" --metrics-json {args.metrics_json}" if args.metrics_json else ""
            raise XpnetError(f"{exc}; the model is saved in {args.out}: push it later with "
                             f"`uv run python -m nn.hub push {args.out} {args.push_to_hub}{metrics_flag}`") from None


def write_metrics(args, be, grad, epoch_mode, model, history, best_epoch, test, train_seconds):
    """The run's figures as a dict; --metrics-json (with the history as CSV beside it) and --plot written."""
    test_loss, test_accuracy = test
    metrics = {
        "backend": be.name,
        "device": be.device_description(),
        **({"blas_threads": be.threads} if be.threads else {}),
        "grad": grad,
        "epoch_mode": epoch_mode,
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "epochs": len(history),
        "epoch_seconds": [record["seconds"] for record in history],
        "train_seconds": train_seconds,
        "best_epoch": best_epoch,
        # No validation split leaves its figures NaN, which JSON cannot hold: null.
        "history": [{k: _json_number(v) for k, v in record.items()} for record in history],
        "model": model.config(),
        "args": dict(vars(args)),
    }
    if args.metrics_json:
        from cli.history import csv_path, write_csv
        from nn.files import atomic_write_bytes

        text = json.dumps(metrics, indent=2, allow_nan=False, default=_not_serialisable)
        atomic_write_bytes(args.metrics_json, (text + "\n").encode())
        write_csv(csv_path(args.metrics_json), history)
    if args.plot:
        from cli.history import write_plot

        write_plot(args.plot, history, f"xpnet MLP {'-'.join(map(str, model.sizes))}, {be.name}, "
                                       f"test accuracy {test_accuracy:.2%}")
        print(f"curves drawn in {args.plot}")
    return metrics


def _json_number(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _not_serialisable(value):
    raise TypeError(f"not JSON serialisable: {value!r}")
