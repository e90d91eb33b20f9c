"""A synthetic task for the wide catalog models (``devnet.catalog.wide_mlp``): data any machine makes alike.

The blob path is exercised by models of 10 and 50 million parameters, far
wider than any bundled clinical data set needs; what they learn matters
less than that every hospital trains the same task. Features are standard
normal; the label is the sign of a fixed teacher's linear score, the
teacher drawn once from :data:`TEACHER_SEED`, so hospitals hold shares of one
linearly separable problem. Each hospital's rows come from its own seed
``[seed, hospital_index]``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FEATURES = 64
CLASSES = 2
TEACHER_SEED = 0xFB_C1
DEFAULT_ROWS = 256


def synthetic_rows(hospital_index: int, rows: int = DEFAULT_ROWS, seed: int = 0
                   ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    teacher = np.random.default_rng(TEACHER_SEED).standard_normal(FEATURES)
    x = np.random.default_rng([seed, hospital_index]).standard_normal((rows, FEATURES))
    return x, (x @ teacher > 0).astype(np.int64)
