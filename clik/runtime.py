"""Old name of clik.encoders, kept only while branches that edit worker/encode.py, api/service.py
and training/ merge (they import it); import clik.encoders in new code. Delete after those merges
(tests/test_architecture.py lists who still imports it)."""
from clik.encoders import EncodedImages, ImageEncoder, TopicEncoder, pick_device

__all__ = ["EncodedImages", "ImageEncoder", "TopicEncoder", "pick_device"]
