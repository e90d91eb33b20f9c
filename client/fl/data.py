"""Real clinical data for the federated proof: scikit-learn's bundled breast cancer set.

Wisconsin Diagnostic Breast Cancer (Street, Wolberg & Mangasarian, 1993):
569 patients, 30 features, ships inside scikit-learn so nothing is
downloaded. Its own ``target_names`` name the labels: 0 is malignant (212
patients) and 1 is benign (357), so counts are named from ``Split.class_names``
and never assumed. Hospitals get label-skewed shares drawn from a Dirichlet(alpha)
per class, the partition of Hsu, Qi & Brown, "Measuring the Effects of
Non-Identical Data Distribution for Federated Visual Classification" (2019).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.model_selection import train_test_split

Array = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Split:
    hospitals: list[tuple[Array, Labels]]
    x_train: Array
    y_train: Labels
    x_test: Array
    y_test: Labels
    class_names: tuple[str, ...] = ()  # label i is class_names[i], from the data set itself


def breast_cancer_class_names() -> tuple[str, ...]:
    """The data set's own names of its labels: ``('malignant', 'benign')``, label 0 first."""
    return tuple(str(name) for name in load_breast_cancer().target_names)


def dirichlet_split(y: Labels, n: int, alpha: float, seed: int, min_size: int = 10) -> list[npt.NDArray[np.int64]]:
    """Indices per hospital: each class is shared by Dirichlet(alpha) proportions; redrawn until every share has min_size."""
    rng = np.random.default_rng(seed)
    while True:
        shares: list[list[int]] = [[] for _ in range(n)]
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            cuts = (np.cumsum(rng.dirichlet([alpha] * n))[:-1] * len(idx)).astype(int)
            for h, part in enumerate(np.split(idx, cuts)):
                shares[h].extend(part.tolist())
        if min(len(s) for s in shares) >= min_size:
            return [np.sort(np.array(s, dtype=np.int64)) for s in shares]


BUNDLED = {"breast_cancer": load_breast_cancer, "wine": load_wine, "digits": load_digits}
"""scikit-learn's bundled tables (no download): binary breast cancer, 3-class wine, 10-class digits."""


def breast_cancer_split(n_hospitals: int = 4, alpha: float = 0.5, seed: int = 0, test_size: float = 0.25) -> Split:
    return bundled_split("breast_cancer", n_hospitals, alpha, seed, test_size)


def bundled_split(name: str, n_hospitals: int = 4, alpha: float = 0.5, seed: int = 0, test_size: float = 0.25) -> Split:
    """Stratified train/test split, standardised with training statistics, training part split across hospitals.

    Standardisation uses the pooled training mean and deviation, as if the
    consortium had agreed them beforehand; it keeps the comparison with the
    centralised model about aggregation, not preprocessing. A constant
    feature (digits' blank border pixels) keeps deviation 1.
    """
    bunch = BUNDLED[name]()
    x, y = bunch.data, bunch.target
    x_tr, x_te, y_tr, y_te = train_test_split(x, y.astype(np.int64), test_size=test_size, stratify=y, random_state=seed)
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
    std[std == 0] = 1.0
    x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    parts = dirichlet_split(y_tr, n_hospitals, alpha, seed)
    names = tuple(str(n) for n in bunch.target_names)
    return Split([(x_tr[p], y_tr[p]) for p in parts], x_tr, y_tr, x_te, y_te, names)
