import os

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from aha_interp import HeadMask  # noqa: E402
from aha_interp.errors import AhaError  # noqa: E402
from aha_interp.masks.official import official_masks_dir  # noqa: E402


@pytest.fixture(scope="session")
def official_dir():
    """The released SALMONN masks, or a clean skip where they are not available."""
    try:
        return official_masks_dir()
    except AhaError as e:
        pytest.skip(str(e))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def random_mask(rng, shape=(4, 6), task="m", **kw) -> HeadMask:
    return HeadMask(rng.normal(size=shape).astype(np.float32), task=task, **kw)
