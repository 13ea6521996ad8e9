"""The 3D shape-aware identity v_sid of HifiFace (paper §3.1, Eq. 1).

v_sid = [c_fuse, v_id]: c_fuse takes the source's 3DMM identity (shape) coefficients and every
other coefficient of the target (expression, texture, pose, lighting, translation); v_id is the
source's L2-normalised ArcFace embedding. Both networks are frozen priors: always in eval mode,
never trained, but differentiable with respect to their input images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hififace.priors.arcface import ArcFace
from hififace.priors.face3d import Face3DRegressor


@dataclass
class IdentityCode:
    """What the priors say about a face: 3DMM coefficients (B, 257) and ArcFace embedding (B, 512)."""

    coeffs: torch.Tensor
    embedding: torch.Tensor

    def __len__(self) -> int:
        return self.coeffs.shape[0]


class ShapeAwareIdentity(nn.Module):
    """Frozen F_3d (Deep3DFaceRecon regressor) and F_id (ArcFace) that make v_sid.

    Args:
        arcface_depth (int, 100): IResNet depth of F_id.
        face3d_input_size (int, 256): size F_3d sees.
        coeff_dims (list[int], [80, 64, 80, 3, 27, 2, 1]): 3DMM coefficient groups; the first is identity.
        embedding_dim (int, 512): ArcFace embedding size.
    """

    def __init__(
        self,
        arcface_depth: int = 100,
        face3d_input_size: int = 256,
        coeff_dims: list[int] | None = None,
        embedding_dim: int = 512,
    ):
        super().__init__()
        coeff_dims = list(coeff_dims or (80, 64, 80, 3, 27, 2, 1))
        self.num_id_coeffs = coeff_dims[0]
        self.face3d = Face3DRegressor(input_size=face3d_input_size, coeff_dims=coeff_dims)
        self.arcface = ArcFace(depth=arcface_depth, embedding_dim=embedding_dim)
        self.dim = sum(coeff_dims) + embedding_dim
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> ShapeAwareIdentity:
        return super().train(False)  # frozen priors: batch norm statistics and dropout stay fixed

    def encode(self, images: torch.Tensor) -> IdentityCode:
        """3DMM coefficients and ArcFace embeddings of aligned faces (B, 3, S, S) in [0, 1]."""
        return IdentityCode(coeffs=self.face3d(images), embedding=self.arcface.embed(images))

    def fuse(
        self,
        source: IdentityCode,
        target: torch.Tensor,
        shape_strength: float = 1.0,
        identity_strength: float = 1.0,
    ) -> torch.Tensor:
        """v_sid for the target images, with the source's (interpolated) shape and identity.

        c_id = a·c_s + (1 − a)·c_t and v_id = b·v_s + (1 − b)·v_t with a = shape_strength and
        b = identity_strength (1, 1 is the plain swap). A source code of batch 1 serves any batch.
        """
        c_t = self.face3d(target)
        c_s, v_id = source.coeffs, source.embedding
        if len(source) == 1 and target.shape[0] != 1:
            c_s, v_id = c_s.expand(target.shape[0], -1), v_id.expand(target.shape[0], -1)
        elif len(source) != target.shape[0]:
            raise ValueError(f"{len(source)} source faces for {target.shape[0]} targets")
        n = self.num_id_coeffs
        c_id = shape_strength * c_s[:, :n] + (1 - shape_strength) * c_t[:, :n]
        if identity_strength != 1.0:
            v_id = identity_strength * v_id + (1 - identity_strength) * self.arcface.embed(target)
        return torch.cat([c_id, c_t[:, n:], v_id], dim=1)

    def forward(
        self,
        source: torch.Tensor,
        target: torch.Tensor,
        shape_strength: float = 1.0,
        identity_strength: float = 1.0,
    ) -> torch.Tensor:
        """v_sid (B, 769) for aligned source and target faces in [0, 1]."""
        return self.fuse(self.encode(source), target, shape_strength, identity_strength)
