"""Audio-only processors for the omni families when torchvision is not installed.

Qwen2.5-Omni's and Qwen3-Omni's processor classes insist on a video processor, and the real one needs
torchvision (without it, even the class check crashes). aha-interp feeds only audio and text, so
:func:`audio_only` builds the stock processor class with a video processor that refuses video: everything
else — the tokenizer, the chat template, the feature extractor, the image processor's PIL backend — is the
family's own, read from the same folder or hub snapshot.
"""

from __future__ import annotations

from functools import lru_cache

from ..errors import AhaError


@lru_cache(maxsize=None)
def no_video_class(proc_cls):
    """``proc_cls`` with its ``video_processor`` type check relaxed (nothing else changed)."""

    class AudioOnly(proc_cls):
        def check_argument_for_proper_class(self, argument_name, argument):
            if argument_name == "video_processor":
                return type(argument)
            return super().check_argument_for_proper_class(argument_name, argument)

    AudioOnly.__name__ = AudioOnly.__qualname__ = proc_cls.__name__
    return AudioOnly


def no_video_processor(patch_size: int = 14):
    """A stand-in video processor: real if torchvision works, else one that refuses video in one line."""
    try:
        from transformers import Qwen2VLVideoProcessor

        return Qwen2VLVideoProcessor(patch_size=patch_size, merge_size=2, temporal_patch_size=2), False
    except Exception:  # ImportError, or transformers' dummy object raising on use
        from transformers.video_processing_utils import VideoProcessorMixin

        class NoVideoProcessor(VideoProcessorMixin):
            model_input_names = ["pixel_values_videos", "video_grid_thw"]
            temporal_patch_size = 2
            merge_size = 2

            def __call__(self, *a, **k):
                raise AhaError("video inputs need torchvision (pip install torchvision); aha-interp feeds audio only")

            def to_dict(self):
                return {"video_processor_type": "NoVideoProcessor"}

        return NoVideoProcessor(), True


def build(proc_cls, *, image_processor, feature_extractor, tokenizer, chat_template, patch_size: int):
    video, stub = no_video_processor(patch_size)
    cls = no_video_class(proc_cls) if stub else proc_cls
    return cls(image_processor=image_processor, video_processor=video, feature_extractor=feature_extractor,
               tokenizer=tokenizer, chat_template=chat_template)


def audio_only(proc_cls_name: str, src: str, hub_kw: dict, patch_size: int):
    """The family's processor read part by part from ``src`` (folder or hub id), with no video processor."""
    import json

    import transformers
    from transformers import AutoTokenizer, Qwen2VLImageProcessorPil, WhisperFeatureExtractor
    from transformers.utils import cached_file

    tok = AutoTokenizer.from_pretrained(src, **hub_kw)
    fe = WhisperFeatureExtractor.from_pretrained(src, **hub_kw)
    image_kw = {}
    path = cached_file(src, "processor_config.json", _raise_exceptions_for_missing_entries=False,
                       **{k: v for k, v in hub_kw.items() if k != "trust_remote_code"})
    if path:
        with open(path) as f:
            image_kw = {k: v for k, v in (json.load(f).get("image_processor") or {}).items()
                        if k in ("patch_size", "merge_size", "temporal_patch_size", "min_pixels", "max_pixels")}
    image = Qwen2VLImageProcessorPil(**{"patch_size": patch_size, "merge_size": 2, "temporal_patch_size": 2,
                                        **image_kw})
    return build(getattr(transformers, proc_cls_name), image_processor=image, feature_extractor=fe, tokenizer=tok,
                 chat_template=getattr(tok, "chat_template", None), patch_size=image.patch_size)
