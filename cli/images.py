"""Image files as the 28x28 digits a model reads: Pillow reads, nn.preprocess does the rest."""

import numpy as np

from backends import XpnetError
from nn.preprocess import ink_from_grey, to_mnist


def read_grey(path):
    """(height, width) float32 grey levels in [0, 1] of a PNG, JPEG or any image Pillow reads.

    A picture with transparency is read by its opacity: strokes drawn on a
    transparent sheet are the opaque part, whatever their colour.
    """
    from PIL import Image, UnidentifiedImageError

    fix = "give a PNG or JPEG of one digit"
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                alpha = np.asarray(image.convert("RGBA"), np.float32)[..., 3] / 255
                if alpha.min() < alpha.max():
                    return alpha
            return np.asarray(image.convert("L"), np.float32) / 255
    except FileNotFoundError:
        raise XpnetError(f"image {path} does not exist; {fix}") from None
    except IsADirectoryError:
        raise XpnetError(f"image {path} is a folder; {fix}") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise XpnetError(f"image {path} is not a readable image ({reason}); {fix}") from None


def image_as_digit(path):
    """The 28x28 float32 digit, light on dark, that gui.py would give the model for this picture."""
    digit = to_mnist(ink_from_grey(read_grey(path)))
    if not digit.any():
        raise XpnetError(f"image {path} has no ink: one colour throughout; give a picture of a digit")
    return digit
