"""CLIP image path of VLSG: open_clip offline, TAC-style text semantics, the on-disk cache, the digits datamodule.

Everything runs on the tiny registered architecture with random weights (no download, ever)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lightning_kd.data import clip_features
from lightning_kd.data.clip_features import (
    FeatureCache,
    clip_embeddings,
    load_nouns,
    noun_embeddings,
    select_nouns,
    text_semantics,
)
from lightning_kd.data.formats.digits import DigitsCLIPDataModule, load_digits_images
from lightning_kd.nn.clip_encoder import (
    TINY_CLIP,
    CLIPWeightsError,
    encode_images,
    encode_texts,
    load_open_clip,
    open_clip_module,
    register_tiny_clip,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.usefixtures("single_thread")

NOUNS = ["dog", "car", "tree", "house", "cup", "boat", "chair", "apple", "shoe", "bird", "clock", "river"]


@pytest.fixture(scope="module")
def tiny():
    return load_open_clip(TINY_CLIP, None, random_init=True)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    return load_digits_images(60)


@pytest.fixture
def nouns_file(tmp_path: Path) -> str:
    path = tmp_path / "nouns.txt"
    path.write_text("# a comment\n" + "\n".join(NOUNS) + "\n\ndog\n")
    return str(path)


def _dm(tmp_path: Path, nouns_file: str, **kw) -> DigitsCLIPDataModule:
    args = dict(model_name=TINY_CLIP, random_init=True, cache_dir=str(tmp_path / "cache"), nouns_file=nouns_file,
                n_samples=60, encode_device="cpu", batch_size=16)
    args.update(kw)
    return DigitsCLIPDataModule(**args)


def _views(dm: DigitsCLIPDataModule) -> list[np.ndarray]:
    dm.setup("fit")
    return [dm.split("train").inputs[f"view_{v}"].numpy() for v in range(dm.num_views)]


def _refuse(*args, **kwargs):
    raise AssertionError("the CLIP model must not be built")


# -- open_clip -----------------------------------------------------------------------------------------------------
def test_tiny_config_registered_offline_with_the_wheel_tokenizer() -> None:
    register_tiny_clip()
    register_tiny_clip()  # idempotent
    oc = open_clip_module()
    assert oc.list_models().count(TINY_CLIP) == 1
    tok = oc.get_tokenizer(TINY_CLIP)
    assert type(tok).__name__ == "SimpleTokenizer"  # the BPE vocabulary inside the wheel, not a HF download
    assert tok(["a photo of a dog."]).shape == (1, 77)


def test_encode_images_shape_normalisation_and_determinism(tiny, digits) -> None:
    model, prep, _ = tiny
    images = digits[0][:20]
    emb = encode_images(model, images, prep, batch_size=8, max_value=16.0)
    assert emb.shape == (20, 32) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    again, _, _ = load_open_clip(TINY_CLIP, None, random_init=True)
    np.testing.assert_array_equal(encode_images(again, images, prep, max_value=16.0), emb)
    other, _, _ = load_open_clip(TINY_CLIP, None, random_init=True, seed=1)
    assert not np.allclose(encode_images(other, images, prep, max_value=16.0), emb)
    assert prep.size == (32, 32)


def test_8x8_images_are_scaled_resized_and_normalised(tiny, digits) -> None:
    model, prep, _ = tiny
    images = digits[0][:4]
    x = torch.from_numpy(images).float().div(16.0).unsqueeze(1).expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=prep.size, mode=prep.interpolation, align_corners=False).clamp(0, 1)
    x = (x - torch.tensor(prep.mean).view(1, 3, 1, 1)) / torch.tensor(prep.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = F.normalize(model.encode_image(x), dim=-1).numpy()
    np.testing.assert_allclose(encode_images(model, images, prep, max_value=16.0), expected, atol=1e-5)
    np.testing.assert_allclose(encode_images(model, images, prep), expected, atol=1e-5)  # max inferred: 16
    gray = (images * 255 / 16).astype(np.uint8)  # uint8 gray == the same gray replicated to RGB
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    np.testing.assert_allclose(encode_images(model, gray, prep), encode_images(model, rgb, prep), atol=1e-6)
    assert encode_images(model, np.zeros((2, 8, 12), np.uint8), prep).shape == (2, 32)  # shortest side + crop
    with pytest.raises(ValueError, match="images must be"):
        encode_images(model, np.zeros((2, 8)), prep)


def test_text_embeddings_average_the_templates(tiny) -> None:
    model, _, tok = tiny
    one = encode_texts(model, tok, ["a photo of a dog.", "a photo of a car."])
    np.testing.assert_allclose(np.linalg.norm(one, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(noun_embeddings(model, tok, ["dog", "car"], ["a photo of a {}."]), one, atol=1e-6)
    two = noun_embeddings(model, tok, ["dog"], ["a photo of a {}.", "a {} in the street."])
    both = encode_texts(model, tok, ["a photo of a dog.", "a dog in the street."]).mean(0)
    np.testing.assert_allclose(two[0], both / np.linalg.norm(both), atol=1e-6)
    with pytest.raises(ValueError, match="exactly one"):
        noun_embeddings(model, tok, ["dog"], ["no slot"])


# -- TAC-style text semantics ------------------------------------------------------------------------------------------
def test_text_semantics_matches_a_hand_computed_mix() -> None:
    angles = np.array([0.0, 0.5, 2.0, 3.5])
    nouns = np.stack([np.cos(angles), np.sin(angles)], 1)
    images = np.array([[1.0, 0.1], [0.0, 1.0], [-1.0, -0.5]])
    t = 0.3
    out = text_semantics(images, nouns, temperature=t, keep_per_centre=4, n_centres=1)
    cos = (images / np.linalg.norm(images, axis=1, keepdims=True)) @ nouns.T
    w = np.exp(cos / t) / np.exp(cos / t).sum(1, keepdims=True)
    np.testing.assert_allclose(out, w @ nouns, rtol=1e-5, atol=1e-6)
    assert out.dtype == np.float32 and out.shape == (3, 2)
    # a tiny temperature gives the nearest noun
    sharp = text_semantics(images, nouns, temperature=1e-4, keep_per_centre=4, n_centres=1)
    np.testing.assert_allclose(sharp, nouns[cos.argmax(1)], atol=1e-4)


def test_select_nouns_keeps_each_centres_nearest() -> None:
    rng = np.random.default_rng(0)
    nouns = np.eye(4)
    noise = 0.05 * rng.standard_normal((2, 10, 4))
    images = np.concatenate([nouns[0] + noise[0], nouns[2] + noise[1]])
    assert select_nouns(images, nouns, keep_per_centre=1, n_centres=2).tolist() == [0, 2]
    assert select_nouns(images, nouns, keep_per_centre=1, samples_per_centre=10).tolist() == [0, 2]  # 20 // 10 = 2
    assert select_nouns(images, nouns, keep_per_centre=9, n_centres=2).tolist() == [0, 1, 2, 3]  # capped
    with pytest.raises(ValueError, match="temperature"):
        text_semantics(images, nouns, temperature=0)


def test_packaged_nouns(nouns_file: str) -> None:
    nouns = load_nouns()
    assert 500 <= len(nouns) <= 1000 and len(set(nouns)) == len(nouns) and all(n.strip() == n and n for n in nouns)
    assert load_nouns(nouns_file) == NOUNS  # comments, blanks and duplicates dropped
    with pytest.raises(FileNotFoundError, match="nouns_file"):
        load_nouns("/no/such/nouns.txt")


# -- the cache -----------------------------------------------------------------------------------------------------
def test_second_datamodule_loads_the_cache_without_building_the_model(tmp_path: Path, nouns_file: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    first = _views(_dm(tmp_path, nouns_file))
    files = sorted((tmp_path / "cache").glob("*.npz"))
    assert len(files) == 1
    monkeypatch.setattr(clip_features, "load_open_clip", _refuse)
    dm = _dm(tmp_path, nouns_file)
    second = _views(dm)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert dm.feature_dims == {"view_0": 32, "view_1": 32}
    # the temperature only changes the text view, computed from the cached embeddings: no re-encoding
    warm = _views(_dm(tmp_path, nouns_file, text_temperature=0.5))
    np.testing.assert_array_equal(warm[0], first[0])
    assert not np.allclose(warm[1], first[1])
    # views that need no CLIP never look at the weights
    assert _views(_dm(tmp_path, nouns_file, views=["pixels"], random_init=False))[0].shape == (60, 64)
    assert sorted((tmp_path / "cache").glob("*.npz")) == files


def test_cache_key_follows_weights_data_and_vocabulary(tiny, tmp_path: Path, digits) -> None:
    model, _, _ = tiny
    w1, w2 = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(model.state_dict(), w1)
    other, _, _ = load_open_clip(TINY_CLIP, None, random_init=True, seed=5)
    torch.save(other.state_dict(), w2)
    cache = tmp_path / "cache"
    base = dict(data_name="t", model_name=TINY_CLIP, cache_dir=cache, nouns=NOUNS[:4], max_value=16.0)
    runs = [
        dict(pretrained=None, random_init=True),
        dict(pretrained=str(w1)),
        dict(pretrained=str(w2)),
        dict(pretrained=None, random_init=True, templates=["an {}."]),
        dict(pretrained=None, random_init=True, nouns=NOUNS[:5]),
    ]
    outs = [clip_embeddings(digits[0], **{**base, **r}) for r in runs]
    outs.append(clip_embeddings(digits[0][:50], **base, pretrained=None, random_init=True))
    assert len(list(cache.glob("*.npz"))) == len(outs)
    np.testing.assert_allclose(outs[0]["image"], outs[1]["image"], atol=1e-6)  # file of the same weights
    assert outs[5]["image"].shape == (50, 32) and outs[4]["nouns"].shape == (5, 32)
    clip_embeddings(digits[0], **base, pretrained=str(w1))  # a hit: no new file
    assert len(list(cache.glob("*.npz"))) == len(outs)


def test_corrupt_cache_file_is_recomputed(tmp_path: Path, nouns_file: str) -> None:
    first = _views(_dm(tmp_path, nouns_file))
    (path,) = (tmp_path / "cache").glob("*.npz")
    path.write_bytes(b"PK\x03\x04 not really a zip")
    again = _views(_dm(tmp_path, nouns_file))
    for a, b in zip(first, again):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.load(path)["image"].shape == (60, 32)  # overwritten with a readable file
    cache = FeatureCache(tmp_path / "other")
    key = {"a": 1}
    cache.save({"a": 2}, {"x": np.ones(2)})
    cache.path({"a": 2}).rename(cache.path(key))  # right name, wrong stored key
    assert cache.load(key) is None
    assert cache.get_or_compute(key, lambda: {"x": np.zeros(3)})["x"].shape == (3,)
    assert cache.load(key)["x"].shape == (3,)


# -- weights files ---------------------------------------------------------------------------------------------------
def test_weights_from_a_local_file(tiny, tmp_path: Path, digits) -> None:
    model, prep, _ = tiny
    expected = encode_images(model, digits[0][:8], prep, max_value=16.0)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    try:
        from safetensors.torch import save_file

        path = tmp_path / "tiny.safetensors"
        save_file(state, str(path))
    except ImportError:  # pragma: no cover
        path = tmp_path / "tiny.pt"
        torch.save(state, path)
    loaded, prep2, _ = load_open_clip(TINY_CLIP, str(path))
    assert not loaded.training and prep2 == prep
    np.testing.assert_array_equal(encode_images(loaded, digits[0][:8], prep2, max_value=16.0), expected)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ckpt.pt")  # a train ckpt
    loaded, _, _ = load_open_clip(TINY_CLIP, str(tmp_path / "ckpt.pt"))
    np.testing.assert_array_equal(encode_images(loaded, digits[0][:8], prep2, max_value=16.0), expected)


def test_weights_errors_name_the_file_option_and_fix(tmp_path: Path, nouns_file: str) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match=rf"{missing}.*data\.init_args\.pretrained"):
        load_open_clip(TINY_CLIP, str(missing))
    with pytest.raises(FileNotFoundError, match=r"data\.init_args\.pretrained.*ViT-B-32.*random_init: true"):
        load_open_clip(TINY_CLIP, None)
    with pytest.raises(FileNotFoundError, match=r"data\.init_args\.pretrained"):  # also from the datamodule
        _dm(tmp_path, nouns_file, random_init=False).setup("fit")
    with pytest.raises(ValueError, match="only one"):
        _dm(tmp_path, nouns_file, pretrained=str(missing))
    oc = open_clip_module()
    other = oc.create_model(TINY_CLIP, pretrained=None, embed_dim=16)  # another architecture
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(CLIPWeightsError, match=rf"other\.pt.*{TINY_CLIP}"):
        load_open_clip(TINY_CLIP, str(tmp_path / "other.pt"))
    (tmp_path / "junk.safetensors").write_bytes(b"not weights")
    with pytest.raises(CLIPWeightsError, match="junk.safetensors"):
        load_open_clip(TINY_CLIP, str(tmp_path / "junk.safetensors"))
    with pytest.raises(ValueError, match="unknown open_clip model_name"):
        load_open_clip("no-such-model", None, random_init=True)
    with pytest.raises(ValueError, match="schema"):
        load_open_clip("hf-hub:org/model", None, random_init=True)


# -- the datamodule --------------------------------------------------------------------------------------------------
def test_datamodule_batches(tmp_path: Path, nouns_file: str) -> None:
    dm = _dm(tmp_path, nouns_file, views=["image", "text", "pixels"])
    dm.prepare_data()
    dm.setup("fit")
    assert dm.num_views == 3 and dm.num_clusters == 10
    assert dm.feature_dims == {"view_0": 32, "view_1": 32, "view_2": 64}
    batch = next(iter(dm.train_dataloader()))
    assert [tuple(batch.inputs[f"view_{v}"].shape) for v in range(3)] == [(16, 32), (16, 32), (16, 64)]
    assert batch.target.dtype == torch.int64 and batch.target.shape == (16,)
    np.testing.assert_allclose(dm.split("train").inputs["view_0"].mean(0).numpy(), 0.0, atol=1e-5)  # standardised
    _, labels = load_digits_images(60)
    np.testing.assert_array_equal(dm.split("test").target.numpy(), labels)
    with pytest.raises(ValueError, match="views"):
        _dm(tmp_path, nouns_file, views=["image", "colour"])
