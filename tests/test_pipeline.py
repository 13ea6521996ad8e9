"""HifiFacePipeline on real photos with a tiny model built and saved here (offline, CPU).

Photos: skimage's astronaut (one face) and insightface's t1.jpg (six people). The model is a tiny
HifiFace (narrow generator, ArcFace r18, full-size 3DMM regressor) with random weights: the tests
check geometry, types, shapes, face choice and errors, not the look of the swap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import insightface_photo, tiny_model_dir
from PIL import Image as PILImage
from skimage import data

from hififace import HifiFace, HifiFacePipeline
from hififace.faces import FaceChoice, align_face, soften_mask, warp_mask_to_image
from hififace.pipeline import (
    AI_METADATA,
    FaceChoiceError,
    FaceSwap,
    ImageTooLargeError,
    InvalidImageError,
    ModelLoadError,
    NoFaceError,
    SourceIdentity,
    SwapError,
    SwapResult,
)

S = 256


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> HifiFacePipeline:
    return HifiFacePipeline.from_pretrained(tiny_model_dir(tmp_path_factory), detector="dlib")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def group_path() -> Path:
    return insightface_photo("t1.jpg")


@pytest.fixture(scope="module")
def source(pipeline, astronaut) -> SourceIdentity:
    return pipeline.encode_source(astronaut)


def test_from_pretrained_loads_the_saved_model(pipeline, tmp_path_factory):
    saved = HifiFace.from_pretrained(tiny_model_dir(tmp_path_factory))
    for (name, a), (_, b) in zip(
        pipeline.model.state_dict().items(), saved.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert not pipeline.model.training
    assert pipeline.device.type == "cpu" and pipeline.dtype == torch.float32
    assert pipeline.to("cpu") is pipeline


@pytest.fixture(scope="module")
def group_swap(pipeline, source, group_path) -> tuple[np.ndarray, SwapResult]:
    """The largest face of the six-person photo swapped, from a numpy array."""
    target = np.asarray(PILImage.open(group_path).convert("RGB"))
    return target, pipeline.swap(source, target)


def test_numpy_swap_keeps_size_type_and_every_pixel_outside_the_mask(source, group_swap):
    target, result = group_swap

    assert isinstance(result, SwapResult)
    assert isinstance(result.image, np.ndarray)
    assert result.image.shape == target.shape and result.image.dtype == np.uint8
    assert len(result.faces) == 1
    face = result.faces[0]
    assert isinstance(face, FaceSwap)
    shapes = {
        "source_crop": ((S, S, 3), np.uint8),
        "target_crop": ((S, S, 3), np.uint8),
        "image_out": ((S, S, 3), np.float32),
        "image": ((S, S, 3), np.float32),
        "image_low": ((S // 4, S // 4, 3), np.float32),
        "mask": ((S, S), np.float32),
        "mask_low": ((S // 4, S // 4), np.float32),
    }
    for name, (shape, dtype) in shapes.items():
        value = getattr(face, name)
        assert value.shape == shape and value.dtype == dtype, name
        if dtype == np.float32:
            assert 0.0 <= value.min() and value.max() <= 1.0, name
    assert face.landmarks.shape == (5, 2) and face.matrix.shape == (2, 3)
    np.testing.assert_array_equal(face.source_crop, source.crop)

    # Everything outside the pasted mask is the input, bit for bit; inside, the face changed.
    alpha = warp_mask_to_image(soften_mask(face.mask, 5, 10), face.matrix, target.shape)
    outside = alpha == 0
    assert outside.mean() > 0.8
    np.testing.assert_array_equal(result.image[outside], target[outside])
    x1, y1, x2, y2 = (int(v) for v in face.box)
    assert np.abs(result.image[y1:y2, x1:x2].astype(int) - target[y1:y2, x1:x2]).mean() > 1.0


def test_pil_path_grayscale_and_rgba_targets_and_a_reused_source(
    pipeline, source, astronaut, tmp_path, monkeypatch
):
    encodes = []
    encode = pipeline.model.encode_source
    monkeypatch.setattr(pipeline.model, "encode_source", lambda x: encodes.append(1) or encode(x))

    pil = PILImage.fromarray(astronaut)
    from_pil = pipeline.swap(astronaut, pil).image  # the source image: its identity computed here
    assert isinstance(from_pil, PILImage.Image) and from_pil.size == pil.size and from_pil.mode == "RGB"
    assert encodes == [1]

    path = tmp_path / "astronaut.png"
    pil.save(path)
    from_path = pipeline.swap(source, path).image  # a SourceIdentity: nothing recomputed
    assert isinstance(from_path, PILImage.Image)
    np.testing.assert_array_equal(np.asarray(from_path), np.asarray(from_pil))
    assert encodes == [1]

    gray = pipeline.swap(source, pil.convert("L")).image
    assert isinstance(gray, PILImage.Image) and gray.size == pil.size

    rgba = np.concatenate([astronaut, np.full(astronaut.shape[:2] + (1,), 255, np.uint8)], axis=2)
    out = pipeline.swap(source, rgba).image
    assert isinstance(out, np.ndarray) and out.shape == astronaut.shape
    assert encodes == [1]


def test_face_choice_modes_on_six_people(pipeline, source, group_path):
    image = np.asarray(PILImage.open(group_path).convert("RGB"))
    faces = pipeline.detect_faces(image)
    assert len(faces) == 6
    every = pipeline.swap(source, group_path, face="all").faces
    assert [f.box for f in every] == [f.box for f in faces]
    assert [f.box[0] for f in every] == sorted(f.box[0] for f in every)

    largest = max(faces, key=lambda f: f.area)
    for face, expected in (("largest", largest), (2, faces[2]), ("4", faces[4])):
        chosen = pipeline.choose_faces(image, faces, pipeline.face_choice(face))
        assert [f.box for f in chosen] == [expected.box]

    # A reference photo of the third person (cut from the group photo) picks that person only.
    x1, y1, x2, y2 = (int(v) for v in faces[2].box)
    w = x2 - x1
    reference = image[max(0, y1 - w) : y2 + w, max(0, x1 - w) : x2 + w]
    strict = HifiFacePipeline(pipeline.model, pipeline.detector, reference_threshold=0.9)
    chosen = strict.swap(source, group_path, face="reference", reference=reference).faces
    assert [f.box for f in chosen] == [faces[2].box]


def test_save_writes_the_ai_generated_marker_and_intermediates(group_swap, tmp_path):
    target, result = group_swap
    path = result.save(tmp_path / "swapped.png")
    with PILImage.open(path) as saved:
        assert saved.size == (target.shape[1], target.shape[0])
        assert saved.text["ai_generated"] == "true"
        assert saved.text == AI_METADATA
    written = result.save_intermediates(tmp_path / "steps")
    names = sorted(p.name for p in written)
    assert names == sorted(
        f"face0_{n}.png"
        for n in ("source_crop", "target_crop", "image_out", "image", "image_low", "mask", "mask_low")
        + ("mask_model", "mask_box", "paste_mask")  # the paste-back masks composite used
    )
    with PILImage.open(tmp_path / "steps" / "face0_mask_low.png") as mask_low:
        assert mask_low.size == (S // 4, S // 4)


def test_bfloat16_autocast_on_cpu_and_float16_refused(pipeline, source, astronaut):
    full = pipeline.swap(source, astronaut)
    half = HifiFacePipeline(pipeline.model, pipeline.detector, dtype="bfloat16")
    weight = half.model.encoder.conv_in.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)  # the fast path of hififace.fast
    out = half.swap(source, astronaut)
    assert out.image.shape == astronaut.shape and out.faces[0].image.dtype == np.float32
    assert np.abs(out.faces[0].image - full.faces[0].image).mean() < 0.02
    with pytest.raises(ValueError, match="float16 needs a GPU"):
        HifiFacePipeline(pipeline.model, pipeline.detector, dtype="float16")
    with pytest.raises(ValueError, match="dtype must be one of"):
        HifiFacePipeline(pipeline.model, pipeline.detector, dtype="int8")


def test_no_face_errors_name_the_image(pipeline, source, astronaut, tmp_path):
    no_face = data.coffee()
    path = tmp_path / "coffee.png"
    PILImage.fromarray(no_face).save(path)
    with pytest.raises(NoFaceError, match=f"no face found in the source image {path}$") as error:
        pipeline.swap(path, astronaut)
    assert error.value.role == "source"
    with pytest.raises(NoFaceError, match="^no face found in the source image$"):
        pipeline.encode_source(no_face)
    with pytest.raises(NoFaceError, match=f"no face found in the target image {path}$"):
        pipeline.swap(source, path)
    with pytest.raises(NoFaceError, match="no face found in the reference image"):
        pipeline.swap(source, astronaut, face="reference", reference=no_face)


def test_bad_files_and_sizes(pipeline, source, astronaut, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a PNG")
    with pytest.raises(InvalidImageError, match="cannot use the target image: .*broken.png: not an image"):
        pipeline.swap(source, broken)
    with pytest.raises(InvalidImageError, match="source image: .*missing.jpg: no such file"):
        pipeline.swap(tmp_path / "missing.jpg", astronaut)
    with pytest.raises(InvalidImageError, match="too small"):
        pipeline.swap(source, np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(InvalidImageError, match="must be a path, a PIL image or a numpy array"):
        pipeline.swap(source, 42)

    small_limit = HifiFacePipeline(pipeline.model, pipeline.detector, max_pixels=200_000)
    with pytest.raises(
        ImageTooLargeError, match=r"target image is 512x512 \(0.3 MP\), larger than the limit of 0.2 MP"
    ):
        small_limit.swap(source, astronaut)
    big = tmp_path / "big.png"
    PILImage.fromarray(astronaut).save(big)
    with pytest.raises(ImageTooLargeError, match=f"the source image {big} is 512x512"):
        small_limit.encode_source(big)
    assert issubclass(ImageTooLargeError, SwapError) and issubclass(InvalidImageError, SwapError)


def test_bad_choices_and_strengths(pipeline, source, astronaut):
    with pytest.raises(FaceChoiceError, match=r"has 1 face; face index 3 is out of range \(0 to 0"):
        pipeline.swap(source, astronaut, face=3)
    with pytest.raises(FaceChoiceError, match="face must be 'largest', 'all', 'reference' or a face index"):
        pipeline.swap(source, astronaut, face="biggest")
    with pytest.raises(FaceChoiceError, match="needs a reference image"):
        pipeline.swap(source, astronaut, face="reference")
    with pytest.raises(SwapError, match="identity_strength must be a number from 0 to 1"):
        pipeline.swap(source, astronaut, identity_strength=1.5)
    with pytest.raises(SwapError, match="shape_strength must be a number from 0 to 1"):
        pipeline.swap(source, astronaut, shape_strength=float("nan"))


def test_strengths_reach_the_generator(pipeline, source, astronaut, monkeypatch):
    seen = []
    forward = pipeline.model.forward

    def spy(*args, **kwargs):
        seen.append((kwargs["identity_strength"], kwargs["shape_strength"]))
        return forward(*args, **kwargs)

    monkeypatch.setattr(pipeline.model, "forward", spy)
    pipeline.swap(source, astronaut, identity_strength=0.25, shape_strength=0.75)
    assert seen == [(0.25, 0.75)]


def test_missing_model_folder(tmp_path):
    with pytest.raises(
        ModelLoadError, match="does not exist; get weights with `hififace convert hififace-pytorch"
    ):
        HifiFacePipeline.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match="no config.json"):
        HifiFacePipeline.from_pretrained(tmp_path)


def test_large_images_are_detected_on_a_smaller_copy(pipeline, astronaut):
    small_side = HifiFacePipeline(pipeline.model, pipeline.detector, detect_max_side=256)
    faces = small_side.detect_faces(astronaut)  # found at 256 px, reported in the 512 px image's pixels
    assert len(faces) == 1
    expected = np.array([(203, 102), (247, 104), (225, 127), (201, 139), (246, 141)], dtype=np.float32)
    assert np.abs(faces[0].landmarks - expected).max() < 6.0
    assert faces[0].box[2] > 250  # box scaled back too (the face spans about x 175 to 266)


# --- the public steps, one by one ------------------------------------------------------------


def test_the_steps_one_by_one_give_what_swap_gives(pipeline, source, group_path):
    image, name = pipeline.read_image(group_path)
    assert name == str(group_path) and image.dtype == np.uint8 and image.ndim == 3
    faces = pipeline.detect_faces(image)
    chosen = pipeline.choose_faces(image, faces, pipeline.face_choice("all"))
    swaps = pipeline.swap_faces(source, [(image, face) for face in chosen])
    composed = pipeline.composite(image, swaps)
    whole = pipeline.swap(source, image, face="all")
    np.testing.assert_array_equal(composed, whole.image)
    for mine, theirs in zip(swaps, whole.faces, strict=True):
        np.testing.assert_array_equal(mine.image, theirs.image)
    # Compositing only some of the faces changes only those.
    first = pipeline.composite(image, swaps[:1])
    alpha = warp_mask_to_image(soften_mask(swaps[1].mask, 5, 10), swaps[1].matrix, image.shape)
    alpha0 = warp_mask_to_image(soften_mask(swaps[0].mask, 5, 10), swaps[0].matrix, image.shape)
    only_second = (alpha > 0) & (alpha0 == 0)
    np.testing.assert_array_equal(first[only_second], image[only_second])


def test_encode_source_with_a_given_face_does_not_detect_again(pipeline, astronaut, source, monkeypatch):
    monkeypatch.setattr(pipeline.detector, "detect", lambda image: pytest.fail("detected again"))
    again = pipeline.encode_source(astronaut, face=source.face)
    np.testing.assert_array_equal(again.crop, source.crop)
    assert torch.equal(again.code.coeffs, source.code.coeffs)
    assert torch.equal(again.code.embedding, source.code.embedding)


def test_encode_crops_and_embed_faces_batch(pipeline, group_path):
    image, _ = pipeline.read_image(group_path)
    faces = pipeline.detect_faces(image)
    embeddings = pipeline.embed_faces(image, faces)
    assert embeddings.shape == (6, 512) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert pipeline.embed_faces(image, []).shape == (0, 512)

    small_batches = HifiFacePipeline(pipeline.model, pipeline.detector, batch_size=4)
    crops = [align_face(image, f.landmarks, S, pipeline.template)[0] for f in faces]
    code = small_batches.encode_crops(crops)  # two calls of the priors: 4 + 2 crops
    assert code.coeffs.shape == (6, 257) and code.embedding.shape == (6, 512)
    one = pipeline.encode_crops(crops[5:])
    torch.testing.assert_close(code.coeffs[5:], one.coeffs, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(code.embedding.numpy(), embeddings, atol=1e-4)


def test_face_choice_embeds_the_reference_once(pipeline, source, group_path, monkeypatch):
    image, _ = pipeline.read_image(group_path)
    faces = pipeline.detect_faces(image)
    x1, y1, x2, y2 = (int(v) for v in faces[4].box)
    w = x2 - x1
    reference = image[max(0, y1 - w) : y2 + w, max(0, x1 - w) : x2 + w]
    calls = []
    embed = pipeline.embed_faces
    monkeypatch.setattr(pipeline, "embed_faces", lambda im, fs: calls.append(len(fs)) or embed(im, fs))
    choice = pipeline.face_choice("reference", reference)
    assert choice.mode == "reference" and calls == [1]
    assert choice.threshold == pipeline.reference_threshold
    assert pipeline.face_choice(choice) is choice
    strict = FaceChoice("reference", reference=choice.reference, threshold=0.9)
    assert [f.box for f in pipeline.choose_faces(image, faces, strict)] == [faces[4].box]
    assert calls == [1, 6]  # every target face embedded in one call
    swapped = pipeline.swap(source, image, face=strict)  # a FaceChoice made once goes to swap as it is
    assert [f.box for f in swapped.faces] == [faces[4].box] and calls == [1, 6, 6]


def test_choose_faces_raises_for_still_images(pipeline, astronaut):
    faces = pipeline.detect_faces(astronaut)
    with pytest.raises(NoFaceError, match="no face found in the target image x.png$"):
        pipeline.choose_faces(astronaut, [], pipeline.face_choice("largest"), name="x.png")
    with pytest.raises(FaceChoiceError, match=r"has 1 face; face index 1 is out of range"):
        pipeline.choose_faces(astronaut, faces, pipeline.face_choice(1))
    nobody = FaceChoice("reference", reference=np.eye(512)[0], threshold=0.99)
    with pytest.raises(NoFaceError, match=r"similar enough to the reference \(threshold 0.99\)"):
        pipeline.choose_faces(astronaut, faces, nobody)


def test_errors_live_in_one_floor_module():
    import hififace.errors as errors
    import hififace.pipeline as pipeline_module

    for name in ("SwapError", "InvalidImageError", "ImageTooLargeError", "NoFaceError", "FaceChoiceError"):
        assert getattr(pipeline_module, name) is getattr(errors, name)
        assert issubclass(getattr(errors, name), ValueError)
    assert pipeline_module.ModelLoadError is errors.ModelLoadError
    from hififace.faces import FaceSelectionError

    assert FaceSelectionError is FaceChoiceError


def test_local_folder_or_hub_id_follows_the_one_rule_of_hififace_hub(tmp_path, tmp_path_factory, monkeypatch):
    from hififace.hub import looks_like_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    # "models/missing" next to a models/ folder is a local path, not the Hub repo "models/missing".
    assert looks_like_path("models/missing") and not looks_like_path("someone/hififace-256")
    with pytest.raises(ModelLoadError, match="model folder models/missing does not exist"):
        HifiFacePipeline.from_pretrained("models/missing")
    # A bare name of an existing folder is local too (no Hub lookup).
    (tmp_path / "tiny").symlink_to(tiny_model_dir(tmp_path_factory))
    assert looks_like_path("tiny")
    assert HifiFacePipeline.from_pretrained("tiny", detector="dlib").image_size == S


# -- issue 15: several requests through the generator together (the app's batches) -------------


def test_swap_request_takes_what_swap_takes():
    import dataclasses
    import inspect

    from hififace.pipeline import SwapRequest

    parameters = inspect.signature(HifiFacePipeline.swap).parameters
    fields = {f.name: f.default for f in dataclasses.fields(SwapRequest)}
    assert list(fields) == [name for name in parameters if name != "self"]
    assert all(
        fields[name] == p.default
        for name, p in parameters.items()
        if p.default is not inspect.Parameter.empty
    )


def test_swap_many_gives_each_request_what_swap_gives_alone(pipeline, astronaut, group_path, monkeypatch):
    from hififace.pipeline import SwapRequest

    requests = [
        SwapRequest(astronaut, group_path, face="all", identity_strength=0.7, shape_strength=0.5,
                    masks="box", mask_padding=0.1),
        SwapRequest([astronaut, astronaut[:, ::-1]], astronaut, mask_erode=2, mask_blur=4),
        SwapRequest(data.coffee(), astronaut),  # no face in the source
        {"source": astronaut, "target": astronaut, "face": "0"},  # the first request's source again
    ]  # fmt: skip
    calls = {"generate": [], "forward": 0, "encode": 0}
    generate, encode = pipeline.model.generate, pipeline.encode_source

    def counted_generate(target, v_sid):
        calls["generate"].append(len(target))
        return generate(target, v_sid)

    def counted_encode(source, face=None):
        calls["encode"] += 1
        return encode(source, face)

    with monkeypatch.context() as patch:
        patch.setattr(pipeline.model, "generate", counted_generate)
        patch.setattr(pipeline, "encode_source", counted_encode)
        results = pipeline.swap_many(requests, max_batch=4)

    # 6 faces at strengths 0.7/0.5 (two calls of at most 4), then the 1 + 1 faces at 1/1 of two
    # requests with different sources in one call (each equal to its request swapped alone, below)
    assert calls["generate"] == [4, 2, 2]
    # the astronaut once for requests 1 and 4; the two-photo source (itself, then each photo); the coffee
    assert calls["encode"] == 5
    assert isinstance(results[2], NoFaceError) and str(results[2]) == "no face found in the source image"
    with pytest.raises(NoFaceError, match="^no face found in the source image$"):
        pipeline.swap(**vars(requests[2]))
    for request, result in zip(requests, results, strict=True):
        if isinstance(result, SwapError):
            continue
        alone = pipeline.swap(**(vars(request) if isinstance(request, SwapRequest) else request))
        assert type(result.image) is type(alone.image)
        batched, single = np.asarray(result.image, np.int16), np.asarray(alone.image, np.int16)
        assert batched.shape == single.shape and np.abs(batched - single).max() <= 1
        assert [f.box for f in result.faces] == [f.box for f in alone.faces]
        for mine, its in zip(result.faces, alone.faces, strict=True):
            assert np.abs(mine.image - its.image).max() < 1e-4
            assert sorted(mine.masks) == sorted(its.masks)
    assert len(results[0].faces) == 6 and sorted(results[0].faces[0].masks) == ["box"]

    assert pipeline.swap_many([]) == []
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        pipeline.swap_many(requests[:1], max_batch=0)
