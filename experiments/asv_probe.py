"""Does the audio tower of an embedded LALM tell speakers apart? A diagnostic for the ASV task.

Encodes single-utterance test clips, mean-pools the audio tower's output over the valid frames, and
scores every pair of clips by cosine similarity (after centring). Prints the ROC AUC of "same speaker"
over all pairs and over the pairs of the same gender only — the latter says whether the encoder
carries speaker identity beyond gender, which ASV needs.

    .venv/bin/python experiments/asv_probe.py [--model tiny] [--n 160] [--seed 21]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def pair_auc(emb: torch.Tensor, speakers, genders) -> dict:
    """ROC AUC of "same speaker" scored by cosine similarity of ``emb`` ``[n, d]`` (centred), over all pairs
    and over the same-gender pairs only."""
    from sklearn.metrics import roc_auc_score

    emb = torch.nn.functional.normalize(emb - emb.mean(0), dim=-1)
    sim = (emb @ emb.T).numpy()
    i, j = np.triu_indices(len(emb), 1)
    spk, gen = np.asarray(speakers), np.asarray(genders)
    same, same_g, s = spk[i] == spk[j], gen[i] == gen[j], sim[i, j]
    if same.all() or not same[same_g].any() or same[same_g].all():
        raise ValueError("need same- and different-speaker pairs within a gender; draw more clips (--n)")
    return {"pairs": int(len(s)), "same_speaker_pairs": int(same.sum()),
            "auc_all": round(float(roc_auc_score(same, s)), 3),
            "auc_same_gender": round(float(roc_auc_score(same[same_g], s[same_g])), 3)}


def probe(model: str = "tiny", n: int = 160, seed: int = 21, split: str = "test") -> dict:
    """Mean-pooled audio-tower output of ``n`` single-utterance clips of ``split``, scored by :func:`pair_auc`."""
    from aha_interp.data.features import log_mel
    from aha_interp.data.tasks import make_examples
    from aha_interp.models.lalm import load_model

    lalm = load_model(model)
    fe = lalm.processor.feature_extractor
    ex = make_examples("asr", n, seed=seed, split=split)
    feats = log_mel([e.audio for e in ex], int(fe.n_samples), int(fe.feature_size))
    with torch.no_grad():
        h = lalm.model.model.audio_tower(feats).last_hidden_state  # [n, T, d]
    frames = [max(1, int(min(len(e.audio), fe.n_samples) / fe.n_samples * h.shape[1])) for e in ex]
    emb = torch.stack([h[i, :f].mean(0) for i, f in enumerate(frames)])
    return {"split": split, **pair_auc(emb, [e.meta["speaker"] for e in ex], [e.meta["gender"] for e in ex])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--n", type=int, default=160)
    p.add_argument("--seed", type=int, default=21)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if args.n < 8:
        raise SystemExit("error: --n must be at least 8")
    torch.set_num_threads(args.threads)
    from aha_interp import AhaError

    for split in ("test", "train"):
        try:
            print(probe(args.model, args.n, args.seed, split))
        except (AhaError, ValueError) as e:
            raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
