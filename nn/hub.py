"""The Hugging Face Hub: a thin, documented wrapper over ``huggingface_hub``.

An xpnet model repo holds three files:

    config.json        the architecture (the same JSON as in the weights' metadata)
    model.safetensors  float32 weights, the architecture in the header metadata
    README.md          the model card: metrics, training recipe, how to load it

``write_repo_folder`` lays them out in a local folder; ``push`` uploads such a
folder (``train.py --push-to-hub owner/name``, or ``python -m nn.hub push
MODEL owner/name`` for a model already saved), after ``check_can_push`` made
sure, before any training, that a token exists and the Hub answers;
``download`` fetches a repo
snapshot into the ``huggingface_hub`` cache and returns the folder, which is
how ``load_model("hf://owner/name")`` and ``gui.py --model hf://owner/name``
work. Only ``push`` and ``download`` touch the network; everything they
need is plain files, so the rest is tested offline on a local folder.
Authentication, cache location and offline mode are huggingface_hub's own:
``HF_TOKEN`` or ``hf auth login``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE=1``.
"""

import json
import os
import sys
import tempfile
from pathlib import Path

from backends import XpnetError

from .files import atomic_write_bytes
from .hub_download import REPO_CONFIG, REPO_FILES, REPO_WEIGHTS, SCHEME, describe_error, download, parse_uri
from .serialize import architecture_json, save_model

__all__ = ["REPO_FILES", "SCHEME", "check_can_push", "download", "parse_uri", "push", "push_model",
           "write_repo_folder"]


def write_repo_folder(folder, model, params, metrics=None, repo_id="owner/name"):
    """Lay out ``folder`` as a Hub model repo: config.json, model.safetensors, README.md."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(folder / REPO_WEIGHTS, model, params)
    config = json.dumps(json.loads(architecture_json(model)), indent=2)
    atomic_write_bytes(folder / REPO_CONFIG, (config + "\n").encode())
    atomic_write_bytes(folder / "README.md", model_card(model, metrics or {}, repo_id).encode())
    return folder


def model_card(model, metrics, repo_id):
    """A README.md whose YAML header the Hub reads (tags, dataset, test accuracy)."""
    layers = "-".join(str(n) for n in model.sizes)
    accuracy = metrics.get("test_accuracy")
    header = [
        "---",
        "license: mit",
        "library_name: xpnet",
        "tags: [xpnet, mlp, mnist, image-classification]",
        "datasets: [ylecun/mnist]",
        "metrics: [accuracy]",
    ]
    if accuracy is not None:
        header += [
            "model-index:",
            f"- name: {repo_id}",
            "  results:",
            "  - task: {type: image-classification, name: Image classification}",
            "    dataset: {type: ylecun/mnist, name: MNIST, split: test}",
            "    metrics:",
            f"    - {{type: accuracy, value: {accuracy:.6f}, name: Test accuracy}}",
        ]
    header.append("---")
    args = metrics.get("args", {})
    recipe = ", ".join(
        f"{key} {args[key]}" for key in ("optimizer", "lr", "schedule", "batch_size", "epochs", "seed") if key in args
    )
    rows = [
        ("architecture", f"MLP {layers}, hidden activations {', '.join(model.activations) or 'none'}, output {model.output}"),
        ("loss", model.loss),
        ("test accuracy", f"{accuracy:.2%}" if accuracy is not None else "not measured"),
        ("test loss", f"{metrics['test_loss']:.4f}" if "test_loss" in metrics else "not measured"),
        ("epochs trained", metrics.get("epochs", "?")),
        ("trained on", f"{metrics.get('backend', '?')} ({metrics.get('device', '?')})"),
        ("recipe", recipe or "not recorded"),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return f"""{chr(10).join(header)}

# {repo_id.split("/")[-1]}: an MNIST digit classifier trained with xpnet

A multi-layer perceptron for 28x28 grey digits, flattened to 784 floats in
[0, 1]. Trained with xpnet on MNIST; the validation set was held out from
the training set, and the test set was used once, at the end.

| | |
| --- | --- |
{table}

## Files

- `model.safetensors`: float32 weights `layers.{{i}}.w` (in, out) and
  `layers.{{i}}.b`, the architecture JSON in the header metadata. No pickle:
  loading it cannot run code.
- `config.json`: the same architecture, for reading without a safetensors library.

## How to load

With xpnet:

```python
from nn.serialize import load_model

model, params = load_model("hf://{repo_id}")   # downloads once into the Hugging Face cache
probabilities = model.predict(params, pixels)  # pixels: float32 (N, 784) in [0, 1]
```

Draw digits for it: `uv run gui.py --model hf://{repo_id}`.
Run it anywhere ONNX runs: `uv run --extra onnx python -m nn.export hf://{repo_id} model.onnx`.
"""


def check_can_push(repo_id, what=None, otherwise=None):
    """Raise XpnetError unless a push to ``repo_id`` could work now: online, a token, the Hub answering.

    ``what`` names the request in the message (default: pushing to the repo),
    ``otherwise`` is the way out it offers besides fixing the cause.
    """
    repo_id, _ = parse_uri(repo_id)
    what = what or f"pushing to {repo_id}"
    alternative = f", or {otherwise}" if otherwise else ""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise XpnetError(f"{what} needs the network, but HF_HUB_OFFLINE is set: unset it{alternative}")
    try:
        from huggingface_hub import HfApi, get_token

        token = get_token()
        if token is None:
            raise XpnetError(f"{what} needs a Hugging Face token: run `hf auth login` or set HF_TOKEN{alternative}")
        HfApi(token=token).whoami()
    except XpnetError:
        raise
    except Exception as exc:  # noqa: BLE001  (as in push: errors of several HTTP clients)
        raise XpnetError(f"{what}: the Hub did not accept the token or did not answer ({describe_error(exc)}); "
                         f"check the network and the token{alternative}") from None


def push(folder, repo_id, *, private=False, token=None):
    """Upload ``folder`` to the model repo ``repo_id`` (created if needed); returns its URL."""
    repo_id, _ = parse_uri(repo_id)
    try:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message="Upload xpnet model")
    # huggingface_hub reports network trouble with its own errors or with its
    # HTTP client's (requests, httpx, httpx2 across versions): all mean "not uploaded".
    except Exception as exc:  # noqa: BLE001
        raise XpnetError(
            f"could not push to the Hub repo {repo_id} ({describe_error(exc)}); "
            "log in with `hf auth login` or set HF_TOKEN, and check the network"
        ) from None
    return str(url)


def push_model(repo_id, model, params, metrics=None, *, private=False):
    """Write the repo folder to a temporary place and push it; returns the repo URL."""
    with tempfile.TemporaryDirectory(prefix="xpnet-hub-") as folder:
        write_repo_folder(folder, model, params, metrics, parse_uri(repo_id)[0])
        return push(folder, repo_id, private=private)


def main(argv=None):
    """``python -m nn.hub push MODEL owner/name``: upload a saved model without training it again."""
    from cli.flags import Parser  # the front doors' parser: only this entry point needs it

    from .serialize import load_model

    parser = Parser(prog="python -m nn.hub", description="Push a saved xpnet model to the Hugging Face Hub.")
    commands = parser.add_subparsers(dest="command", required=True)
    push_command = commands.add_parser("push", help="upload MODEL as the model repo owner/name")
    push_command.add_argument("model", metavar="MODEL", help="a .npz or .safetensors model, or a Hub-style folder")
    push_command.add_argument("repo", metavar="OWNER/NAME", help="the Hub repo (created if needed)")
    push_command.add_argument("--metrics-json", default=None, metavar="PATH",
                              help="train.py's --metrics-json of this model: its test accuracy goes on the card")
    push_command.add_argument("--private", action="store_true", help="create the repo private")
    args = parser.parse_args(argv)
    parse_uri(args.repo)  # a bad name is refused before any file is read
    model, params = load_model(args.model)
    metrics = {}
    if args.metrics_json:
        try:
            metrics = json.loads(Path(args.metrics_json).read_text())
        except (OSError, ValueError) as exc:
            raise XpnetError(f"--metrics-json {args.metrics_json} is not readable JSON ({describe_error(exc)}); "
                             "give the file train.py --metrics-json wrote") from None
        if not isinstance(metrics, dict):
            raise XpnetError(f"--metrics-json {args.metrics_json} holds no JSON object; give train.py's metrics file")
    check_can_push(args.repo)
    print(f"pushed to {push_model(args.repo, model, params, metrics, private=args.private)}")
    return 0


if __name__ == "__main__":
    from backends.errors import run_front_door

    sys.exit(run_front_door(main, None, "python -m nn.hub"))
