"""Small data sets for the demo: no download, ever.

* :func:`load_apartment` -- the 10-row apartment-price table of the lecture notes
  (seed 004, "신경망 작동 원리 / Example: 아파트의 가격 예측 하기"): size in pyeong (평수,
  X1), age in years (연식, X2) and price (가격, y), a toy regression problem. It is
  written out below; NumPy only.
* :func:`load_digits` -- scikit-learn's bundled 8x8 handwritten digits (1797 images, 64
  features with values 0..16, 10 classes), which ship inside the scikit-learn package.
  scikit-learn is an optional dependency (``pip install "fastoptim[demo]"``) and is only
  imported when this function is called.
"""

import numpy as np

__all__ = ["APARTMENT_COLUMNS", "APARTMENT_ROWS", "load_apartment", "load_digits",
           "standardize"]

#: Column names of the seed-004 table, in order (ID omitted).
APARTMENT_COLUMNS = ("size_pyeong", "age_years", "price")

#: The seed-004 table as printed in the notes: (평수 X1, 연식 X2, 가격 y) for IDs 1..10.
APARTMENT_ROWS = (
    (34, 5, 5.0),
    (25, 5, 2.5),
    (30, 2, 4.0),
    (38, 20, 3.0),
    (44, 12, 3.3),
    (48, 18, 4.2),
    (52, 22, 4.6),
    (60, 19, 6.0),
    (34, 18, 3.0),
    (34, 22, 2.9),
)


def load_apartment():
    """The apartment-price table of seed 004.

    Returns
    -------
    X : ndarray, shape (10, 2), float64
        Size (평수) and age (연식).
    y : ndarray, shape (10,), float64
        Price (가격), in the table's units.
    """
    table = np.array(APARTMENT_ROWS, dtype=np.float64)
    return table[:, :2].copy(), table[:, 2].copy()


def load_digits():
    """scikit-learn's bundled digits: ``X`` (1797, 64) float64 in 0..16, ``y`` (1797,)
    int64 labels 0..9. Needs scikit-learn (no download: the data ships with it)."""
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64)


def standardize(train, *others):
    """Scale columns to mean 0, standard deviation 1 with the statistics of ``train``
    (constant columns are only centred). Returns the scaled arrays, then the mean and
    standard deviation used."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return ((train - mean) / std, *((o - mean) / std for o in others), mean, std)
