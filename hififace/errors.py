"""The errors every layer of hififace raises for input it cannot use (imports nothing from hififace).

Every `SwapError` carries a one-line message that names the input and says why; the command line
prints it as it is and the app shows it in a `gr.Error`.
"""

from __future__ import annotations

__all__ = [
    "FaceChoiceError",
    "ImageTooLargeError",
    "InvalidImageError",
    "ModelLoadError",
    "NoFaceError",
    "SwapError",
]


class SwapError(ValueError):
    """An input the pipeline cannot swap; the message says which input and why, in one line."""


class InvalidImageError(SwapError):
    """An image file is missing, unreadable, corrupt or too small."""


class ImageTooLargeError(SwapError):
    """An image (or video frame) has more pixels than the pipeline's `max_pixels`."""


class NoFaceError(SwapError):
    """No (chosen) face was found in an image.

    Attributes:
        role (str): which input: "source", "target" or "reference".
        name (str or None): the file name, when the image came from a file.
    """

    def __init__(self, role: str, name: str | None = None, detail: str = ""):
        self.role = role
        self.name = name
        where = f" {name}" if name else ""
        super().__init__(f"no face found in the {role} image{where}{detail}")


class FaceChoiceError(SwapError):
    """The face choice is invalid for the target (unknown mode, index out of range, no reference)."""


class ModelLoadError(RuntimeError):
    """The model folder or Hub repository cannot be loaded."""
