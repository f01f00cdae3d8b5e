"""Masks without labels: distil an instruction into a mask.

The teacher is the frozen model *with* the instruction; the student is the masked model *without* it. The
targets are the teacher's greedy answers on unlabelled audio, generated once and cached in the run folder;
the mask is then trained by the official recipe on (audio, teacher answer) pairs. No label is read, even
where the data has one: :func:`distil_examples` builds the training pairs from the audio alone.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..errors import AhaError

#: stop when more than this share of the teacher's answers is empty (the instruction does not work)
MAX_EMPTY = 0.5


def _key(lalm, audios, instruction: str, max_new_tokens: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([lalm.model_id, lalm.model_info.get("model_config_hash"), instruction, max_new_tokens])
             .encode())
    for a in audios:
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def teacher_answers(lalm, audios, instruction: str, *, max_new_tokens: int = 48, batch_size: int = 32,
                    cache_dir: str | Path | None = None, progress: bool = False) -> list[str]:
    """The model's greedy answers to ``instruction`` for each clip (cached under ``cache_dir`` by a key of the
    model, the clips, the instruction and the budget). More than half of them empty is an error: the
    instruction does not make this model answer."""
    from .._atomic import write_text_atomic
    from ..evaluation.evaluate import generate_answers

    if not isinstance(instruction, str) or not instruction.strip():
        raise AhaError("--distill-from needs the instruction text the teacher answers, e.g. --distill-from "
                       "\"What is the speaker's gender?\"")
    if not audios:
        raise AhaError("no clips to distil from")
    key = _key(lalm, audios, instruction, max_new_tokens)
    cache = Path(cache_dir) / f"teacher-{key}.json" if cache_dir is not None else None
    if cache is not None and cache.exists():
        try:
            stored = json.loads(cache.read_text())
            if stored.get("key") == key and len(stored.get("answers", [])) == len(audios):
                return list(stored["answers"])
        except (OSError, ValueError):
            pass  # a damaged cache is regenerated
    answers = generate_answers(lalm, list(audios), [instruction] * len(audios), None, batch_size=batch_size,
                               max_new_tokens=max_new_tokens, progress=progress, desc="teacher")
    empty = sum(not a.strip() for a in answers)
    if empty > MAX_EMPTY * len(answers):
        raise AhaError(f"the teacher gave empty answers on {empty} of {len(answers)} clips with the instruction "
                       f"{instruction!r}; it does not make this model answer: try another wording")
    if cache is not None:
        write_text_atomic(cache, json.dumps({"key": key, "instruction": instruction, "answers": answers}))
    return answers


@torch.no_grad()
def teacher_top_k(lalm, audios, instruction: str, answers: list[str], *, k: int = 32,
                  batch_size: int = 16) -> list[tuple[np.ndarray, np.ndarray]]:
    """The teacher's distribution along its own answer, per clip: ``(token ids [T, k], log-probs [T, k])`` at each
    answer token (end of turn included), the model forced on the answer with the instruction in the prompt."""
    from ..models.adapters import IGNORE
    from ..models.lalm import answer_ce

    out = []
    for i in range(0, len(audios), batch_size):
        inputs = lalm.build_inputs(list(audios[i:i + batch_size]), instruction, list(answers[i:i + batch_size]))
        _, logits, labels = answer_ce(lalm.forward(inputs).logits, inputs["labels"])  # shifted to the answer
        logp = torch.log_softmax(logits, -1)
        kk = min(k, logp.shape[-1])
        for row in range(len(logits)):
            pos = (labels[row] != IGNORE).nonzero().squeeze(-1)
            top = logp[row, pos].topk(kk, -1)
            out.append((top.indices.cpu().numpy().astype(np.int32), top.values.cpu().numpy().astype(np.float32)))
    return out


def distil_examples(lalm, examples, instruction: str, *, task: str, max_new_tokens: int = 48,
                    batch_size: int = 32, cache_dir: str | Path | None = None, progress: bool = False,
                    top_k: int | None = None):
    """Training pairs (audio, teacher answer) for ``examples``' audio; their targets are never read. Clips whose
    teacher answer is empty are dropped (a mask cannot learn "say nothing" from them). ``top_k``: also the
    teacher's top-k distribution per answer token (``meta["teacher_top"]``), for training with a KL term."""
    from ..data.tasks import Example

    answers = teacher_answers(lalm, [e.audio for e in examples], instruction, max_new_tokens=max_new_tokens,
                              batch_size=batch_size, cache_dir=cache_dir, progress=progress)
    keep = [(e, a) for e, a in zip(examples, answers) if a.strip()]
    tops = [None] * len(keep)
    if top_k:
        tops = teacher_top_k(lalm, [e.audio for e, _ in keep], instruction, [a for _, a in keep], k=top_k)
    meta_out = lambda e: {k: v for k, v in e.meta.items() if k in ("id", "path", "index")}  # noqa: E731
    return [Example(task, e.audio, a, {**meta_out(e), "teacher": instruction,
                                       **({"teacher_top": t} if t is not None else {})})
            for (e, a), t in zip(keep, tops)]
