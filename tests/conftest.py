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


def mini_recipe(**fields):
    """A miniature embedded-LALM recipe: trains in seconds, exercises every code path of the real one."""
    import dataclasses

    from aha_interp.training.embedded import EMBEDDED_MODEL, EmbeddedConfig

    model = dataclasses.replace(EMBEDDED_MODEL, hidden_size=32, n_layers=2, n_heads=8, n_kv_heads=8,
                                intermediate_size=64, audio_d_model=32, audio_layers=1, audio_heads=2)
    return EmbeddedConfig(model=model, pool_speech=24, pool_other=8, batch_size=8, threads=1, **fields)


@pytest.fixture(scope="session")
def mini_model(tmp_path_factory):
    """A miniature Qwen2-Audio LALM folder (3 training steps), shared by the tests of the full path."""
    from aha_interp.training.embedded import train_embedded

    out = tmp_path_factory.mktemp("mini-lalm")
    info = train_embedded(out, mini_recipe(max_steps=3, minutes=5), log=lambda s: None)
    assert info["steps"] == 3 and (out / "config.json").exists() and (out / "training.json").exists()
    return out


@pytest.fixture(scope="session")
def mini_masks(tmp_path_factory, mini_model):
    """Random-logit masks for the miniature model (2 layers x 8 heads), one per mask the experiments need, and
    predictors fitted to them on the miniature model (seconds: the masks method, a few steps)."""
    from aha_interp.reproduce.experiments import committed_masks
    from aha_interp.reproduce.masks import PredictorFile

    folder = tmp_path_factory.mktemp("masks")
    rng = np.random.default_rng(0)
    refs = committed_masks()
    for m in refs:
        if isinstance(m, PredictorFile):
            continue
        path = m.path(folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        HeadMask(rng.normal(1.0, 2.0, size=(2, 8)).astype(np.float32), task=m.task, seed=m.seed, lam=m.lam).save(path)
    predictors = [m for m in refs if isinstance(m, PredictorFile)]
    if predictors:
        from aha_interp.data.tasks import ALL_TASKS
        from aha_interp.models.lalm import load_model
        from aha_interp.training.predictor import PredictorConfig, train_predictor

        lalm = load_model(mini_model)
        singles = {t: HeadMask.load(folder / f"{t}.safetensors") for t in ALL_TASKS}
        for m in predictors:
            held = m.name.removeprefix("masks-without-") if m.name.startswith("masks-without-") else None
            tasks = tuple(t for t in ALL_TASKS if t != held)
            pred = train_predictor(lalm, PredictorConfig(method="masks", tasks=tasks, steps=30, lr=1e-2),
                                   masks=singles, progress=False)
            m.path(folder).parent.mkdir(parents=True, exist_ok=True)
            pred.save(m.path(folder))
    return folder
