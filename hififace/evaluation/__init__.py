"""Quality evaluation of face swaps: the metrics of the HifiFace paper's FaceForensics++ protocol.

    from hififace.evaluation import evaluate, pair_folders
    pairs, _ = pair_folders("sources/", "targets/")
    result = evaluate(pairs, "eval-out", model="models/hififace-256")
    print(result.summary["metrics"]["id_retrieval"]["mean"])

Command line: ``hififace evaluate``. Metrics (`hififace.evaluation.metrics`): identity cosine and
ID retrieval (with a recognizer chosen by name: dlib, arcface, insightface), pose error from
landmarks (PnP) and from 3DMM angles, expression error from 3DMM coefficients and from landmarks,
shape error from 3DMM identity coefficients, FID (with pytorch-fid, when available).

Importing this package loads no model.
"""

from hififace.evaluation.metrics import (
    INNER_LANDMARKS,
    angle_difference,
    coefficient_distance,
    landmark_expression_error,
    normalize_shape,
    pose_error,
    retrieval_hits,
    summarize,
)
from hififace.evaluation.pairs import Pair, load_reference, pair_folders, read_pairs_csv
from hififace.evaluation.pose import (
    HEAD_MODEL_3D,
    euler_from_rotation,
    face3d_head_pose,
    inplane_angle,
    landmark_head_pose,
    rotation_from_euler,
)
from hififace.evaluation.recognizers import (
    RECOGNIZERS,
    ArcFaceRecognizer,
    DlibRecognizer,
    InsightFaceRecognizer,
    Recognizer,
    RecognizerUnavailable,
    load_recognizer,
)
from hififace.evaluation.runner import METRICS, EvaluationResult, evaluate
from hififace.faces import cosine_similarity  # the identity metric's formula, one for the package

__all__ = [
    "HEAD_MODEL_3D",
    "INNER_LANDMARKS",
    "METRICS",
    "RECOGNIZERS",
    "ArcFaceRecognizer",
    "DlibRecognizer",
    "EvaluationResult",
    "InsightFaceRecognizer",
    "Pair",
    "Recognizer",
    "RecognizerUnavailable",
    "angle_difference",
    "coefficient_distance",
    "cosine_similarity",
    "euler_from_rotation",
    "evaluate",
    "face3d_head_pose",
    "inplane_angle",
    "landmark_expression_error",
    "landmark_head_pose",
    "load_recognizer",
    "load_reference",
    "normalize_shape",
    "pair_folders",
    "pose_error",
    "read_pairs_csv",
    "retrieval_hits",
    "rotation_from_euler",
    "summarize",
]
