"""Train two towers with closs's CLIP (or SigLIP) loss on scikit-learn's handwritten digits: one
tower embeds the top half of each 8×8 digit, the other the bottom half, and a learnable logit scale
(and SigLIP's bias) is trained with them, as in OpenCLIP. Watch held-out retrieval improve: for each
test digit's top half, is its own bottom half the nearest among all the test bottom halves?

    python3 examples/python/clip_digits.py                  # CLIP, on the GPU when there is one
    python3 examples/python/clip_digits.py --loss siglip
    python3 examples/python/clip_digits.py --epochs 5 --min-accuracy 0.2   # a quick check

Chance is 1 in the number of test digits (450). With --min-accuracy the script exits 1 when the
final top-1 retrieval accuracy is below it or no better than the untrained towers' (the package's
tests run it that way).
"""

import argparse
import math
import pathlib
import sys

import torch

try:
    import closs
except ImportError:  # running from the source tree without installing the package
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "python"))
    import closs

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def tower():
    return torch.nn.Sequential(torch.nn.Linear(32, 128), torch.nn.ReLU(), torch.nn.Linear(128, 32))


def retrieval_accuracy(top, bottom):
    """Top-1: how often a top half's nearest bottom half (cosine) is its own."""
    similarity = torch.nn.functional.normalize(top, dim=1) @ torch.nn.functional.normalize(bottom, dim=1).T
    return (similarity.argmax(1) == torch.arange(len(top), device=top.device)).float().mean().item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", choices=["clip", "siglip"], default="clip")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--min-accuracy", type=float, default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    x = torch.tensor(load_digits().data, dtype=torch.float32) / 16.0  # 8×8 pixels in [0, 1], row-major
    x_train, x_test = (torch.as_tensor(a).to(args.device) for a in train_test_split(x, test_size=0.25,
                                                                                     random_state=0))
    image_tower, text_tower = tower().to(args.device), tower().to(args.device)
    # OpenCLIP's parametrisation: the log of the scale (CLIP: 1/0.07; SigLIP: 10, with a bias of -10).
    log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07 if args.loss == "clip" else 10.0),
                                                device=args.device))
    bias = torch.nn.Parameter(torch.tensor(-10.0, device=args.device))
    loss_fn = closs.ClipLoss() if args.loss == "clip" else closs.SigLipLoss()
    parameters = [*image_tower.parameters(), *text_tower.parameters(), log_scale] + (
        [bias] if args.loss == "siglip" else [])
    optimizer = torch.optim.Adam(parameters, lr=1e-3)

    def evaluate():
        with torch.no_grad():
            return retrieval_accuracy(image_tower(x_test[:, :32]), text_tower(x_test[:, 32:]))

    print("device %s, %s, %d training and %d test digits, chance %.1f%%" % (
        args.device, args.loss, len(x_train), len(x_test), 100 / len(x_test)))
    untrained = evaluate()
    print("epoch   0  loss      -  retrieval %5.1f%%  (untrained towers)" % (100 * untrained))
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(len(x_train), device=args.device)
        total, steps = 0.0, 0
        for start in range(0, len(order), args.batch):
            digits = x_train[order[start:start + args.batch]]
            scale = log_scale.exp()
            image, text = image_tower(digits[:, :32]), text_tower(digits[:, 32:])
            loss = loss_fn(image, text, scale) if args.loss == "clip" else loss_fn(image, text, scale, bias)
            optimizer.zero_grad()
            loss.backward()  # the towers, the log-scale (and the bias) all get their gradients
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        if epoch % 5 == 0 or epoch == args.epochs:
            print("epoch %3d  loss %6.3f  retrieval %5.1f%%  logit scale %.2f" % (
                epoch, total / steps, 100 * evaluate(), log_scale.exp().item()))
    accuracy = evaluate()
    if args.min_accuracy is not None and (accuracy < args.min_accuracy or accuracy <= untrained):
        print("final retrieval accuracy %.3f: below --min-accuracy %.3f or no better than untrained (%.3f)"
              % (accuracy, args.min_accuracy, untrained))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
