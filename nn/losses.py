"""Losses, each as ``loss(outputs, labels) -> scalar`` beside its gradient.

Both are means over the batch, so the learning rate does not depend on the
batch size. Labels are integer class indices.
"""

from backends import array_module


def one_hot(labels, num_classes, dtype):
    xp = array_module(labels)
    return (labels[:, None] == xp.arange(num_classes)).astype(dtype)


def _softmax_parts(logits):
    """(z - max z, exp of that, its row sums (N, 1)): shifting by the row maximum
    keeps exp() in (0, 1], so the loss and its gradient stay finite even for logits of +-1e4."""
    xp = array_module(logits)
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    e = xp.exp(shifted)
    return shifted, e, xp.sum(e, axis=1, keepdims=True)


def _cross_entropy(shifted, total, target):
    xp = array_module(shifted)
    return xp.mean(xp.log(total[:, 0]) - xp.sum(shifted * target, axis=1))


def softmax_cross_entropy(logits, labels):
    """L = mean_n( logsumexp(z_n) - z_n[y_n] ), fused with the softmax."""
    shifted, _, total = _softmax_parts(logits)
    return _cross_entropy(shifted, total, one_hot(labels, logits.shape[1], logits.dtype))


def softmax_cross_entropy_backward(logits, labels):
    """dL/dz = (softmax(z) - onehot(y)) / N"""
    _, e, total = _softmax_parts(logits)
    return (e / total - one_hot(labels, logits.shape[1], logits.dtype)) / logits.shape[0]


def softmax_cross_entropy_value_and_grad(logits, labels):
    """(L, dL/dz) of the two functions above from one softmax, for the hand-written backward."""
    shifted, e, total = _softmax_parts(logits)
    target = one_hot(labels, logits.shape[1], logits.dtype)
    return _cross_entropy(shifted, total, target), (e / total - target) / logits.shape[0]


def mse(outputs, labels):
    """L = mean_n sum_k (yhat_nk - onehot(y)_nk)^2 / K: the mean over all entries."""
    xp = array_module(outputs)
    diff = outputs - one_hot(labels, outputs.shape[1], outputs.dtype)
    return xp.mean(diff * diff)


def mse_backward(outputs, labels):
    """dL/dyhat = 2 (yhat - onehot(y)) / (N K)"""
    diff = outputs - one_hot(labels, outputs.shape[1], outputs.dtype)
    return diff * (2.0 / diff.size)


LOSSES = {
    "ce": (softmax_cross_entropy, softmax_cross_entropy_backward),
    "mse": (mse, mse_backward),
}
# Losses whose value and gradient share their work, for the hand-written backward.
VALUE_AND_GRAD = {"ce": softmax_cross_entropy_value_and_grad}
