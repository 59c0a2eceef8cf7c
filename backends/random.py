"""Counter-based random numbers written once against any array module.

Each value is a hash of (seed, step, layer, element index), so nothing is
carried from one call to the next and every element can be computed on its
own: the property a GPU kernel needs, and the reason NumPy and CuPy give
bit-identical dropout masks for the same seed.
"""

_GOLDEN = 0x9E3779B9


def _mix32(xp, h):
    """A 32-bit integer finaliser (xorshift-multiply): good avalanche, cheap."""
    h = h ^ (h >> xp.uint32(16))
    h = h * xp.uint32(0x7FEB352D)
    h = h ^ (h >> xp.uint32(15))
    h = h * xp.uint32(0x846CA68B)
    return h ^ (h >> xp.uint32(16))


def _mix32_int(h):
    """``_mix32`` on one Python int, for the host-side key."""
    mask = 0xFFFFFFFF
    h &= mask
    h ^= h >> 16
    h = (h * 0x7FEB352D) & mask
    h ^= h >> 15
    h = (h * 0x846CA68B) & mask
    return h ^ (h >> 16)


def stream_key(seed, step, layer):
    """The 32-bit key of one (seed, step, layer) stream, computed on the host."""
    return _mix32_int(_mix32_int(_mix32_int(seed) ^ step) ^ (layer * _GOLDEN))


def uniform_from_counter(xp, seed, step, layer, shape):
    """float32 uniforms in [0, 1) of ``shape`` for the stream (seed, step, layer)."""
    size = 1
    for n in shape:
        size *= n
    key = xp.uint32(stream_key(int(seed), int(step), int(layer)))
    counter = xp.arange(size, dtype=xp.uint32)
    bits = _mix32(xp, _mix32(xp, counter ^ key) + key)
    # The top 24 bits fill a float32 mantissa exactly.
    return ((bits >> xp.uint32(8)).astype(xp.float32) * xp.float32(2.0**-24)).reshape(shape)
