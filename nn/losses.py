"""Losses, each as ``loss(outputs, labels) -> scalar`` beside its gradient.

Both are means over the batch, so the learning rate does not depend on the
batch size. Labels are integer class indices.
"""

from backends import array_module


def one_hot(labels, num_classes, dtype):
    xp = array_module(labels)
    return (labels[:, None] == xp.arange(num_classes)).astype(dtype)


def softmax_cross_entropy(logits, labels):
    """L = mean_n( logsumexp(z_n) - z_n[y_n] ), fused with the softmax.

    Shifting by the row maximum keeps exp() in (0, 1], so the loss and its
    gradient stay finite even for logits of +-1e4.
    """
    xp = array_module(logits)
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    log_norm = xp.log(xp.sum(xp.exp(shifted), axis=1))
    picked = xp.sum(shifted * one_hot(labels, logits.shape[1], logits.dtype), axis=1)
    return xp.mean(log_norm - picked)


def softmax_cross_entropy_backward(logits, labels):
    """dL/dz = (softmax(z) - onehot(y)) / N"""
    xp = array_module(logits)
    e = xp.exp(logits - xp.max(logits, axis=1, keepdims=True))
    probs = e / xp.sum(e, axis=1, keepdims=True)
    return (probs - one_hot(labels, logits.shape[1], logits.dtype)) / logits.shape[0]


def softmax_cross_entropy_value_and_grad(logits, labels):
    """(L, dL/dz) of ``softmax_cross_entropy`` from one softmax: the same bits as the two
    functions above, without computing the shifted exponentials twice."""
    xp = array_module(logits)
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    e = xp.exp(shifted)
    total = xp.sum(e, axis=1, keepdims=True)
    target = one_hot(labels, logits.shape[1], logits.dtype)
    value = xp.mean(xp.log(total[:, 0]) - xp.sum(shifted * target, axis=1))
    return value, (e / total - target) / logits.shape[0]


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
