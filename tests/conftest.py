import os
import tempfile

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
# The memory-format choice is cached per machine: tests measure into a fresh folder, never
# into (or from) the user's cache.
os.environ["WORKBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="workbench-cache-")


@pytest.fixture(scope="session")
def digits():
    import workbench as wb

    return wb.load_dataset("digits", image_size=16)


@pytest.fixture(scope="session")
def digits_small(digits):
    """256 images, 10 classes, 16 px: enough for two-epoch training tests on 2 cores."""
    import numpy as np

    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(len(digits), 256, replace=False))
    ds = digits.subset(idx, name="digits[256]")
    ds.meta = {"image_size": 16}
    return ds
