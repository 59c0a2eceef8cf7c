"""Parameters are a plain pytree: a list of layers, each a dict of arrays.

JAX walks this structure natively; NumPy and CuPy need only this one map.
"""


def tree_map(fn, tree, *rest):
    """``fn`` applied leaf by leaf to trees of the same structure."""
    return [
        {k: fn(layer[k], *(other[i][k] for other in rest)) for k in layer}
        for i, layer in enumerate(tree)
    ]


def tree_leaves(tree):
    return [layer[k] for layer in tree for k in sorted(layer)]
