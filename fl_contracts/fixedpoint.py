"""Fixed-point encoding of model deltas and the integer arithmetic the chain does on them.

Format. A real value ``v`` is carried as the integer ``q = round(v * 2**F)``
(``F`` = ``frac_bits``), rounded half to even, after clipping ``|v|`` to
``max_abs`` quanta; on the wire a delta is ``P`` little-endian int32 values.
Global weights are int64 (they accumulate deltas, so they may outgrow int32).

Rounding rule on chain. Every division is :func:`round_div`, which rounds to
nearest with ties toward +infinity: ``round_div(n, d) = floor((2n + d) / 2d)``
for ``d > 0``. Integer floor division is exact, so the result is the same on
every machine.

No-overflow and exactness bounds. Let ``N <= max_updates`` updates with
coordinates ``|x| <= A`` (``A = max_abs``, enforced before any arithmetic),
weights ``1 <= w <= W`` (``W = max_samples``), ``P`` parameters and norm bound
``B = max_norm``. :class:`~fl_contracts.spec.ModelSpec` refuses any spec that
violates (1)-(3):

1. ``P * A**2 <= 2**53``. A sum of squares ``sum_k x_k**2`` and any Gram entry
   ``sum_k x_ik x_jk`` has every product and every partial sum, in any order,
   bounded in magnitude by ``sum_k |x_ik||x_jk| <= P * A**2``. All are
   integers below 2**53, hence exactly representable in float64, so a BLAS
   dot product returns the exact integer whatever its blocking, thread count
   or FMA use. Squared distances ``G_ii + G_jj - 2 G_ij <= 4 * 2**53`` are then
   formed in int64.
2. ``N * W * A <= 2**53``. Weighted sums ``sum_i w_i x_ik`` are exact in
   float64 by the same argument; ``2 * s + sum(w)`` inside :func:`round_div`
   stays below ``2**55``, far inside int64.
3. ``B**2 <= 2**53``. Norm bounding computes ``x * B`` in int64 with
   ``|x| * B < 2**31 * 2**26.5``; the rounded quotient never exceeds ``|x|``.

4. Krum scores. A squared distance is at most ``4 * P * A**2 <= 2**55`` and
   is formed exactly in int64, but a score sums up to ``N - 1 <= 1023`` of
   them, up to ``2**65``: beyond int64. :func:`wide_row_sums` adds them in two
   limbs (high and low 32 bits, each limb sum far inside int64) and returns
   exact Python integers. Before this, a spec with large norm bounds and about
   260 updates could wrap a far-away update's score negative and let Krum
   select it.

Global weights grow by at most ``A`` per round, so int64 cannot overflow
within 2**32 rounds.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from core.errors import InvalidInput

WIRE_DTYPE = np.dtype("<i4")
WEIGHTS_DTYPE = np.dtype("<i8")

IntArray = npt.NDArray[np.int64]


def quantize(values: npt.ArrayLike, frac_bits: int, max_abs: int) -> npt.NDArray[np.int32]:
    """Client side: clip to ``max_abs`` quanta, then round half to even to int32."""
    scaled = np.rint(np.asarray(values, dtype=np.float64) * float(1 << frac_bits))
    return np.clip(scaled, -max_abs, max_abs).astype(np.int32)


def dequantize(q: npt.ArrayLike, frac_bits: int) -> npt.NDArray[np.float64]:
    return np.asarray(q, dtype=np.float64) / float(1 << frac_bits)


def round_div(num: npt.NDArray[np.int64], den: int | npt.NDArray[np.int64], out: IntArray | None = None) -> IntArray:
    """Nearest integer to ``num / den`` (``den > 0``), ties toward +infinity.

    ``out`` (an int64 array of the result's shape, which may be ``num``
    itself) receives the same integers without temporaries: aggregation
    rounds a block at a time, and fresh temporaries of a block's size cost
    more in page faults than the arithmetic.
    """
    num = np.asarray(num, dtype=np.int64)
    d = np.asarray(den, dtype=np.int64)
    if out is None:
        return np.floor_divide(2 * num + d, 2 * d)
    np.multiply(num, 2, out=out)
    np.add(out, d, out=out)
    return np.floor_divide(out, 2 * d, out=out)


LIMB_BITS = 32


def wide_row_sums(x: IntArray) -> list[int]:
    """Exact sums along rows of non-negative int64 entries, as Python ints, whatever the row length.

    Each entry splits into ``hi * 2**32 + lo``; for rows of up to 2**31
    entries neither limb's sum can reach 2**63.
    """
    if x.size and int(x.min()) < 0:
        raise ValueError("wide_row_sums takes non-negative entries")
    hi = (x >> LIMB_BITS).sum(axis=1, dtype=np.int64)
    lo = (x & ((1 << LIMB_BITS) - 1)).sum(axis=1, dtype=np.int64)
    return [(int(h) << LIMB_BITS) + int(low) for h, low in zip(hi, lo)]


def encode_delta(q: npt.NDArray[np.integer]) -> bytes:
    return np.ascontiguousarray(q, dtype=WIRE_DTYPE).tobytes()


def decode_delta(data: bytes, num_params: int) -> npt.NDArray[np.int32]:
    """A read-only int32 view of a wire delta; refuses the wrong length."""
    if len(data) != num_params * WIRE_DTYPE.itemsize:
        raise InvalidInput(
            f"delta is {len(data)} bytes; the model has {num_params} parameters of {WIRE_DTYPE.itemsize} bytes"
        )
    return np.frombuffer(data, dtype=WIRE_DTYPE)


def encode_weights(w: IntArray) -> bytes:
    return np.ascontiguousarray(w, dtype=WEIGHTS_DTYPE).tobytes()


def decode_weights(data: bytes) -> IntArray:
    return np.frombuffer(data, dtype=WEIGHTS_DTYPE).astype(np.int64)
