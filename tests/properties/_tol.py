"""Float64 tolerances used by the property tests, each derived where it is used."""

import numpy as np

EPS = float(np.finfo(np.float64).eps)  # 2.2e-16
