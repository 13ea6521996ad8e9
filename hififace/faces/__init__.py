"""Faces in whole images: detect, align onto a template, choose, paste back.

    detector = load_detector()                      # insightface SCRFD, else dlib HOG
    faces = select_faces(detector.detect(image), FaceChoice.parse("largest"))
    crop, matrix = align_face(image, faces[0].landmarks, size=256)
    ...                                             # swap the crop, get a mask
    result = paste_back(image, new_crop, soften_mask(mask, erode=5, blur=10), matrix)

Importing this package loads no model.
"""

from hififace.faces.alignment import (
    TEMPLATES,
    align_face,
    alignment_matrix,
    estimate_similarity,
    invert_affine,
    template_points,
    transform_points,
)
from hififace.faces.blend import paste_back, soften_mask, warp_mask_to_image
from hififace.faces.detection import (
    DETECT_MAX_SIDE,
    DetectorUnavailable,
    DlibDetector,
    FaceDetector,
    InsightFaceDetector,
    detection_input,
    five_from_68,
    load_detector,
)
from hififace.faces.selection import (
    FaceChoice,
    FaceChoiceError,
    FaceMap,
    FaceSelectionError,
    cosine_similarity,
    select_faces,
)
from hififace.faces.types import Face, Image, Landmarks5, Landmarks68, Mask, Matrix, sort_left_to_right

__all__ = [
    "DETECT_MAX_SIDE",
    "TEMPLATES",
    "DetectorUnavailable",
    "DlibDetector",
    "Face",
    "FaceChoice",
    "FaceChoiceError",
    "FaceDetector",
    "FaceMap",
    "FaceSelectionError",
    "Image",
    "InsightFaceDetector",
    "Landmarks5",
    "Landmarks68",
    "Mask",
    "Matrix",
    "align_face",
    "alignment_matrix",
    "cosine_similarity",
    "detection_input",
    "estimate_similarity",
    "five_from_68",
    "invert_affine",
    "load_detector",
    "paste_back",
    "select_faces",
    "soften_mask",
    "sort_left_to_right",
    "template_points",
    "transform_points",
    "warp_mask_to_image",
]
