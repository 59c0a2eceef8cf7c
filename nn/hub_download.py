"""Reading a model repo from the Hugging Face Hub: ``hf://owner/name[@revision]`` to a local folder.

Apart from ``nn.hub`` (which pushes, and writes repo folders with
``nn.serialize``) so that ``nn.serialize.load_model`` can read ``hf://``
names without the two modules importing each other.
"""

from pathlib import Path

from backends import XpnetError

SCHEME = "hf://"
REPO_CONFIG, REPO_WEIGHTS = "config.json", "model.safetensors"
REPO_FILES = (REPO_CONFIG, REPO_WEIGHTS, "README.md")


def parse_uri(uri):
    """(repo_id, revision or None) from ``hf://owner/name`` or ``hf://owner/name@revision``."""
    rest = str(uri)[len(SCHEME):] if str(uri).startswith(SCHEME) else str(uri)
    repo_id, _, revision = rest.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise XpnetError(f"{uri}: a Hub model is named hf://owner/name (optionally @revision)")
    return repo_id, revision or None


def download(uri):
    """The local folder of a snapshot of ``hf://owner/name[@revision]`` (downloaded once, then cached)."""
    repo_id, revision = parse_uri(uri)
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(repo_id, revision=revision, allow_patterns=list(REPO_FILES))
    except Exception as exc:  # noqa: BLE001  (errors of several HTTP clients)
        raise XpnetError(
            f"could not download {uri} from the Hugging Face Hub ({describe_error(exc)}); "
            "check the name, the network, or HF_TOKEN for a private repo"
        ) from None
    return Path(folder)


def describe_error(exc):
    """One short line of an error from huggingface_hub or one of the HTTP clients under it."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
