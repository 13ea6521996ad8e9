"""Head pose (yaw, pitch, roll in degrees) from 68 landmarks (PnP) and from 3DMM coefficients.

One convention for both estimators, so their numbers can be read side by side: the rotation of the
head in OpenCV's camera frame (x right, y down, z away from the camera), written as
R = Rz(roll) · Ry(yaw) · Rx(pitch), with the head's own axes x = towards the image's right in a
frontal view (the subject's left), y = down (forehead to chin), z = from the face into the head.
A frontal face looking into the camera is (0, 0, 0). Signs:

- yaw > 0: the face turns towards the image's left (the subject's right);
- pitch > 0: the face looks down (forehead towards the camera, chin away);
- roll > 0: the face is rotated clockwise as displayed. Rotating an image by φ degrees clockwise
  about its centre adds exactly φ to the roll (that rotation is a rotation of the camera about its
  optical axis), and mirroring an image negates yaw and roll.

`landmark_head_pose` fits the generic 3D face `HEAD_MODEL_3D` to twelve of dlib's 68 points with
`cv2.solvePnP` (pinhole camera, focal length = the image's longer side, principal point = the
image centre, no distortion). `face3d_head_pose` reads the angles Deep3DFaceRecon regresses from an
aligned crop and puts back the in-plane rotation the alignment removed, so that both estimators
give the pose of the face in the original image.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from hififace.faces.types import Landmarks68, Matrix

# The generic 3D face of the PnP fit, in millimetres, in the head frame of the module docstring,
# origin at the nose tip; keys are 0-based iBUG 300-W indices (dlib's 68-point predictor).
# Written for this project from average adult facial proportions (the anthropometric norms of
# Farkas, rounded): outer eye corners 90 mm apart (ex–ex), inner corners 32 mm (en–en), mouth
# corners 52 mm (ch–ch), nostril edges 30 mm, nasion 42 mm above the nose tip and the chin 75 mm
# below it, mouth corners 24 mm below it; the depths (behind the nose tip) are estimates of a
# typical profile: bridge 20, inner eye corners 28, outer eye corners 44, nose base 13–15, mouth
# corners 30, chin 28. Symmetric about x = 0, so a mirrored face gets the mirrored pose.
# Points that move most with expression (brows, lips, jaw line apart from the chin) are left out.
HEAD_MODEL_3D: dict[int, tuple[float, float, float]] = {
    8: (0.0, 75.0, 28.0),  # chin (menton)
    27: (0.0, -42.0, 20.0),  # top of the nose bridge (nasion)
    30: (0.0, 0.0, 0.0),  # nose tip (pronasale)
    31: (-15.0, 3.0, 13.0),  # nostril edge, image left
    33: (0.0, 5.0, 15.0),  # nose base (subnasale)
    35: (15.0, 3.0, 13.0),  # nostril edge, image right
    36: (-45.0, -36.0, 44.0),  # outer corner of the image-left eye (exocanthion)
    39: (-16.0, -35.0, 28.0),  # inner corner of the image-left eye (endocanthion)
    42: (16.0, -35.0, 28.0),  # inner corner of the image-right eye
    45: (45.0, -36.0, 44.0),  # outer corner of the image-right eye
    48: (-26.0, 24.0, 30.0),  # mouth corner, image left (cheilion)
    54: (26.0, 24.0, 30.0),  # mouth corner, image right
}

Pose = tuple[float, float, float]  # (yaw, pitch, roll) in degrees


def euler_from_rotation(rotation: np.ndarray) -> Pose:
    """(yaw, pitch, roll) in degrees of a 3×3 rotation R = Rz(roll) · Ry(yaw) · Rx(pitch)."""
    r = np.asarray(rotation, dtype=np.float64)
    yaw = math.asin(float(np.clip(-r[2, 0], -1.0, 1.0)))
    pitch = math.atan2(r[2, 1], r[2, 2])
    roll = math.atan2(r[1, 0], r[0, 0])
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def rotation_from_euler(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The 3×3 rotation Rz(roll) · Ry(yaw) · Rx(pitch) of angles in degrees."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    rot_x = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rot_y = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rot_z = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rot_z @ rot_y @ rot_x


def landmark_head_pose(landmarks68: Landmarks68, image_size: tuple[int, int]) -> Pose:
    """Head pose of a face from its 68 landmarks, by a PnP fit of `HEAD_MODEL_3D`.

    Args:
        landmarks68 ((68, 2) array): iBUG points in pixels of the image.
        image_size ((height, width)): the image's size; the camera has focal length max(h, w)
            and its principal point at the centre.

    Returns:
        (yaw, pitch, roll) in degrees, in the convention of the module docstring.
    """
    points = np.asarray(landmarks68, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {points.shape}")
    height, width = image_size
    focal = float(max(height, width))
    camera = np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
    indices = list(HEAD_MODEL_3D)
    model = np.array([HEAD_MODEL_3D[i] for i in indices], dtype=np.float64)
    image_points = points[indices]
    # EPnP gives a closed-form start; Levenberg-Marquardt refines it (alone it can fall into the
    # mirror solution behind the camera).
    ok, rvec, tvec = cv2.solvePnP(model, image_points, camera, None, flags=cv2.SOLVEPNP_EPNP)
    if not ok:
        raise ValueError("the PnP fit of the 3D face model to the landmarks failed")
    ok, rvec, tvec = cv2.solvePnP(
        model, image_points, camera, None, rvec, tvec, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE
    )
    if not ok or tvec[2, 0] <= 0:
        raise ValueError("the PnP fit of the 3D face model to the landmarks failed")
    rotation, _ = cv2.Rodrigues(rvec)
    return euler_from_rotation(rotation)


def inplane_angle(matrix: Matrix) -> float:
    """The rotation, in degrees, that an image→crop affine (2, 3) matrix applies (clockwise as displayed)."""
    m = np.asarray(matrix, dtype=np.float64)
    return math.degrees(math.atan2(m[1, 0], m[0, 0]))


def face3d_head_pose(angles: np.ndarray, matrix: Matrix | None = None) -> Pose:
    """Head pose in the original image from Deep3DFaceRecon's angles of an aligned crop.

    Deep3DFaceRecon's frame (BFM: x right, y up, z towards the camera) is ours flipped in y and
    z, so its R = Rz(z) · Ry(y) · Rx(x) is our Rz(−z) · Ry(−y) · Rx(x): pitch = x, yaw = −y,
    roll = −z. The alignment turned the face by `inplane_angle(matrix)`; that in-plane turn is a
    rotation about the camera's optical axis and is taken back out of the roll.

    Args:
        angles ((3,) array): the 3DMM angle coefficients (x, y, z) in radians (`coeff_part(c, "angle")`).
        matrix ((2, 3) array, optional): the image→crop matrix of `align_face`; None when the
            crop is the image.

    Returns:
        (yaw, pitch, roll) in degrees, in the convention of the module docstring.
    """
    x, y, z = (math.degrees(float(v)) for v in np.asarray(angles, dtype=np.float64).reshape(3))
    in_crop = rotation_from_euler(-y, x, -z)
    if matrix is None:
        return euler_from_rotation(in_crop)
    undo = rotation_from_euler(0.0, 0.0, -inplane_angle(matrix))
    return euler_from_rotation(undo @ in_crop)
