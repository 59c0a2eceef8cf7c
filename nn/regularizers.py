"""Weight penalties: applied to weight matrices only, never to biases.

    l1     lam * sum |W|            gradient lam * sign(W)
    l2     lam / 2 * sum W^2        gradient lam * W
    l1_l2  both of the above
"""

from backends import array_module

REGULARIZERS = ("none", "l1", "l2", "l1_l2")


def penalty(params, kind, lam):
    if kind == "none" or lam == 0:
        return 0.0
    total = 0.0
    for layer in params:
        w = layer["w"]
        xp = array_module(w)
        if kind in ("l1", "l1_l2"):
            total = total + lam * xp.sum(xp.abs(w))
        if kind in ("l2", "l1_l2"):
            total = total + 0.5 * lam * xp.sum(w * w)
    return total


def penalty_grad(w, kind, lam):
    """d penalty / dW for one weight matrix (None when there is no penalty)."""
    if kind == "none" or lam == 0:
        return None
    xp = array_module(w)
    grad = xp.zeros_like(w)
    if kind in ("l1", "l1_l2"):
        grad = grad + lam * xp.sign(w)
    if kind in ("l2", "l1_l2"):
        grad = grad + lam * w
    return grad
