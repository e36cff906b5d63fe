"""The linear probe (`--method probe`): closed-form ridge on frozen backbone features and the
topic, the simplest strong baseline CLIK has to beat (issue 20).

Nothing is trained by gradient: the backbones' cached features (as in locked mode) are fitted in
closed form, and the result is written as an ordinary checkpoint of a `method: probe` model, so
evaluation, export, the API and the workers treat it exactly like any other method (an image
vector in the store, a query from the topic, cosine). Three maps are fitted on the train split:

1. image: z = unit(PCA_d(standardised image feature)), d = embed_dim: the image projection
   (weights V_d^T diag(1/sigma), bias from the mean). Unsupervised, fitted on the train images.
2. topic: the text projection, a ridge map from the standardised text feature to the mean z of
   the topic's on-topic images (so the topic sits where its images are, which the topic-fit
   features of the service use); penalty by cross-validation over train topic groups (MSE).
3. ranking: score = w.z + z_k^T M c + a z.u, with u = unit(topic embedding), c = the topic's
   code (the first r principal directions of u, standardised) and z_k the first k components of
   z: ridge on [z, z_k (x) c, z.u] (an outer product kept small by k and r: k * r columns, and the
   image's cosine with the topic), features and target centred within each exhibition (only the
   order inside an exhibition matters), columns standardised. Targets, from Exhibition.labels
   (off-topic products below every on-topic one): the label's rank within its exhibition (ties
   averaged, scaled to [0, 1]: heavy-tailed sales cannot let one best seller dominate) or
   sign-log1p of the label (the best sellers weigh more, as MRR does). The score is z . q(topic)
   with q affine in u: the query head of the model (clik.heads.LinearQuery). Target, r and the
   penalty are chosen by the mean MRR over folds of the train topic groups (never the test
   split); the folds refit maps 2 and 3 without their groups.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from scipy.stats import rankdata

import clik
from clik.metrics import reciprocal_rank

from .config import TrainConfig
from .data.format import load_dataset
from .prepare import PreparedSplit, prepare_split, split_features, without_groups
from .sampling import PreparedGroup

PENALTIES = (0.1, 1.0, 10.0, 100.0, 1000.0, 1e4, 1e5)
TOPIC_CODES = (0, 4, 8)  # r: dimensions of the topic code in the interaction
# k: image components in the interaction (the leading principal ones). All 128 with r = 8 would be
# 1,152 columns, whose solves cost minutes per fit on a shared 2-core machine; 32 keep it seconds.
INTERACTION_DIMS = 32
MAX_FOLDS = 5
REPORT_FILE = "probe.json"


@dataclass
class Standardiser:
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> "Standardiser":
        scale = x.std(axis=0)
        return cls(x.mean(axis=0), np.where(scale > 1e-8, scale, 1.0))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.scale


def ridge(x: np.ndarray, y: np.ndarray, penalties) -> list[np.ndarray]:
    """Ridge solutions (no intercept: callers centre) for every penalty, from one eigh of X^T X."""
    vals, vecs = np.linalg.eigh(x.T @ x)
    proj = vecs.T @ (x.T @ y)
    return [vecs @ (proj / (vals + lam)[:, None] if proj.ndim == 2 else proj / (vals + lam)) for lam in penalties]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass
class TopicMap:
    """Text feature -> topic embedding (in the image space) -> the topic code c."""

    text: Standardiser
    weight: np.ndarray  # (T, d) on standardised text features
    bias: np.ndarray  # (d,)
    code_mean: np.ndarray  # (d,) mean unit topic embedding
    code_dirs: np.ndarray  # (d, r) principal directions
    code_scale: np.ndarray  # (r,)
    penalty: float

    def embed(self, text: np.ndarray) -> np.ndarray:
        return self.text(text) @ self.weight + self.bias

    def code(self, text: np.ndarray, r: int) -> np.ndarray:
        return ((unit(self.embed(text)) - self.code_mean) @ self.code_dirs[:, :r]) / self.code_scale[:r]


def _image_targets(groups: list[PreparedGroup], z: np.ndarray, n_topics: int) -> tuple[np.ndarray, np.ndarray]:
    """Per topic row: the mean z of its on-topic images (and which rows have any)."""
    sums, counts = np.zeros((n_topics, z.shape[1])), np.zeros(n_topics)
    for g in groups:
        rows = g.image_rows[g.on_topic]
        sums[g.topic_row] += z[rows].sum(axis=0)
        counts[g.topic_row] += len(rows)
    have = counts > 0
    return sums[have] / counts[have, None], have


def _group_folds(groups: list[PreparedGroup], seed: int) -> list[set[str]]:
    keys = sorted({g.group for g in groups})
    n = min(MAX_FOLDS, len(keys))
    order = np.random.default_rng([seed, 20]).permutation(len(keys))
    return [{keys[i] for i in order[f::n]} for f in range(n)] if n >= 2 else []


def fit_topic_map(groups: list[PreparedGroup], z: np.ndarray, text: np.ndarray, seed: int) -> TopicMap:
    """Ridge from text features to the topic's mean image vector; penalty by group-fold MSE."""
    targets, have = _image_targets(groups, z, len(text))
    rows = np.flatnonzero(have)
    group_of = {g.topic_row: g.group for g in groups}
    std = Standardiser.fit(text[rows])
    x, y_mean = std(text[rows]), targets.mean(axis=0)
    errors = np.zeros(len(PENALTIES))
    for held in _group_folds(groups, seed):
        test = np.array([group_of[int(r)] in held for r in rows])
        if test.all() or not test.any():
            continue
        fit_mean = targets[~test].mean(axis=0)
        for j, w in enumerate(ridge(x[~test], targets[~test] - fit_mean, PENALTIES)):
            errors[j] += float(((x[test] @ w + fit_mean - targets[test]) ** 2).sum())
    penalty = PENALTIES[int(np.argmin(errors))] if errors.any() else PENALTIES[len(PENALTIES) // 2]
    weight = ridge(x, targets - y_mean, [penalty])[0]
    embedded = unit(x @ weight + y_mean)
    code_mean = embedded.mean(axis=0)
    _, s, vt = np.linalg.svd(embedded - code_mean, full_matrices=False)
    r_max = max(TOPIC_CODES)
    dirs = np.zeros((z.shape[1], r_max))
    k = min(r_max, vt.shape[0])
    dirs[:, :k] = vt[:k].T
    scale = np.ones(r_max)
    scale[:k] = np.where(s[:k] > 1e-8, s[:k] / np.sqrt(max(len(rows), 1)), 1.0)
    return TopicMap(std, weight, y_mean, code_mean, dirs, scale, penalty)


def rank_target(labels: np.ndarray) -> np.ndarray:
    """The label's rank within its exhibition in [0, 1] (1 = best; ties share their mean rank)."""
    ranks = rankdata(labels)  # average ranks for ties, 1 = lowest
    return (ranks - 1) / max(len(labels) - 1, 1)


def log1p_target(labels: np.ndarray) -> np.ndarray:
    """sign(y) log(1 + |y|): the best sellers count more than under ranks (MRR looks at the top)."""
    return np.sign(labels) * np.log1p(np.abs(labels))


TARGETS = {"rank": rank_target, "log1p": log1p_target}


def _design(z: np.ndarray, code: np.ndarray, topic_unit: np.ndarray) -> np.ndarray:
    """[z, z_k (x) c, z . u]: one row per product of an exhibition (u: the unit topic embedding,
    so the last column is the image's cosine with the topic in the image space)."""
    parts = [z]
    if code.shape[-1]:
        zk = z[:, :INTERACTION_DIMS]
        parts.append((zk[:, :, None] * code[None, None, :]).reshape(len(z), -1))
    parts.append((z @ topic_unit)[:, None])
    return np.concatenate(parts, axis=1)


@dataclass
class RankingFit:
    w: np.ndarray  # (d,)
    m: np.ndarray  # (d, r): rows past k are zero
    a: float  # weight of the cosine with the topic
    r: int
    penalty: float
    target: str

    def query(self, code: np.ndarray, topic_unit: np.ndarray) -> np.ndarray:
        return self.w + self.m @ code + self.a * topic_unit


@dataclass
class TopicInputs:
    """Per topic row: its code c and its unit embedding u."""

    codes: np.ndarray
    units: np.ndarray

    @classmethod
    def of(cls, topic_map: TopicMap, text: np.ndarray, r: int) -> "TopicInputs":
        return cls(topic_map.code(text, r), unit(topic_map.embed(text)))


def _stacked(groups: list[PreparedGroup], z: np.ndarray, topics: TopicInputs) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for g in groups:
        x = _design(z[g.image_rows], topics.codes[g.topic_row], topics.units[g.topic_row])
        xs.append(x - x.mean(axis=0))
        y = np.stack([target(g.labels) for target in TARGETS.values()], axis=1)
        ys.append(y - y.mean(axis=0))
    return np.concatenate(xs), np.concatenate(ys)


def fit_ranking(
    groups: list[PreparedGroup], z: np.ndarray, topics: TopicInputs, penalties=PENALTIES
) -> list[RankingFit]:
    """Ridge solutions for every target and penalty (columns standardised, weights folded back)."""
    r = topics.codes.shape[1]
    x, y = _stacked(groups, z, topics)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-8, scale, 1.0)
    d, k = z.shape[1], min(INTERACTION_DIMS, z.shape[1])
    fits = []
    for lam, betas in zip(penalties, ridge(x / scale, y, [lam * len(groups) for lam in penalties])):
        for target, beta in zip(TARGETS, betas.T):
            beta = beta / scale
            m = np.zeros((d, r))
            m[:k] = beta[d : d + k * r].reshape(k, r)
            fits.append(RankingFit(beta[:d], m, float(beta[-1]), r, lam, target))
    return fits


def _mrr(fit: RankingFit, groups: list[PreparedGroup], z: np.ndarray, topics: TopicInputs) -> float:
    return float(
        np.mean(
            [
                reciprocal_rank(
                    list(z[g.image_rows] @ fit.query(topics.codes[g.topic_row], topics.units[g.topic_row])),
                    list(g.labels),
                )
                for g in groups
            ]
        )
    )


@dataclass
class ProbeFit:
    image: Standardiser
    basis: np.ndarray  # (F, d) principal directions of the standardised image features
    topic: TopicMap
    ranking: RankingFit
    report: dict


def image_basis(features: np.ndarray, d: int) -> tuple[Standardiser, np.ndarray]:
    std = Standardiser.fit(features)
    x = std(features).astype(np.float32)
    # Eigenvectors of the covariance: the SVD of the whole matrix costs several times more.
    vals, vecs = np.linalg.eigh((x.T @ x).astype(np.float64))
    order = np.argsort(-vals)[: min(d, len(x))]
    basis = np.zeros((features.shape[1], d))
    basis[:, : len(order)] = vecs[:, order]
    return std, basis


def fit_probe(split: PreparedSplit, images: np.ndarray, topics: np.ndarray, embed_dim: int, seed: int) -> ProbeFit:
    groups = split.groups
    used = np.unique(np.concatenate([g.image_rows for g in groups]))
    std, basis = image_basis(images[used].astype(np.float64), embed_dim)
    z = unit(std(images.astype(np.float64)) @ basis)
    text = topics.astype(np.float64)
    # Cross-validation over the train topic groups: maps 2 and 3 refitted without the held-out fold.
    scores: dict[tuple[str, int, float], float] = {}
    folds = _group_folds(groups, seed)
    n_held = 0
    for held in folds:
        fit_groups = [g for g in groups if g.group not in held]
        test_groups = [g for g in groups if g.group in held]
        n_held += len(test_groups)
        topic_map = fit_topic_map(fit_groups, z, text, seed)
        for r in TOPIC_CODES:
            inputs = TopicInputs.of(topic_map, text, r)
            for fit in fit_ranking(fit_groups, z, inputs):
                key = (fit.target, r, fit.penalty)
                scores[key] = scores.get(key, 0.0) + _mrr(fit, test_groups, z, inputs) * len(test_groups)
    scores = {key: value / max(n_held, 1) for key, value in scores.items()}
    # Best mean MRR; ties go to the smaller model, then to the larger penalty.
    target, r, penalty = (
        ("rank", 0, PENALTIES[-1])
        if not scores
        else min(scores, key=lambda key: (-round(scores[key], 6), key[1], -key[2]))
    )
    topic_map = fit_topic_map(groups, z, text, seed)
    inputs = TopicInputs.of(topic_map, text, r)
    ranking = next(f for f in fit_ranking(groups, z, inputs, [penalty]) if f.target == target)
    report = {
        "folds": len(folds),
        "target": target,
        "topic_code": r,
        "penalty": penalty,
        "topic_penalty": topic_map.penalty,
        "topic_cosine_weight": ranking.a,
        "train_mrr": _mrr(ranking, groups, z, inputs),
        "cv_mrr": {
            f"{t} r={rr}": {str(p): round(scores[(t, rr, p)], 4) for p in PENALTIES}
            for t in TARGETS
            for rr in TOPIC_CODES
        }
        if scores
        else {},
    }
    return ProbeFit(std, basis, topic_map, ranking, report)


@torch.no_grad()
def load_into(model: clik.ClikModel, fit: ProbeFit) -> None:
    """Write the fitted maps into the model's projections and query head (float32)."""

    def put(layer: torch.nn.Linear, weight: np.ndarray, bias: np.ndarray) -> None:
        layer.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))

    img_w = fit.basis.T / fit.image.scale  # (d, F)
    put(model.image.proj, img_w, -img_w @ fit.image.mean)
    t = fit.topic
    txt_w = t.weight.T / t.text.scale  # (d, T)
    put(model.topic.text.proj, txt_w, t.bias - txt_w @ t.text.mean)
    r = fit.ranking.r
    # q = w + M c + a u, c = D R^T (u - mean) with u = unit(topic embedding): affine in u.
    code_part = fit.ranking.m @ (t.code_dirs[:, :r] / t.code_scale[:r]).T  # (d, d)
    linear = code_part + fit.ranking.a * np.eye(len(code_part))
    head = model.topic.probe_head
    if head is None:
        raise ValueError("the model is not a probe (method: probe): it has no probe head")
    put(head.linear, linear, fit.ranking.w - code_part @ t.code_mean)


def train_probe(
    data_dir: str | Path,
    cfg: TrainConfig,
    out_dir: str | Path,
    progress: bool = True,
    exclude_groups: frozenset[str] = frozenset(),
) -> Path:
    """Fit the probe on the train split (less `exclude_groups`) and write a checkpoint."""
    from .trainer import build_model

    out_dir = Path(out_dir)
    device = "cpu"  # closed form in numpy; the backbones only run for uncached features
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    tokenizer = clik.create_tokenizer(model)
    dataset = load_dataset(data_dir)
    criterion = cfg.criterion or dataset.default_criterion
    split = prepare_split(dataset, "train", tokenizer, criterion)
    if exclude_groups:
        split = without_groups(split, exclude_groups)
    found = split_features(model, tokenizer, split, cfg.cache_dir, cfg.feature_batch, device, progress=progress)
    fit = fit_probe(found.split, found.images, found.topics, model.cfg.embed_dim, cfg.seed)
    load_into(model, fit)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump({**cfg.to_dict(), "data": str(data_dir)}, sort_keys=True))
    (out_dir / REPORT_FILE).write_text(json.dumps(fit.report, indent=1) + "\n")
    clik.save_checkpoint(
        model.eval(),
        tokenizer,
        out_dir / "checkpoint",
        extra={"step": 0, "criterion": criterion, "train": cfg.to_dict(), "probe": fit.report},
    )
    return out_dir
