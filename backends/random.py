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


def _bits(xp, key, size):
    """``size`` uint32 hashes of the counters 0, 1, ... under ``key``.

    Every stage (xor, add and ``_mix32``'s xorshifts and odd multiplies) is a
    bijection of uint32, so distinct counters never share a hash.
    """
    counter = xp.arange(size, dtype=xp.uint32)
    return _mix32(xp, _mix32(xp, counter ^ key) + key)


def _uniforms(xp, key, shape):
    """float32 uniforms in [0, 1) of ``shape`` from the counters 0, 1, ... under ``key``."""
    size = 1
    for n in shape:
        size *= n
    # The top 24 bits fill a float32 mantissa exactly.
    return ((_bits(xp, key, size) >> xp.uint32(8)).astype(xp.float32) * xp.float32(2.0**-24)).reshape(shape)


def uniform_from_counter(xp, seed, step, layer, shape):
    """float32 uniforms in [0, 1) of ``shape`` for the stream (seed, step, layer)."""
    return _uniforms(xp, xp.uint32(stream_key(int(seed), int(step), int(layer))), shape)


# The ``layer`` slot of the epoch-shuffle stream; dropout uses layers 0, 1, ...
_SHUFFLE_LAYER = 0xFFFF


def shuffle_key(seed, epoch):
    """The 32-bit key of epoch ``epoch``'s sample order, computed on the host."""
    return stream_key(int(seed), int(epoch), _SHUFFLE_LAYER)


def permutation_from_key(xp, key, n):
    """int32 permutation of range(n): the indices sorted by their keyed hashes.

    The hashes are distinct (``_bits`` is a bijection), so the order never
    depends on how a sort breaks ties: NumPy, CuPy and JAX (on the host or
    inside a compiled epoch, with ``key`` a traced uint32) agree exactly.
    """
    return xp.argsort(_bits(xp, xp.asarray(key, dtype=xp.uint32), n)).astype(xp.int32)


def uniform_at_step(xp, seed, step, layer, shape):
    """``uniform_from_counter`` with ``step`` an integer or a device scalar (traced under ``jax.jit``).

    The stream key is hashed on the device from the same stages as
    ``stream_key``, so an integer ``step`` gives exactly the numbers
    ``uniform_from_counter`` gives, and a compiled JAX epoch need not
    recompile for every step.
    """
    # A one-element array, not a 0-d one: NumPy warns on overflow of scalar
    # arithmetic, and the hash overflows uint32 on purpose.
    step_bits = xp.reshape(xp.asarray(step), (1,)).astype(xp.uint32)
    key = _mix32(xp, xp.asarray([_mix32_int(int(seed))], dtype=xp.uint32) ^ step_bits)
    return _uniforms(xp, _mix32(xp, key ^ xp.uint32((int(layer) * _GOLDEN) & 0xFFFFFFFF)), shape)
