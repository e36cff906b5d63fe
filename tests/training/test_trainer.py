"""Training end to end on a small drawn dataset: every method, resume, evaluation, export."""

import json
import os
import subprocess
import sys

import pytest
import torch

import clik
from training.config import load_config
from training.evaluate import evaluate
from training.trainer import build_model, train

from tests.support.train_configs import small_config


_cfg = small_config


@pytest.mark.parametrize(
    "method,query",
    [
        ("clik", "group"),
        ("clik", "virtual"),
        ("clik", "topic"),
        ("triplet", "group"),
        ("pairwise", "group"),
        ("pointwise", "group"),
    ],
)
def test_every_method_trains_and_evaluates(shapes_dataset, tmp_path, method, query):
    run = train(shapes_dataset, _cfg(tmp_path, method=method, query=query), tmp_path / "run", progress=False)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log and all(map(lambda r: r["loss"] == r["loss"], log))  # finite, not NaN
    assert log[-1]["step"] == 12  # 8 train exhibitions, 2 per step: 4 steps an epoch, 3 epochs
    result = evaluate(run, shapes_dataset, split="test", bootstrap_samples=50, cache_dir=str(tmp_path / "cache"))
    assert result["groups"] == 4 and result["method"] == method
    for key in ("MRR", "Top1-Top1", "Top3-Top1", "Top5-Top1", "offtopic@1", "offtopic@10"):
        assert 0.0 <= result["metrics"][key] <= 1.0
        lo, hi = result["ci95"][key]
        assert lo <= result["metrics"][key] + 1e-9 and result["metrics"][key] <= hi + 1e-9
    assert result["random"]["offtopic@1"] == pytest.approx(0.25)


def test_resume_continues_where_it_stopped(shapes_dataset, tmp_path):
    run = tmp_path / "run"
    train(shapes_dataset, _cfg(tmp_path, epochs=1, checkpoint_every=2), run, progress=False)
    state_after_first = clik.load_checkpoint(run / "checkpoint")[2]
    assert state_after_first["step"] == 4
    train(shapes_dataset, _cfg(tmp_path, epochs=2, checkpoint_every=2), run, resume=True, progress=False)
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))  # no step repeated, none skipped
    assert clik.load_checkpoint(run / "checkpoint")[2]["step"] == 8


def test_trained_run_exports_to_a_working_bundle(shapes_dataset, tmp_path):
    from typer.testing import CliRunner

    from clik_cli.main import app

    run = train(shapes_dataset, _cfg(tmp_path), tmp_path / "run", progress=False)
    result = CliRunner().invoke(app, ["export", str(run), "--out", str(tmp_path / "bundle")])
    assert result.exit_code == 0, result.output
    predictor = clik.Predictor.load(tmp_path / "bundle")
    images = sorted((shapes_dataset / "images").glob("*.jpg"))[:5]
    ranking = predictor({"name": "red circles", "kwds": "red,circle"}, images)
    assert sorted(ranking.indices) == list(range(5))


def test_bad_options_are_refused_with_their_name(tmp_path):
    with pytest.raises(ValueError, match="unknown training option 'epoch'"):
        load_config(overrides=["epoch=3"])
    with pytest.raises(ValueError, match="method"):
        load_config(method="listwise")
    with pytest.raises(ValueError, match="epochs"):
        load_config(overrides=["epochs=many"])
    with pytest.raises(ValueError, match="groups_per_batch"):
        load_config(overrides=["groups_per_batch=2.5"])
    with pytest.raises(ValueError, match="amp"):
        load_config(overrides=["amp=maybe"])
    cfg = load_config(overrides=["device=cuda:1", "embed_dim=64", "epochs=2"])
    assert (cfg.device, cfg.embed_dim, cfg.epochs) == ("cuda:1", 64, 2.0)


def test_torchrun_two_processes_train_together(shapes_dataset, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29533",
        "-m",
        "clik_cli.main",
        "train",
        "--data",
        str(shapes_dataset),
        "--out",
        str(tmp_path / "ddp"),
        "--device",
        "cpu",
        "--epochs",
        "2",
        "--set",
        "tm_batch=4",
        "--set",
        "memory_bank_size=16",
        "--set",
        "groups_per_batch=2",
        "--set",
        "images_per_group=6",
        "--set",
        f"cache_dir={tmp_path / 'cache'}",
        "--set",
        "log_every=1",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    # 8 exhibitions, 2 per step on each of 2 ranks: 2 steps an epoch.
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert clik.load_checkpoint(tmp_path / "ddp" / "checkpoint")[2]["step"] == 4


def test_full_mode_fine_tunes_the_towers(shapes_dataset, tmp_path):
    """Full mode trains on pixels and tokens; a small random-init config keeps it quick on CPU."""
    cfg = _cfg(tmp_path, mode="full", model="clik-tiny-test", epochs=1, tm_batch=4, memory_bank_size=8)
    torch.manual_seed(0)  # the trainer seeds the same way, so this is its starting point
    before = clik.ClikModel(clik.get_model_config("clik-tiny-test"), load_weights=False)
    run = train(shapes_dataset, cfg, tmp_path / "full", progress=False)
    model, _, meta = clik.load_checkpoint(run / "checkpoint")
    assert meta["step"] == 4 and model.cfg.embed_dim == 16 and model.cfg.memory_bank_size == 8
    conv = "backbone.conv_stem.weight"
    # Both backbones moved (locked mode freezes them).
    assert not torch.equal(model.image.state_dict()[conv], before.image.state_dict()[conv])
    emb = "backbone.embeddings.word_embeddings.weight"
    assert not torch.equal(model.topic.text.state_dict()[emb], before.topic.text.state_dict()[emb])
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(r["matching"] == r["matching"] for r in log)
    # Locked mode, from its own start (its projections leave a coordinate to the appeal prior,
    # so it draws other initial weights): the backbones stay exactly as they were.
    locked_cfg = _cfg(tmp_path, model="clik-tiny-test", epochs=1, tm_batch=4, memory_bank_size=8)
    torch.manual_seed(0)
    start = build_model(locked_cfg)
    locked = train(shapes_dataset, locked_cfg, tmp_path / "locked", progress=False)
    frozen, _, _ = clik.load_checkpoint(locked / "checkpoint")
    assert torch.equal(frozen.image.state_dict()[conv], start.image.state_dict()[conv])
    assert torch.equal(frozen.topic.text.state_dict()[emb], start.topic.text.state_dict()[emb])
    assert not torch.equal(frozen.image.state_dict()["proj.weight"], start.image.state_dict()["proj.weight"])


def test_report_has_both_tables_a_plot_and_contact_sheets(shapes_dataset, tmp_path):
    from PIL import Image

    from training.report import write_report

    results = []
    for method, query in (("clik", "group"), ("clik", "topic"), ("pointwise", "group")):
        run = train(
            shapes_dataset,
            _cfg(tmp_path, method=method, query=query, epochs=1),
            tmp_path / f"{method}-{query}",
            progress=False,
        )
        results.append(evaluate(run, shapes_dataset, bootstrap_samples=20))
    path = write_report(results, tmp_path / "report", exhibition_id="red-square-1")
    text = path.read_text()
    assert "Table 2 shape" in text and "Table 3 shape" in text
    assert "| CLIK |" in text and "| Pointwise |" in text and "| Random |" in text
    assert (
        "| Group Query |" in text
        and "| Topic |" in text
        and "Virtual Image" not in text.split("Table 3")[1].split("Random")[0]
    )
    for name in ("metrics.png", "contact-clik-group.png", "contact-clik-topic.png", "contact-pointwise.png"):
        assert Image.open(tmp_path / "report" / name).size[0] > 300
    assert "exhibitions red-square-1" in text
    # topic fit: the flag's figures and CLIK's appeal alone next to the service's scores
    assert "| offtopic_auc | flag_precision | flag_recall |" in text and "appeal alone" in text
    assert all("offtopic_auc" in r["metrics"] and "MRR" in r["appeal_only"] for r in results)
    ranking = results[0]["per_group"][0]["ranking"]
    assert {"appeal", "topic_fit", "off_topic_flag"} <= set(ranking[0]) and results[0]["per_group"][0]["topic"]
    # several exhibitions on one sheet when none is named
    from training.report import contact_sheet

    shown = contact_sheet(results[0], None, tmp_path / "several.png", count=3)
    assert len(shown) == 3 and Image.open(tmp_path / "several.png").size[1] > 3 * 200
    # training wrote the calibration the bundle will carry
    assert (tmp_path / "clik-group" / "checkpoint" / "topic_fit.json").exists()


def test_text_tower_option_replaces_the_model_configs_tower(tmp_path):
    from transformers import BertConfig

    from training.trainer import build_model

    BertConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
    ).save_pretrained(tmp_path / "tiny-bert")
    cfg = load_config(overrides=["model=clik-tiny-test", f"text_tower={tmp_path / 'tiny-bert'}"])
    model = build_model(cfg)
    assert model.cfg.text.name == str(tmp_path / "tiny-bert")
    backbone_cfg = next(
        m for m in model.modules() if hasattr(m, "config") and hasattr(m.config, "intermediate_size")
    ).config
    assert (backbone_cfg.hidden_size, backbone_cfg.intermediate_size) == (32, 37)
    assert build_model(load_config(overrides=["model=clik-tiny-test"])).cfg.text.name == "minilm"


def test_partial_mode_trains_the_last_stages_from_cached_activations(shapes_dataset, tmp_path):
    """Partial mode: the image backbone's last stage and head conv and the text encoder's last
    layer train from cached stem activations; everything before them stays as it was, and the
    trained model is evaluated from the same cache, as if from pixels."""
    from training.data.format import load_dataset
    from training.features import image_features

    cfg = _cfg(
        tmp_path,
        mode="partial",
        model="clik-tiny-test",
        epochs=2,
        tm_batch=4,
        memory_bank_size=8,
        image_top_stages=1,
        text_top_layers=1,
    )
    torch.manual_seed(0)
    before = clik.ClikModel(clik.get_model_config("clik-tiny-test"), load_weights=False)
    run = train(shapes_dataset, cfg, tmp_path / "partial", progress=False)
    model, _, _ = clik.load_checkpoint(run / "checkpoint")
    image_now, image_then = model.image.state_dict(), before.image.state_dict()
    for frozen in ("backbone.conv_stem.weight", "backbone.blocks.5.0.conv_pw.weight", "backbone.bn1.running_mean"):
        assert torch.equal(image_now[frozen], image_then[frozen]), frozen
    for trained in ("backbone.blocks.6.0.conv_pw.weight", "backbone.conv_head.weight", "backbone.bn2.weight"):
        assert not torch.equal(image_now[trained], image_then[trained]), trained
    # Batch-norm statistics of the trained top stay as pretrained (eval mode while training).
    assert torch.equal(image_now["backbone.bn2.running_mean"], image_then["backbone.bn2.running_mean"])
    text_now, text_then = model.topic.text.state_dict(), before.topic.text.state_dict()
    last = len(model.topic.text.layers) - 1
    assert torch.equal(
        text_now["backbone.encoder.layer.0.attention.self.query.weight"],
        text_then["backbone.encoder.layer.0.attention.self.query.weight"],
    )
    assert not torch.equal(
        text_now[f"backbone.encoder.layer.{last}.attention.self.query.weight"],
        text_then[f"backbone.encoder.layer.{last}.attention.self.query.weight"],
    )
    assert any(p.name.startswith("stem-") for p in (tmp_path / "cache").iterdir())

    result = evaluate(run, shapes_dataset, split="test", bootstrap_samples=0, cache_dir=str(tmp_path / "cache"))
    assert result["groups"] == 4 and 0.0 <= result["metrics"]["MRR"] <= 1.0
    # The features evaluation finished from the stems are those the trained backbone computes
    # from pixels (float16 stems: within half-precision rounding).
    dataset = load_dataset(shapes_dataset)
    sources = sorted({dataset.resolve_image(e, p) for e in dataset.split("test") for p in e.products})
    from_stems = image_features(model, sources, tmp_path / "cache", progress=False)
    from_pixels = image_features(model, sources, tmp_path / "fresh", progress=False)
    torch.testing.assert_close(
        torch.as_tensor(from_stems.of(sources)), torch.as_tensor(from_pixels.of(sources)), rtol=2e-2, atol=2e-2
    )


def test_listwise_ranking_loss_trains(shapes_dataset, tmp_path):
    run = train(shapes_dataset, _cfg(tmp_path, ranking_loss="listwise"), tmp_path / "run", progress=False)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["ranking"] < log[0]["ranking"] and all(r["loss"] == r["loss"] for r in log)


def test_init_from_starts_training_from_a_run_or_its_bundle(shapes_dataset, tmp_path):
    """The retraining cycle's warm start: the weights of a run, or of the bundle exported from it,
    are where training starts (before any step they are the source's exactly); a source of
    another model shape is refused by name."""
    from typer.testing import CliRunner

    from clik_cli.main import app
    from training.trainer import build_model
    from training.warm_start import load_initial_weights

    served = train(shapes_dataset, _cfg(tmp_path, seed=3), tmp_path / "served", progress=False, calibrate=False)
    exported = CliRunner().invoke(app, ["export", str(served), "--out", str(tmp_path / "bundle")])
    assert exported.exit_code == 0, exported.output
    reference = clik.load_checkpoint(served / "checkpoint")[0].state_dict()
    for source in (served, tmp_path / "bundle"):
        model = build_model(_cfg(tmp_path, seed=4))
        assert not all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())
        load_initial_weights(model, source)
        assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items()), source
    with pytest.raises(ValueError, match="memory_bank_size"):
        load_initial_weights(build_model(_cfg(tmp_path, memory_bank_size=32)), served)
    with pytest.raises(FileNotFoundError):
        load_initial_weights(build_model(_cfg(tmp_path)), tmp_path)
    missing = CliRunner().invoke(
        app,
        [
            "train",
            "--data",
            str(shapes_dataset),
            "--out",
            str(tmp_path / "x"),
            "--init-from",
            str(tmp_path / "nowhere"),
        ],
    )
    assert missing.exit_code == 2 and "does not exist" in missing.output
    # one epoch from the bundle: fine-tuned, so near the source but not equal to it
    tuned = train(
        shapes_dataset,
        _cfg(tmp_path, epochs=1, seed=4, lr=1e-4, init_from=str(tmp_path / "bundle")),
        tmp_path / "tuned",
        progress=False,
        calibrate=False,
    )
    after = clik.load_checkpoint(tuned / "checkpoint")[0].state_dict()
    moved = [k for k, v in after.items() if v.is_floating_point() and not torch.equal(v, reference[k])]
    assert moved
    fresh = clik.load_checkpoint(
        train(
            shapes_dataset,
            _cfg(tmp_path, epochs=1, seed=4, lr=1e-4),
            tmp_path / "fresh",
            progress=False,
            calibrate=False,
        )
        / "checkpoint"
    )[0].state_dict()
    distance = {
        name: sum(float((s[k] - reference[k]).norm()) for k in moved)
        for name, s in (("tuned", after), ("fresh", fresh))
    }
    assert distance["tuned"] < distance["fresh"], distance


def test_a_warm_start_on_ctr_labels_keeps_its_sources_topic_fit(shapes_dataset, tmp_path):
    """CTR labels from events flag no product off-topic, so no calibration can be fitted on them:
    a warm-started run keeps the calibration of the model it started from (the prior otherwise)."""
    from dataclasses import replace

    from clik.topic_fit import DEFAULT_FIT, TopicFit
    from training.data.format import load_dataset, write_dataset

    source = load_dataset(shapes_dataset)
    for ex in source.exhibitions:
        ex.products[:] = [replace(p, image=ex.resolve_image(p, shapes_dataset), on_topic=True) for p in ex.products]
    ctr_only = tmp_path / "ctr-only"
    write_dataset(source, ctr_only)
    served = train(shapes_dataset, _cfg(tmp_path, epochs=1), tmp_path / "served", progress=False, calibrate=False)
    fitted = replace(
        DEFAULT_FIT, weights=(0.5, 1.0, 0.2, 0.1, 0.3, 1.2), bias=2.5, context_weight=1.5, fitted_on={"exhibitions": 8}
    )
    (served / "checkpoint" / "topic_fit.json").write_text(json.dumps(fitted.to_dict()))
    warm = train(ctr_only, _cfg(tmp_path, epochs=1, init_from=str(served)), tmp_path / "warm", progress=False)
    kept = TopicFit.from_dict(json.loads((warm / "checkpoint" / "topic_fit.json").read_text()))
    assert (tuple(kept.weights), kept.bias, kept.context_weight) == (fitted.weights, fitted.bias, fitted.context_weight)
    assert kept.fitted_on["inherited_from"] == str(served)
    fresh = train(ctr_only, _cfg(tmp_path, epochs=1), tmp_path / "fresh", progress=False)
    prior = TopicFit.from_dict(json.loads((fresh / "checkpoint" / "topic_fit.json").read_text()))
    assert (tuple(prior.weights), prior.bias) == (DEFAULT_FIT.weights, DEFAULT_FIT.bias)
