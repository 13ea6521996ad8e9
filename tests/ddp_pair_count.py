"""Run by tests/test_train.py under `accelerate launch` (one or two processes): L_rec and L_lpips of one
global batch, split over the processes, through DDP, with the divisor `train_accelerate.pairs_per_process`.

Writes JSON to argv[1]: the mean over processes of the loss, the same with per-process pair counts,
the DDP-averaged gradient of a shared parameter, and (first process) the one-process reference.
"""

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hififace.losses import lpips_loss, reconstruction_loss  # noqa: E402
from train_accelerate import pairs_per_process  # noqa: E402


class Offset(nn.Module):
    """A parameter every image depends on: DDP averages its gradient over the processes."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(3, 16, 16))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images + self.offset


def l1_distance(a: torch.Tensor, b: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    return (a - b).abs().mean(dim=(1, 2, 3), keepdim=True)  # stands in for LPIPS


def objective(model, image, low, target, same, num_pairs) -> torch.Tensor:
    out = model(image)
    rec = reconstruction_loss(out, low, target, same, num_pairs)
    return rec + lpips_loss(l1_distance, out, target, same, num_pairs)


def main(path: str) -> None:
    accelerator = Accelerator()
    g = torch.Generator().manual_seed(0)
    image, target = torch.rand(4, 3, 16, 16, generator=g), torch.rand(4, 3, 16, 16, generator=g)
    low = torch.rand(4, 3, 4, 4, generator=g)
    same = torch.tensor([1.0, 1.0, 1.0, 0.0])  # 2 pairs on the first process, 1 on the second
    per = 4 // accelerator.num_processes
    part = slice(per * accelerator.process_index, per * (accelerator.process_index + 1))

    model = accelerator.prepare(Offset())
    args = (image[part], low[part], target[part], same[part])
    value = objective(model, *args, pairs_per_process(accelerator, same[part]))
    accelerator.backward(value)
    local_count = objective(Offset(), *args, None).detach()  # each process's own mean

    result = {
        "processes": accelerator.num_processes,
        "value": accelerator.reduce(value.detach().reshape(1), reduction="mean").item(),
        "value_with_local_counts": accelerator.reduce(local_count.reshape(1), reduction="mean").item(),
        "grad": accelerator.unwrap_model(model).offset.grad.flatten().tolist(),
    }
    if accelerator.is_main_process:
        reference = Offset()
        single = objective(reference, image, low, target, same, None)
        single.backward()
        result["single_value"] = single.item()
        result["single_grad"] = reference.offset.grad.flatten().tolist()
        Path(path).write_text(json.dumps(result))
    accelerator.wait_for_everyone()
    # tear gloo down before exit: a process leaving with it alive can abort ("terminate called ...")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
