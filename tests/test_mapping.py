"""Several photos as one source, and sources mapped onto chosen faces of a group photo and a video."""

from __future__ import annotations

import dataclasses

import av
import numpy as np
import pytest
import torch
from helpers import insightface_photo, tiny_model_dir
from PIL import Image as PILImage
from skimage import data
from test_video import write_clip

from hififace import HifiFacePipeline
from hififace.faces import FaceMap, warp_mask_to_image
from hififace.pipeline import FaceChoiceError, InvalidImageError, NoFaceError, SwapError
from hififace.video import swap_video
from hififace.video.swap import FrameSwapper

# The tiny model's ArcFace has random weights: different people still look alike to it (cosine
# 0.57 to 0.77 between the six faces of t1.jpg), the same face cut out again about 1.
THRESHOLD = 0.9
CHOSEN = (1, 4)  # faces of t1.jpg counted from the left


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> HifiFacePipeline:
    return HifiFacePipeline.from_pretrained(
        tiny_model_dir(tmp_path_factory), detector="dlib", reference_threshold=THRESHOLD
    )


@pytest.fixture(scope="module")
def group() -> np.ndarray:
    return np.asarray(PILImage.open(insightface_photo("t1.jpg")).convert("RGB"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory, pipeline, group) -> dict:
    """Two sources (the astronaut, Tom Hanks) and reference photos cut around two faces of t1.jpg."""
    folder = tmp_path_factory.mktemp("mapping")
    paths = {"astronaut": folder / "astronaut.png", "hanks": insightface_photo("Tom_Hanks_54745.png")}
    PILImage.fromarray(data.astronaut()).save(paths["astronaut"])
    PILImage.fromarray(data.coffee()).save(folder / "coffee.png")
    paths["coffee"] = folder / "coffee.png"
    faces = sorted(pipeline.detect_faces(group), key=lambda f: f.box[0])
    for n in CHOSEN:
        x1, y1, x2, y2 = (int(v) for v in faces[n].box)
        pad = (x2 - x1) // 2
        cut = group[max(y1 - pad, 0) : y2 + pad, max(x1 - pad, 0) : x2 + pad]
        PILImage.fromarray(cut).save(folder / f"ref{n}.png")
        paths[f"ref{n}"] = folder / f"ref{n}.png"
    return paths


def _unchanged_outside(output, target, swaps):
    """Pixels outside every pasted face are the target's, bit for bit."""
    alpha = sum(warp_mask_to_image(s.paste_mask, s.matrix, target.shape) for s in swaps)
    outside = alpha == 0
    np.testing.assert_array_equal(output[outside], target[outside])
    return outside


def test_two_sources_go_to_two_chosen_faces_and_the_others_stay(pipeline, photos, group):
    mapping = {photos["ref1"]: photos["astronaut"], photos["ref4"]: photos["hanks"]}
    result = pipeline.swap(None, group, mapping=mapping)
    assert len(result.faces) == 2
    faces = sorted(pipeline.detect_faces(group), key=lambda f: f.box[0])
    for swap, n, name in zip(result.faces, CHOSEN, ("astronaut", "hanks"), strict=True):
        assert swap.box == pytest.approx(tuple(float(v) for v in faces[n].box))
        expected = pipeline.encode_source(photos[name]).crop
        np.testing.assert_array_equal(swap.source_crop, expected)
    outside = _unchanged_outside(result.image, group, result.faces)
    for n in set(range(len(faces))) - set(CHOSEN):  # the four other people: every pixel kept
        x1, y1, x2, y2 = (int(v) for v in faces[n].box)
        assert outside[y1:y2, x1:x2].all()
        np.testing.assert_array_equal(result.image[y1:y2, x1:x2], group[y1:y2, x1:x2])
    for n in CHOSEN:
        x1, y1, x2, y2 = (int(v) for v in faces[n].box)
        assert (result.image[y1:y2, x1:x2] != group[y1:y2, x1:x2]).any()


def test_face_map_assigns_the_most_similar_reference_above_the_threshold():
    references = np.eye(3)[:2]
    face_map = FaceMap(references, ("a", "b"), threshold=0.5)
    assert face_map.assign(np.array([[0.9, 0.1, 0], [0.2, 0.8, 0.0], [0, 0, 1.0]])) == [0, 1, None]
    with pytest.raises(FaceChoiceError, match="one reference embedding per source"):
        FaceMap(references, ("a",))


def test_mapping_errors_name_the_input(pipeline, photos, group):
    with pytest.raises(NoFaceError, match="coffee.png"):
        pipeline.swap(None, group, mapping={photos["coffee"]: photos["astronaut"]})
    with pytest.raises(FaceChoiceError, match="empty"):
        pipeline.swap(None, group, mapping={})
    with pytest.raises(SwapError, match="either a source or a face mapping"):
        pipeline.swap(photos["astronaut"], group, mapping={photos["ref1"]: photos["astronaut"]})
    with pytest.raises(NoFaceError, match="similar enough to any mapping reference"):
        pipeline.swap(None, data.astronaut(), mapping={photos["ref1"]: photos["hanks"]})


def test_several_photos_average_into_one_source(pipeline, photos, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    PILImage.fromarray(data.astronaut()).save(folder / "a.png")
    # another photo of her: cut differently, darker
    PILImage.fromarray((data.astronaut()[12:, 6:] * 0.85).astype(np.uint8)).save(folder / "b.png")
    one = pipeline.encode_source(folder / "a.png")
    other = pipeline.encode_source(folder / "b.png")
    both = pipeline.encode_source(folder)  # a folder, read in name order; a list does the same
    mean = (one.code.embedding + other.code.embedding) / 2
    mean = mean * ((one.code.embedding.norm() + other.code.embedding.norm()) / 2 / mean.norm())
    torch.testing.assert_close(both.code.embedding, mean)
    torch.testing.assert_close(both.code.coeffs, (one.code.coeffs + other.code.coeffs) / 2)
    np.testing.assert_array_equal(both.crop, one.crop)
    assert both.name == str(folder / "a.png")

    with pytest.raises(SwapError, match="Tom_Hanks_54745.png does not look like the first source"):
        pipeline.encode_source([photos["astronaut"], photos["hanks"]])
    with pytest.raises(NoFaceError, match="coffee.png"):
        pipeline.encode_source([photos["coffee"], photos["astronaut"]])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidImageError, match="holds no images"):
        pipeline.encode_source(tmp_path / "empty")


def test_video_mapping_keeps_each_face_on_its_source(pipeline, photos, group, tmp_path, monkeypatch):
    shifted = np.roll(group, 2, axis=1)
    clip = tmp_path / "group.mp4"
    write_clip(clip, [group, shifted], audio=False)
    with av.open(str(clip)) as container:  # what the swapper decodes (H.264 is lossy)
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    captured = []
    original = av.VideoFrame.from_ndarray

    def capture(array, *args, **kwargs):
        captured.append(np.array(array, copy=True))
        return original(array, *args, **kwargs)

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", capture)
    calls = []
    swap_faces = HifiFacePipeline.swap_faces

    def spy(self, source, faces, *args, **kwargs):
        calls.append((source.name, len(faces)))
        return swap_faces(self, source, faces, *args, **kwargs)

    monkeypatch.setattr(HifiFacePipeline, "swap_faces", spy)
    # references cut from the first decoded frame: H.264 moves the faces' embeddings a little
    # (dlib finds five of the six people there), the leftmost and the rightmost get a source
    found = sorted(pipeline.detect_faces(decoded[0]), key=lambda f: f.box[0])
    assert len(found) >= 4
    references = pipeline.embed_faces(decoded[0], [found[0], found[-1]])
    mapping = [(references[0], photos["astronaut"]), (references[1], photos["hanks"])]
    summary = swap_video(pipeline, None, clip, tmp_path / "out.mp4", mapping=mapping, smoothing=False)
    assert summary.frames == 2 and summary.swapped == 2
    assert sorted(calls) == sorted([(str(photos["astronaut"]), 2), (str(photos["hanks"]), 2)]), calls
    assert len(captured) == 2
    # the other people are untouched in every frame handed to the encoder
    for other in found[1:-1]:
        x1, y1, x2, y2 = (int(v) for v in other.box)
        for frame, original_frame, shift in zip(captured, decoded, (0, 2), strict=True):
            np.testing.assert_array_equal(
                frame[y1:y2, x1 + shift : x2 + shift], original_frame[y1:y2, x1 + shift : x2 + shift]
            )


def test_a_tracked_face_keeps_its_source_without_being_embedded_again(pipeline, group, monkeypatch):
    faces = sorted(pipeline.detect_faces(group), key=lambda f: f.box[0])
    embeddings = pipeline.embed_faces(group, faces)
    face_map = FaceMap(embeddings[[1, 4]], ("first", "second"), threshold=THRESHOLD)
    swapper = FrameSwapper(pipeline, None, None, tracker=None, face_map=face_map)
    chosen, sources = swapper.assign_faces(group, faces)
    assert [faces.index(f) for f in chosen] == [1, 4] and sources == [0, 1]

    # next frame: the same people moved a little; their assignment follows them, unembedded
    moved = [
        dataclasses.replace(f, box=tuple(v + 3 for v in f.box), landmarks=f.landmarks + 3) for f in faces
    ]
    embedded = []
    monkeypatch.setattr(
        pipeline, "embed_faces", lambda image, some: embedded.append(len(some)) or embeddings[[0, 2, 3, 5]]
    )
    chosen, sources = swapper.assign_faces(group, moved)
    assert [moved.index(f) for f in chosen] == [1, 4] and sources == [0, 1]
    assert embedded == [4]  # only the four faces without a source were looked at again
