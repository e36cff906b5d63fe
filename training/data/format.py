"""The project's dataset format, ``clik-dataset/1``: a folder any team can write from its own tables.

Layout (see docs/dataset.md for the full description and an example)::

    DATA_DIR/dataset.json        {"format": "clik-dataset/1", "name", "criteria", "default_criterion", "source"}
    DATA_DIR/exhibitions.jsonl   one exhibition per line: id, group, split, topic, products

Loading validates everything up front and names the file, line and field of the first problem,
because a bad row found hours into a training run is far more expensive than one found at load.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from clik.topic import TOPIC_KEYS, normalize_topic

FORMAT = "clik-dataset/1"
DATASET_FILE = "dataset.json"
EXHIBITIONS_FILE = "exhibitions.jsonl"
SPLITS = ("train", "test")

_DATASET_KEYS = {"format", "name", "criteria", "default_criterion", "source", "meta"}
_EXHIBITION_KEYS = {"id", "group", "split", "topic", "products"}
_PRODUCT_KEYS = {"id", "image", "criteria", "on_topic", "attrs"}


def is_url(image: str) -> bool:
    return image.startswith(("http://", "https://"))


@dataclass
class Product:
    id: str
    image: str  # relative to DATA_DIR, absolute path, or http(s) URL
    criteria: dict[str, float]
    on_topic: bool = True
    # optional product attributes sent to the service as-is (e.g. {"family": H&M product_code}:
    # the diverse selection keeps one product per family)
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "image": self.image, "criteria": dict(self.criteria)}
        if not self.on_topic:  # the default is left out so hand-written files stay short
            out["on_topic"] = False
        if self.attrs:
            out["attrs"] = dict(self.attrs)
        return out


@dataclass
class Exhibition:
    id: str
    group: str  # exhibitions sharing a group share a topic: never each other's negatives
    split: str
    topic: dict[str, str]  # normalised topic attributes; date may be "" (= today at encode time)
    products: list[Product]

    def resolve_image(self, product: Product, data_dir: str | os.PathLike[str]) -> str:
        """The path or URL to read the product's image from."""
        if is_url(product.image) or os.path.isabs(product.image):
            return product.image
        return str(Path(data_dir) / product.image)

    def labels(self, criterion: str) -> np.ndarray:
        """Ground-truth values for ranking: the criterion for on-topic products, and for off-topic
        ones a value strictly below every on-topic value, so an off-topic product never counts as
        the best image however well it sold: fitting the topic comes first."""
        values = np.empty(len(self.products), dtype=np.float64)
        on = np.array([p.on_topic for p in self.products], dtype=bool)
        if not on.any():
            raise ValueError(f"exhibition {self.id!r} has no on-topic product, so no best image")
        for i, p in enumerate(self.products):
            if p.on_topic:
                if criterion not in p.criteria:
                    raise ValueError(f"exhibition {self.id!r}, product {p.id!r}: no criterion {criterion!r}")
                values[i] = p.criteria[criterion]
        values[~on] = values[on].min() - 1.0
        return values

    def best_index(self, criterion: str) -> int:
        """Index of the best image (first one when several share the top value)."""
        return int(np.argmax(self.labels(criterion)))

    def to_json(self) -> dict[str, Any]:
        topic = {k: v for k, v in self.topic.items() if v}  # empty attributes add nothing
        return {
            "id": self.id,
            "group": self.group,
            "split": self.split,
            "topic": topic,
            "products": [p.to_json() for p in self.products],
        }


@dataclass
class Dataset:
    name: str
    criteria: list[str]
    default_criterion: str
    source: str
    exhibitions: list[Exhibition]
    meta: dict[str, Any] = field(default_factory=dict)  # free-form provenance (e.g. reader options)
    data_dir: Path | None = None  # where it was loaded from: base of relative image paths

    def split(self, name: str) -> list[Exhibition]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {list(SPLITS)}")
        return [e for e in self.exhibitions if e.split == name]

    def resolve_image(self, exhibition: Exhibition, product: Product) -> str:
        if self.data_dir is None:
            raise ValueError("dataset was not loaded from a folder; use Exhibition.resolve_image(product, data_dir)")
        return exhibition.resolve_image(product, self.data_dir)

    def validate(self) -> None:
        """Checks across exhibitions; single exhibitions are checked as they are parsed."""
        _check_header(self.name, self.criteria, self.default_criterion, self.source, where=DATASET_FILE)
        seen: dict[str, int] = {}
        for n, ex in enumerate(self.exhibitions, start=1):
            where = f"{EXHIBITIONS_FILE}:{n}"
            if ex.id in seen:
                raise ValueError(
                    f"{where}: field 'id': duplicate exhibition id {ex.id!r} (first on line {seen[ex.id]})"
                )
            seen[ex.id] = n
            _check_exhibition(ex, self.criteria, self.default_criterion, where)

    def to_header(self) -> dict[str, Any]:
        header: dict[str, Any] = {
            "format": FORMAT,
            "name": self.name,
            "criteria": list(self.criteria),
            "default_criterion": self.default_criterion,
            "source": self.source,
        }
        if self.meta:
            header["meta"] = self.meta
        return header


# ---------------------------------------------------------------- loading


def load_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Read and validate a dataset folder (or its dataset.json)."""
    path = Path(path)
    data_dir = path.parent if path.name == DATASET_FILE and path.is_file() else path
    header_file, lines_file = data_dir / DATASET_FILE, data_dir / EXHIBITIONS_FILE
    for f in (header_file, lines_file):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: missing (a clik dataset folder holds {DATASET_FILE} and {EXHIBITIONS_FILE})")
    try:
        header = json.loads(header_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{header_file}: not valid JSON: {exc}") from None
    name, criteria, default, source, meta = _parse_header(header, str(header_file))

    exhibitions: list[Exhibition] = []
    seen: dict[str, int] = {}
    with lines_file.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue  # a trailing newline or blank separator line is harmless
            where = f"{lines_file}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON: {exc}") from None
            ex = _parse_exhibition(obj, where)
            _check_exhibition(ex, criteria, default, where)
            if ex.id in seen:
                raise ValueError(
                    f"{where}: field 'id': duplicate exhibition id {ex.id!r} (first on line {seen[ex.id]})"
                )
            seen[ex.id] = lineno
            exhibitions.append(ex)
    if not exhibitions:
        raise ValueError(f"{lines_file}: no exhibitions")
    return Dataset(name, criteria, default, source, exhibitions, meta, data_dir)


def _parse_header(obj: Any, where: str) -> tuple[str, list[str], str, str, dict[str, Any]]:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object")
    unknown = set(obj) - _DATASET_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}; allowed: {sorted(_DATASET_KEYS)}")
    if obj.get("format") != FORMAT:
        raise ValueError(f"{where}: field 'format': expected {FORMAT!r}, got {obj.get('format')!r}")
    for key in ("name", "criteria", "default_criterion", "source"):
        if key not in obj:
            raise ValueError(f"{where}: field {key!r}: missing")
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise ValueError(f"{where}: field 'meta': expected an object")
    _check_header(obj["name"], obj["criteria"], obj["default_criterion"], obj["source"], where)
    return obj["name"], list(obj["criteria"]), obj["default_criterion"], obj["source"], meta


def _check_header(name: Any, criteria: Any, default: Any, source: Any, where: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: field 'name': expected a non-empty string")
    if not isinstance(source, str):
        raise ValueError(f"{where}: field 'source': expected a string")
    if (
        not isinstance(criteria, list)
        or not criteria
        or not all(isinstance(c, str) and c for c in criteria)
        or len(set(criteria)) != len(criteria)
    ):
        raise ValueError(f"{where}: field 'criteria': expected a non-empty list of distinct names")
    if default not in criteria:
        raise ValueError(f"{where}: field 'default_criterion': {default!r} is not one of {criteria}")


def _parse_exhibition(obj: Any, where: str) -> Exhibition:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object")
    unknown = set(obj) - _EXHIBITION_KEYS
    if unknown:  # a misspelt key would otherwise be dropped without a word
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}; allowed: {sorted(_EXHIBITION_KEYS)}")
    ex_id = _string(obj, "id", where)
    group = _string(obj, "group", where) if "group" in obj else ex_id  # no group = a topic of its own
    split = obj.get("split")
    if split not in SPLITS:
        raise ValueError(f"{where}: field 'split': expected one of {list(SPLITS)}, got {split!r}")
    topic_obj = obj.get("topic")
    if not isinstance(topic_obj, dict):
        raise ValueError(f"{where}: field 'topic': expected an object with keys from {list(TOPIC_KEYS)}")
    topic = _parse_topic(topic_obj, where)
    products_obj = obj.get("products")
    if not isinstance(products_obj, list):
        raise ValueError(f"{where}: field 'products': expected a list")
    products = [_parse_product(p, f"{where}: field 'products[{i}]") for i, p in enumerate(products_obj)]
    return Exhibition(ex_id, group, split, topic, products)


def _parse_topic(attrs: Mapping[str, Any], where: str) -> dict[str, str]:
    for key, value in attrs.items():
        if not isinstance(value, str):
            raise ValueError(f"{where}: field 'topic.{key}': expected a string, got {type(value).__name__}")
    try:
        topic = normalize_topic(attrs)
    except ValueError as exc:
        raise ValueError(f"{where}: field 'topic': {exc}") from None
    # normalize_topic fills a missing date with today; keep it empty instead, so loading the same
    # file on two days gives the same dataset. Encoders default it at encode time as the API does.
    if not str(attrs.get("date", "")).strip():
        topic["date"] = ""
    return topic


def _parse_product(obj: Any, where: str) -> Product:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}': expected an object")
    unknown = set(obj) - _PRODUCT_KEYS
    if unknown:
        raise ValueError(f"{where}': unknown fields {sorted(unknown)}; allowed: {sorted(_PRODUCT_KEYS)}")
    pid = obj.get("id")
    if not isinstance(pid, str) or not pid:
        raise ValueError(f"{where}.id': expected a non-empty string (quote numeric ids: leading zeros matter)")
    image = obj.get("image")
    if not isinstance(image, str) or not image:
        raise ValueError(f"{where}.image': expected a non-empty path or URL")
    if "://" in image and not is_url(image):
        raise ValueError(f"{where}.image': only file paths and http(s) URLs are supported, got {image!r}")
    criteria = obj.get("criteria")
    if not isinstance(criteria, dict):
        raise ValueError(f"{where}.criteria': expected an object of name -> number")
    values: dict[str, float] = {}
    for name, value in criteria.items():
        # bool is an int subclass in Python; true/false as a sales figure is surely a mistake
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{where}.criteria.{name}': expected a finite number, got {value!r}")
        values[name] = float(value)
    on_topic = obj.get("on_topic", True)
    if not isinstance(on_topic, bool):
        raise ValueError(f"{where}.on_topic': expected true or false, got {on_topic!r}")
    attrs = obj.get("attrs", {})
    if not isinstance(attrs, dict):
        raise ValueError(f"{where}.attrs': expected an object of name -> value, got {attrs!r}")
    return Product(pid, image, values, on_topic, attrs)


def _string(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: field {key!r}: expected a non-empty string, got {value!r}")
    return value


def _check_exhibition(ex: Exhibition, criteria: list[str], default: str, where: str) -> None:
    if ex.split not in SPLITS:
        raise ValueError(f"{where}: field 'split': expected one of {list(SPLITS)}, got {ex.split!r}")
    if len(ex.products) < 2:
        raise ValueError(
            f"{where}: field 'products': an exhibition needs at least 2 products to rank, got {len(ex.products)}"
        )
    if not any(p.on_topic for p in ex.products):
        raise ValueError(f"{where}: field 'products': no on-topic product, so no best image")
    ids: set[str] = set()
    for i, p in enumerate(ex.products):
        if p.id in ids:
            raise ValueError(f"{where}: field 'products[{i}].id': duplicate product id {p.id!r} in this exhibition")
        ids.add(p.id)
        if default not in p.criteria:
            raise ValueError(f"{where}: field 'products[{i}].criteria': missing the default criterion {default!r}")
        extra = set(p.criteria) - set(criteria)
        if extra:
            raise ValueError(
                f"{where}: field 'products[{i}].criteria': {sorted(extra)} not declared in {DATASET_FILE} criteria {criteria}"
            )


# ---------------------------------------------------------------- writing


def write_dataset(dataset: Dataset, path: str | os.PathLike[str]) -> Path:
    """Validate and write ``dataset`` into folder ``path``; returns the folder.

    Each file is written to a temporary name and renamed into place, so a reader (or a crash)
    never sees a half-written file.
    """
    dataset.validate()
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps(ex.to_json(), ensure_ascii=False) + "\n" for ex in dataset.exhibitions)
    _atomic_write(out / EXHIBITIONS_FILE, lines)
    # The header last: its presence with a fresh mtime marks a complete dataset.
    _atomic_write(out / DATASET_FILE, [json.dumps(dataset.to_header(), ensure_ascii=False, indent=2) + "\n"])
    return out


def _atomic_write(target: Path, chunks: Iterable[str]) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
