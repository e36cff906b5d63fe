"""CLIK: Contrastive Learning for topic-dependent Image ranKing (RecSys 2022), as a library.

Import direction: this package imports only torch, transformers, timm, numpy and pillow;
``training``, ``worker`` and ``api`` import it, never the reverse.
"""

from .checkpoint import (
    BundleInfo,
    export_bundle,
    load_checkpoint,
    load_image_side,
    load_text_side,
    read_bundle_info,
    save_checkpoint,
)
from .config import LossConfig, ModelConfig, get_model_config, list_model_configs
from .image_source import FetchLimits, ImageLoadError, load_image
from .model import ClikModel, TopicSide, create_model
from .encoders import ImageEncoder, TopicEncoder
from .predictor import ImageRanking, Predictor
from .tokenize import TopicTokenizer
from .topic import normalize_topic, topic_key

__all__ = [
    "BundleInfo",
    "ClikModel",
    "FetchLimits",
    "ImageEncoder",
    "ImageLoadError",
    "LossConfig",
    "ModelConfig",
    "ImageRanking",
    "Predictor",
    "TopicEncoder",
    "TopicSide",
    "TopicTokenizer",
    "create_model",
    "create_tokenizer",
    "export_bundle",
    "get_model_config",
    "list_model_configs",
    "load_checkpoint",
    "load_image",
    "load_image_side",
    "load_text_side",
    "normalize_topic",
    "read_bundle_info",
    "save_checkpoint",
    "topic_key",
]


def create_tokenizer(model: ClikModel) -> TopicTokenizer:
    """The topic tokenizer that belongs to a freshly created model's text tower."""
    from .pretrained import resolve_text_tower

    return TopicTokenizer.from_pretrained(resolve_text_tower(model.cfg.text.name), max_length=model.cfg.text.max_length)
