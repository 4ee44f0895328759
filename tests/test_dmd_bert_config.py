"""configs/dmd/mosi_aligned_bert.yaml: DMD with a fine-tuned local BERT on the file's ``text_bert`` token ids."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY_MODEL_ARGS, resolved_config
from lightning_kd.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")
BERT_CONFIG = ROOT / "configs/dmd/mosi_aligned_bert.yaml"


def _tiny_bert(path: Path) -> Path:
    """A randomly initialised 1-layer BERT written by transformers; vocabulary of bert-base-uncased (the
    generator's ids go up to 30000)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                     vocab_size=30522, max_position_embeddings=64)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(path)
    return path


def _args(data: Path, tmp_path: Path) -> list[str]:
    return ["fit", "-c", str(BERT_CONFIG), "--data.init_args.path", str(data), *TINY_MODEL_ARGS,
            "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")]


@pytest.mark.slow
def test_bert_config_fine_tunes_the_local_bert(tiny_mmsa_aligned: Path, tmp_path: Path) -> None:
    bert = _tiny_bert(tmp_path / "bert")
    main([*_args(tiny_mmsa_aligned, tmp_path), "--model.init_args.net.text_encoder", str(bert),
          "--trainer.max_epochs=1", "--test_after_fit=true"])
    run = tmp_path / "runs/dmd/mosi_aligned_bert/version_0"
    state = torch.load(run / "checkpoints/last.ckpt", weights_only=False)["state_dict"]
    from transformers import BertModel

    init = BertModel.from_pretrained(bert, local_files_only=True, add_pooling_layer=False).state_dict()
    bert_keys = [k for k in state if k.startswith("net.text_model.model.")]
    assert len(bert_keys) == len(init)
    changed = [k for k in bert_keys if not torch.equal(state[k], init[k.removeprefix("net.text_model.model.")])]
    assert len(changed) > len(bert_keys) // 2, "BERT must be fine-tuned (its weights change)"
    assert (run / "test_metrics.json").is_file()


def test_bert_config_fast_dev_run(tiny_mmsa_aligned: Path, tmp_path: Path) -> None:
    bert = _tiny_bert(tmp_path / "bert")
    main([*_args(tiny_mmsa_aligned, tmp_path), "--model.init_args.net.text_encoder", str(bert),
          "--trainer.fast_dev_run=1"])


def test_missing_bert_directory_is_one_line(tiny_mmsa_aligned: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no_bert"
    with pytest.raises(SystemExit) as exc:
        main([*_args(tiny_mmsa_aligned, tmp_path), "--model.init_args.net.text_encoder", str(missing)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err and "--model.init_args.net.text_encoder" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.ckpt"))


def test_token_ids_without_text_encoder_is_one_line(tiny_mmsa_aligned: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fit", "-c", str(ROOT / "configs/dmd/mosi_aligned.yaml"), "--data.init_args.path", str(tiny_mmsa_aligned),
              "--data.init_args.text=bert_ids", *TINY_MODEL_ARGS,
              "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--model.init_args.net.text_encoder" in err


def test_bert_config_differs_from_features_config_only_in_the_text_path() -> None:
    """Every official value is shared with mosi_aligned.yaml; only the text input and the run name differ."""
    bert = resolved_config("-c", str(BERT_CONFIG))
    feats = resolved_config("-c", str(ROOT / "configs/dmd/mosi_aligned.yaml"))
    assert bert["data"]["init_args"].pop("text") == "bert_ids" and feats["data"]["init_args"].pop("text") == "features"
    m, f = bert["model"]["init_args"]["net"], feats["model"]["init_args"]["net"]
    assert m.pop("text_encoder") and f.pop("text_encoder") is None
    assert m.pop("finetune_text") is True and f.pop("finetune_text") is True and bert["model"]["init_args"]["lr"] == 1e-4
    assert bert["trainer"]["logger"]["init_args"].pop("name") == "dmd/mosi_aligned_bert"
    feats["trainer"]["logger"]["init_args"].pop("name")
    assert bert == feats
