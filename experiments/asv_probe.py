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


def probe(model: str = "tiny", n: int = 160, seed: int = 21, split: str = "test") -> dict:
    from sklearn.metrics import roc_auc_score

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
    emb = torch.nn.functional.normalize(emb - emb.mean(0), dim=-1)
    sim = (emb @ emb.T).numpy()
    i, j = np.triu_indices(len(ex), 1)
    spk = np.array([e.meta["speaker"] for e in ex])
    gen = np.array([e.meta["gender"] for e in ex])
    same, same_g, s = spk[i] == spk[j], gen[i] == gen[j], sim[i, j]
    return {"split": split, "pairs": int(len(s)), "same_speaker_pairs": int(same.sum()),
            "auc_all": round(float(roc_auc_score(same, s)), 3),
            "auc_same_gender": round(float(roc_auc_score(same[same_g], s[same_g])), 3)}


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
    for split in ("test", "train"):
        print(probe(args.model, args.n, args.seed, split))


if __name__ == "__main__":
    main()
