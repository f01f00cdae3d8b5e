"""Instructions for every task: a training pool, and held-out evaluation prompts by variation type.

The evaluation types follow the paper's prompt-sensitivity study (Fig. 2): ``general``, ``punctuation``,
``capitalisation``, ``synonyms_simple``, ``synonyms_medium``, ``synonyms_complex`` and ``constraint``,
5 prompts each, none of them seen in training. ``general`` prompts are written by hand; punctuation,
capitalisation, simple/medium synonym and constraint variants are derived from them by fixed rules;
complex synonyms are hand-written paraphrases.
"""

from __future__ import annotations

import re

from ..errors import AhaError

VARIATION_TYPES = ("general", "punctuation", "capitalisation", "synonyms_simple", "synonyms_medium",
                   "synonyms_complex", "constraint")

# task -> (training pool, held-out general prompts, held-out complex paraphrases)
_PROMPTS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "asr": (
        ["Transcribe the audio.", "What is said?", "Write down the words.", "Transcribe the speech.",
         "Recognize the speech.", "What words are spoken?"],
        ["Transcribe this clip.", "Write what you hear.", "Give the transcript.", "What does the speaker say?",
         "Convert the speech to text."],
        ["Put the spoken words into writing.", "Tell me word for word what was uttered.",
         "Produce a written record of the talk.", "Jot down exactly what the voice utters.",
         "Render the spoken content as text."],
    ),
    "gr": (
        ["What is the gender of the speaker?", "Is the speaker male or female?", "Speaker gender?",
         "Recognize the gender.", "Male or female voice?", "Tell the speaker's gender."],
        ["Identify the speaker's gender.", "Is this a man or a woman?", "Which gender is the voice?",
         "Classify the gender of the speaker.", "Say the gender of the talker."],
        ["Does a man or a woman produce this voice?", "Decide whether the person talking is male or female.",
         "From the voice, infer the sex of the person.", "Is the one speaking a he or a she?",
         "Judge the voice: masculine or feminine?"],
    ),
    "ser": (
        ["What emotion is expressed?", "Recognize the emotion.", "How does the speaker feel?",
         "Emotion of the speech?", "Classify the emotion.", "Which emotion do you hear?"],
        ["Identify the speaker's emotion.", "What is the mood of the voice?", "Name the emotion.",
         "Detect the emotion in the speech.", "Which feeling is conveyed?"],
        ["Is the talker happy, sad, angry or neutral?", "Describe the emotional state of the voice in one word.",
         "Judge how the person is feeling from their tone.", "Tell me the affect carried by this speech.",
         "What sentiment does the delivery reveal?"],
    ),
    "asv": (
        ["Are both utterances from the same speaker?", "Same speaker or not?", "Verify the speaker.",
         "Is it one speaker twice?", "Do the two voices match?", "Same voice in both parts?"],
        ["Is the same person speaking in both parts?", "Do both clips share one speaker?",
         "Check if the speakers are the same.", "Are the two talkers identical?", "Is this one voice?"],
        ["Did a single individual say both segments?", "Tell me whether the two halves come from one person.",
         "Compare the voices: is it the same talker?", "Were both phrases produced by the same person?",
         "Decide if one speaker is heard in both pieces."],
    ),
    "aac": (
        ["Describe the sounds.", "Caption the audio.", "What sounds do you hear?", "Write a caption.",
         "Describe the audio.", "What happens in the audio?"],
        ["Give a caption for this clip.", "Summarize the sounds.", "What can be heard?",
         "Describe what you hear.", "Caption these sounds."],
        ["Tell me in a few words which noises occur.", "Write a short description of the acoustic events.",
         "List what sound events take place, in order.", "Explain the audio scene briefly.",
         "Put the sequence of noises into words."],
    ),
    "s2tt": (
        ["Translate the speech into Spanish.", "Translate to Spanish.", "Say it in Spanish.",
         "Spanish translation?", "Give the Spanish version.", "Translate what is said."],
        ["Translate this audio to Spanish.", "What is this in Spanish?", "Render the speech in Spanish.",
         "Provide a Spanish translation.", "Convert the words to Spanish."],
        ["Express the spoken words in the Spanish language.", "How would a Spanish speaker say this?",
         "Turn what you hear into Spanish text.", "Give me the Spanish equivalent of the talk.",
         "Write the utterance again, but in Spanish."],
    ),
    "osr": (
        ["Transcribe both speakers.", "Transcribe the male then the female.", "What do the two speakers say?",
         "Separate and transcribe.", "Write both transcripts.", "Transcribe the overlapped speech."],
        ["Give the transcript of each speaker.", "What does each voice say?", "Transcribe the two voices.",
         "Write what both people say.", "Transcribe each talker."],
        ["Two people talk at once; write down both.", "Tell me the words of the man and then the woman.",
         "Untangle the overlapping voices into text.", "Produce both transcripts, man first.",
         "Write each speaker's words, separated by a slash."],
    ),
    "asr_gr": (
        ["Transcribe, then give the gender.", "Transcript and gender, separated by |.",
         "Words | gender.", "Give the words and the speaker gender.", "Transcribe and say male or female.",
         "Transcription then gender."],
        ["Write the transcript, then the gender.", "Give text and gender with a bar.",
         "Transcribe the clip and add the gender.", "What is said, and by which gender?", "Transcript | gender?"],
        ["First write the spoken words, then whether the talker is male or female.",
         "Put down the utterance, a vertical bar, then the speaker's sex.",
         "Report the words followed by the gender of the voice.", "Tell me what was said and then who said it.",
         "Give the transcript first and the gender second."],
    ),
    "gr_asr": (
        ["Give the gender, then transcribe.", "Gender and transcript, separated by |.", "Gender | words.",
         "Say male or female, then the words.", "Gender first, then transcription.",
         "Speaker gender then transcript."],
        ["Write the gender, then the transcript.", "Give gender and text with a bar.",
         "State the gender and transcribe.", "Which gender, and what is said?", "Gender | transcript?"],
        ["First say whether the talker is male or female, then the spoken words.",
         "Put down the speaker's sex, a vertical bar, then the utterance.",
         "Report the gender of the voice followed by the words.", "Tell me who spoke and then what was said.",
         "Give the gender first and the transcript second."],
    ),
    "json": (
        ["Answer in JSON with ASR and GR.", "Give JSON: transcript and gender.", "JSON with keys ASR and GR.",
         "Output JSON of transcript and gender.", "Return JSON with ASR and GR keys.",
         "Transcript and gender as JSON."],
        ["Write a JSON object with ASR and GR.", "Give the transcript and gender in JSON.",
         "Produce JSON: ASR, GR.", "Reply in JSON with the words and gender.", "JSON output with ASR and GR?"],
        ["Format your reply as a JSON object holding the words under ASR and the sex under GR.",
         "Return a JSON record: key ASR for the speech, key GR for the gender.",
         "Encode the transcription and the speaker's gender as JSON.",
         "Give me JSON whose ASR field is the text and whose GR field is the gender.",
         "Answer with a JSON dictionary of transcript and gender."],
    ),
}

_SYNONYMS = [
    ("Transcribe", "Transcript"), ("transcript", "transcription"), ("clip", "recording"), ("audio", "recording"),
    ("speech", "talk"), ("speaker", "talker"), ("Identify", "Determine"), ("gender", "sex"),
    ("What", "Which"), ("emotion", "feeling"), ("Give", "Provide"), ("Write", "Put down"), ("words", "terms"),
    ("Translate", "Convert"), ("voice", "speech"), ("sounds", "noises"), ("Describe", "Explain"),
    ("same", "identical"), ("people", "persons"), ("Classify", "Categorize"), ("hear", "perceive"),
]
_CONSTRAINTS = [" Answer briefly.", " Reply with the answer only.", " Use lowercase.", " No explanation.",
                " Be concise."]
_PUNCT = [lambda s: s.rstrip(".?!"), lambda s: s.rstrip(".?!") + "!", lambda s: s.rstrip(".?!") + "??",
          lambda s: s.rstrip(".?!") + "...", lambda s: s.rstrip(".?!") + ", please."]
_CAPS = [str.upper, str.lower, str.title, lambda s: s.swapcase(), lambda s: s[:1].lower() + s[1:]]

def _substitute(prompt: str, n: int) -> str:
    out, done = prompt, 0
    for a, b in _SYNONYMS:
        if done == n:
            break
        new = re.sub(rf"\b{re.escape(a)}\b", b, out, count=1)
        if new != out:
            out, done = new, done + 1
    return out


def _entry(task: str):
    from .tasks import check_task

    check_task(task)
    return _PROMPTS[task]


def training_prompts(task: str) -> list[str]:
    """The instructions a model may see in training for ``task``."""
    return list(_entry(task)[0])


def eval_prompts(task: str, variation: str = "general") -> list[str]:
    """Five held-out prompts of one variation type (see :data:`VARIATION_TYPES`), or with
    ``variation="seen"`` the model's own training instructions (the paper's standard-instruction baseline)."""
    _, general, complex_ = _entry(task)
    if variation == "seen":
        return training_prompts(task)
    if variation == "general":
        return list(general)
    if variation == "punctuation":
        return [f(p) for f, p in zip(_PUNCT, general)]
    if variation == "capitalisation":
        return [f(p) for f, p in zip(_CAPS, general)]
    if variation == "synonyms_simple":
        return [_substitute(p, 1) for p in general]
    if variation == "synonyms_medium":
        return [_substitute(p, 2) for p in general]
    if variation == "synonyms_complex":
        return list(complex_)
    if variation == "constraint":
        return [p + c for p, c in zip(general, _CONSTRAINTS)]
    raise AhaError(f"unknown prompt variation {variation!r}; choose seen or one of {', '.join(VARIATION_TYPES)}")
