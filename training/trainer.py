"""The training loop: CLIK or a baseline, locked or full towers, one process or torchrun DDP.

Run directory layout::

    RUN_DIR/config.yaml        the effective training configuration
    RUN_DIR/checkpoint/        clik.save_checkpoint (safetensors + JSON + tokenizer)
    RUN_DIR/train_state.pt     optimizer, scheduler, step, RNG states (tensors and numbers only)
    RUN_DIR/log.jsonl          one line per logged step: loss parts, lr, throughput
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import clik
from clik.config import LossConfig
from clik.image_source import ImageLoadError, load_image
from clik.objective import Objective
from clik.encoders import pick_device
from clik.towers import stages
from clik.transforms import train_transform

from .config import TrainConfig
from .data.format import load_dataset
from .distributed import DistInfo, init_distributed
from .prepare import PreparedSplit, drop_unreadable, prepare_split, split_features, split_stems, without_groups
from .sampling import MatchingSampler, RankingSampler
from .schedule import warmup_cosine


def build_model(cfg: TrainConfig) -> clik.ClikModel:
    model_cfg = clik.get_model_config(cfg.model)
    for name in ("method", "query", "embed_dim", "temperature", "attention_temperature", "memory_bank_size"):
        if getattr(cfg, name) is not None:
            setattr(model_cfg, name, getattr(cfg, name))
    if cfg.text_tower is not None:
        model_cfg.text.name = cfg.text_tower
    model_cfg.appeal_prior = uses_appeal_prior(cfg, model_cfg)
    return clik.ClikModel(model_cfg)


def uses_appeal_prior(cfg: TrainConfig, model_cfg: clik.ModelConfig) -> bool:
    """CLIK in locked mode fits it (over the features it cached); a warm start has what its
    source has (refitted in locked mode, kept as it was otherwise); the baselines, partial and
    full mode (whose features move) and CLIP towers do not."""
    if cfg.init_from:
        from .warm_start import source_model_config

        return bool(source_model_config(cfg.init_from).get("appeal_prior", False))
    if model_cfg.method != "clik" or cfg.mode != "locked" or cfg.appeal_weight <= 0:
        return False
    return not model_cfg.keeps_clip_projections


def signed_log1p(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


class TrainStep(nn.Module):
    """What one step computes, as one module, so DDP can wrap it and sync its gradients."""

    def __init__(self, model: clik.ClikModel, objective: Objective, cfg: TrainConfig):
        super().__init__()
        self.model = model
        self.objective = objective
        self.mode = cfg.mode
        self.image_top_stages = cfg.image_top_stages
        self.text_top_layers = cfg.text_top_layers

    def _topics(self, x):
        text = self.model.topic.text
        if self.mode == "locked":
            return text.project(x)
        if self.mode == "partial":
            return text.project(text.features_from_hidden(x["hidden"].float(), x["mask"], self.text_top_layers))
        return self.model.encode_topics(**x)

    def _images(self, x):
        image = self.model.image
        if self.mode == "locked":
            return image.project(x)
        if self.mode == "partial":
            pooled = image.features_from_stem(x.flatten(0, -4).float(), self.image_top_stages)
            return image.project(pooled).view(*x.shape[:-3], -1)
        return self.model.encode_images(x.flatten(0, -4)).view(*x.shape[:-3], -1)

    def forward(self, batch: dict):
        topic_tm = image_tm = None
        if self.objective.uses_topic_matching:
            topic_tm, image_tm = self._topics(batch["tm_topic"]), self._images(batch["tm_image"])
        out = self.objective(
            topic_ir=self._topics(batch["ir_topic"]),
            images_ir=self._images(batch["ir_images"]),
            positive=batch["positive"],
            criterion=batch["criterion"],
            topic_tm=topic_tm,
            image_tm=image_tm,
        )
        return out.loss, out.parts


def freeze_for(model: clik.ClikModel, cfg: TrainConfig) -> None:
    """Parameters the configuration does not train get no gradient (DDP requires it)."""
    if cfg.mode in ("locked", "partial"):
        model.topic.text.backbone.requires_grad_(False)
        model.image.backbone.requires_grad_(False)
    if cfg.mode == "partial":
        for module in stages.top_modules(model.image.backbone, cfg.image_top_stages):
            module.requires_grad_(True)
        layers = model.topic.text.layers
        for layer in layers[len(layers) - cfg.text_top_layers :]:
            layer.requires_grad_(True)
    if cfg.method != "clik" or cfg.query != "group":
        model.topic.query_head.aggregation.requires_grad_(False)


def backbones_to_eval(model: clik.ClikModel, cfg: TrainConfig) -> None:
    """Partial mode trains the image backbone's top with its batch-norm statistics as
    pretrained (eval mode: affine weights learn, running statistics stay), as fine-tuning on
    small batches usually does; the stem never runs while training."""
    if cfg.mode == "partial":
        model.image.backbone.eval()


def param_groups(model: clik.ClikModel, cfg: TrainConfig) -> list[dict]:
    text_backbone = {id(p) for p in model.topic.text.backbone.parameters()}
    image_backbone = {id(p) for p in model.image.backbone.parameters()}
    trained = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trained if id(p) not in text_backbone | image_backbone], "lr": cfg.lr},
        {"params": [p for p in trained if id(p) in text_backbone], "lr": cfg.lr_text},
        {"params": [p for p in trained if id(p) in image_backbone], "lr": cfg.lr_image_backbone},
    ]
    return [g for g in groups if g["params"]]


@dataclass
class Tables:
    """Locked mode: backbone features of every topic and image row, on the training device.
    Partial mode: stem activations of every image row (float16) and the hidden states entering
    the text encoder's trained layers, with their attention masks, of every topic row."""

    topics: torch.Tensor
    images: torch.Tensor
    topic_masks: torch.Tensor | None = None


def augmentation_seed(seed: int, rank: int) -> int:
    """The seed of one rank's augmentation stream (rank 0 keeps the configured seed, so a single
    process trains exactly as before)."""
    return seed if rank == 0 else int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


class BatchMaker:
    """Sampler output → tensors: cached features (locked) or tokens and pixels (full)."""

    def __init__(
        self,
        split: PreparedSplit,
        cfg: TrainConfig,
        tokenizer,
        model,
        device: str,
        tables: Tables | None,
        rank: int = 0,
    ):
        self.split = split
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.device = device
        self.tables = tables
        # One augmentation stream per DDP rank: with one seed everywhere, every replica would draw
        # the same crops and the same topic-attribute drops for its (different) groups.
        seed = augmentation_seed(cfg.seed, rank)
        self.py_rng = random.Random(seed)
        img = model.image.cfg
        self.transform = train_transform(img.image_size, img.mean, img.std, seed=seed)

    def _topics(self, rows: np.ndarray):
        if self.tables is not None:
            index = torch.as_tensor(rows, device=self.tables.topics.device)
            if self.tables.topic_masks is not None:
                return {"hidden": self.tables.topics[index], "mask": self.tables.topic_masks[index]}
            return self.tables.topics[index]
        batch = self.tokenizer([self.split.topics[r] for r in rows], rng=self.py_rng)
        return {k: v.to(self.device) for k, v in batch.items()}

    def _images(self, rows: np.ndarray) -> torch.Tensor:
        if self.tables is not None:
            return self.tables.images[torch.as_tensor(rows, device=self.tables.images.device)]
        flat = [self.transform(load_image(self.split.images[r])) for r in rows.reshape(-1)]
        pixels = torch.stack(flat).view(*rows.shape, *flat[0].shape)
        return pixels.pin_memory().to(self.device, non_blocking=True) if self.device.startswith("cuda") else pixels

    def __call__(self, tm, ir) -> dict:
        criterion = torch.as_tensor(ir.labels, device=self.device)
        if self.cfg.method == "pointwise" and self.cfg.pointwise_log1p:
            criterion = signed_log1p(criterion)
        batch = {
            "ir_topic": self._topics(ir.topic_rows),
            "ir_images": self._images(ir.image_rows),
            "positive": torch.as_tensor(ir.positive, device=self.device),
            "criterion": criterion,
        }
        if tm is not None:
            batch["tm_topic"] = self._topics(tm.topic_rows)
            batch["tm_image"] = self._images(tm.image_rows)
        return batch


def locked_tables(
    model, tokenizer, split: PreparedSplit, cfg: TrainConfig, device: str, dist_info: DistInfo
) -> tuple[Tables, PreparedSplit]:
    """Features of every row, computed once (by rank 0; the others wait and read the cache)."""
    if dist_info.world_size > 1:
        if dist_info.is_main:
            split_features(model, tokenizer, split, cfg.cache_dir, cfg.feature_batch, device)
        torch.distributed.barrier()
    found = split_features(
        model, tokenizer, split, cfg.cache_dir, cfg.feature_batch, device, progress=dist_info.is_main
    )
    return Tables(
        torch.as_tensor(found.topics, device=device), torch.as_tensor(found.images, device=device)
    ), found.split


def partial_tables(
    model, tokenizer, split: PreparedSplit, cfg: TrainConfig, device: str, dist_info: DistInfo
) -> tuple[Tables, PreparedSplit]:
    """Stem activations of every image (cached on disk: the costly part, computed once by rank
    0) and the text hidden states of every topic (few and cheap: computed here)."""
    if dist_info.world_size > 1:
        if dist_info.is_main:
            split_stems(model, split, cfg.cache_dir, cfg.image_top_stages, cfg.feature_batch, device)
        torch.distributed.barrier()
    found = split_stems(
        model, split, cfg.cache_dir, cfg.image_top_stages, cfg.feature_batch, device, progress=dist_info.is_main
    )
    text = model.topic.text
    was_training = text.training
    text.eval()
    with torch.inference_mode():
        batch = {k: v.to(device) for k, v in tokenizer.encode_texts(found.split.topic_texts).items()}
        hidden = text.hidden_before(batch["input_ids"], batch["attention_mask"], cfg.text_top_layers)
    text.train(was_training)
    images = torch.as_tensor(found.images, device=device)
    return Tables(hidden.clone(), images, batch["attention_mask"].clone()), found.split


def check_images(split: PreparedSplit) -> PreparedSplit:
    """Full mode decodes images every step: find the unreadable ones once, up front."""
    readable, errors = set(), {}
    for i, source in enumerate(tqdm(split.images, desc="checking images", unit="img")):
        try:
            load_image(source)
            readable.add(i)
        except ImageLoadError as exc:
            errors[source] = exc.reason
    return drop_unreadable(split, readable, errors)


def train(
    data_dir: str | Path,
    cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    exclude_groups: frozenset[str] = frozenset(),
    calibrate: bool = True,
) -> Path:
    """Train on the dataset's train split (less `exclude_groups`), then fit the topic-fit
    calibration the bundle will carry (training/calibrate.py) unless `calibrate` is False."""
    out_dir = Path(out_dir)
    if cfg.method == "probe":  # fitted in closed form on cached features, not by this loop
        from .probe import train_probe

        train_probe(data_dir, cfg, out_dir, progress=progress, exclude_groups=exclude_groups)
        if calibrate:
            from .calibrate import calibrate_run

            calibrate_run(out_dir, data_dir, cfg)
        return out_dir
    device = pick_device(cfg.device)
    dist_info = init_distributed(device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    # Same seed on every rank for the model (identical replicas), then per-rank sampling streams.
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    if cfg.init_from:
        from .warm_start import load_initial_weights

        load_initial_weights(model, cfg.init_from)
    model = model.to(device)
    epochs = cfg.epochs
    if cfg.mode == "partial":
        # Linear probe, then fine-tune: the projections and heads first learn on locked towers
        # (cheap), then the backbones' tops unlock from there for partial_epochs. Unlocking them
        # under freshly initialised projections would move pretrained weights by the projections'
        # early, large and random gradients.
        warm = out_dir / "warm-start"
        if not (resume and (out_dir / "train_state.pt").exists()):
            if not (warm / "checkpoint").is_dir() or not resume:
                train(
                    data_dir,
                    # without the appeal prior, which partial mode has not (its features move)
                    dataclasses.replace(cfg, mode="locked", appeal_weight=0.0),
                    warm,
                    progress=progress,
                    exclude_groups=exclude_groups,
                    calibrate=False,
                )
            probed, _, _ = clik.load_checkpoint(warm / "checkpoint", device=device)
            model.load_state_dict(probed.state_dict())
        epochs = cfg.partial_epochs
    tokenizer = clik.create_tokenizer(model)
    dataset = load_dataset(data_dir)
    criterion = cfg.criterion or dataset.default_criterion
    split = prepare_split(dataset, "train", tokenizer, criterion)
    if exclude_groups:
        split = without_groups(split, exclude_groups)
    tables = None
    if cfg.mode == "locked":
        tables, split = locked_tables(model, tokenizer, split, cfg, device, dist_info)
    elif cfg.mode == "partial":
        tables, split = partial_tables(model, tokenizer, split, cfg, device, dist_info)
    else:
        split = check_images(split)
    if dist_info.is_main and split.dropped:
        print(f"left out {len(split.dropped)} unreadable images, e.g. {next(iter(split.dropped.items()))}")

    rng = np.random.default_rng([cfg.seed, dist_info.rank])
    objective = Objective(
        model, LossConfig(cfg.w_match, cfg.w_rank, cfg.triplet_margin, cfg.ranking_loss, cfg.listwise_temperature)
    )
    ranking = RankingSampler(split.groups, cfg.groups_per_batch, cfg.images_per_group, rng)
    matching = MatchingSampler(split.groups, cfg.tm_batch, rng) if objective.uses_topic_matching else None
    make_batch = BatchMaker(split, cfg, tokenizer, model, device, tables, rank=dist_info.rank)

    freeze_for(model, cfg)
    optimizer = torch.optim.AdamW(param_groups(model, cfg), weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(split.groups) / (ranking.n * dist_info.world_size)))
    total_steps = max(1, math.ceil(epochs * steps_per_epoch))
    scheduler = warmup_cosine(optimizer, total_steps, cfg.warmup)
    step_module: nn.Module = TrainStep(model, objective, cfg)
    if dist_info.world_size > 1:
        # The memory bank is kept equal on every rank by gathering, not by broadcasting.
        step_module = DistributedDataParallel(step_module, broadcast_buffers=False)

    step = 0
    state_path = out_dir / "train_state.pt"
    if resume and state_path.exists():
        restored, _, _ = clik.load_checkpoint(out_dir / "checkpoint", device=device)
        model.load_state_dict(restored.state_dict())
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
        rng.bit_generator.state = json.loads(state["numpy_rng"][dist_info.rank])
        torch.set_rng_state(state["torch_rng"])
        if dist_info.is_main:
            print(f"resumed at step {step}/{total_steps}")

    if dist_info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(yaml.safe_dump({**cfg.to_dict(), "data": str(data_dir)}, sort_keys=True))
    log = open(out_dir / "log.jsonl", "a") if dist_info.is_main else None
    autocast = cfg.amp and device.startswith("cuda")
    checkpoint_every = cfg.checkpoint_every or max(steps_per_epoch, 500)
    bar = tqdm(
        total=total_steps,
        initial=step,
        desc=f"train {cfg.method}",
        unit="step",
        disable=not (progress and dist_info.is_main),
    )
    model.train()
    backbones_to_eval(model, cfg)
    started, window_groups = time.perf_counter(), 0
    while step < total_steps:
        batch = make_batch(matching.sample() if matching else None, ranking.sample())
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss, parts = step_module(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        step += 1
        window_groups += ranking.n * dist_info.world_size
        if dist_info.is_main and (step % cfg.log_every == 0 or step == total_steps):
            elapsed = time.perf_counter() - started
            record = {
                "step": step,
                "epoch": step / steps_per_epoch,
                "loss": loss.item(),
                **parts,
                "lr": scheduler.get_last_lr()[0],
                "groups_per_s": window_groups / max(elapsed, 1e-9),
            }
            log.write(json.dumps(record) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.1e}", gps=f"{record['groups_per_s']:.0f}")
            started, window_groups = time.perf_counter(), 0
        bar.update(1)
        if step == total_steps and model.cfg.appeal_prior and cfg.mode == "locked" and tables is not None:
            # Fitted after the gradient steps, on the features they trained with (clik/appeal.py),
            # so that the last checkpoint, written next, holds it.
            from .appeal import fit_appeal_prior, install_appeal_prior

            weight, bias = fit_appeal_prior(tables.images.cpu().numpy(), split.groups, cfg.appeal_penalty)
            install_appeal_prior(model, weight, bias, cfg.appeal_weight)
        if step % checkpoint_every == 0 or step == total_steps:
            save_state(model, tokenizer, optimizer, scheduler, step, rng, out_dir, dist_info, cfg, criterion)
    bar.close()
    if log:
        log.close()
    if dist_info.is_main and calibrate:
        # The topic-fit calibration travels with the model: fitted now, put in the bundle by export.
        from .calibrate import calibrate_run

        calibrate_run(out_dir, data_dir, cfg, distributed=dist_info.world_size > 1)
    return out_dir


def save_state(
    model,
    tokenizer,
    optimizer,
    scheduler,
    step,
    rng,
    out_dir: Path,
    dist_info: DistInfo,
    cfg: TrainConfig,
    criterion: str,
) -> None:
    rng_state = json.dumps(rng.bit_generator.state)
    states = [rng_state]
    if dist_info.world_size > 1:
        states = [None] * dist_info.world_size
        torch.distributed.all_gather_object(states, rng_state)
    if dist_info.is_main:
        clik.save_checkpoint(
            model,
            tokenizer,
            out_dir / "checkpoint",
            extra={"step": step, "criterion": criterion, "train": cfg.to_dict()},
        )
        tmp = out_dir / "train_state.pt.tmp"
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": step,
                "numpy_rng": states,
                "torch_rng": torch.get_rng_state(),
            },
            tmp,
        )
        tmp.replace(out_dir / "train_state.pt")
