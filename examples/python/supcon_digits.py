"""Train a small embedding network with closs's SupCon loss on scikit-learn's handwritten digits
(8×8 images, 10 classes, shipped with scikit-learn: no download), and watch a k-nearest-neighbour
classifier on the embeddings get better.

    python3 examples/python/supcon_digits.py            # on the GPU when there is one, else the CPU
    python3 examples/python/supcon_digits.py --epochs 5 --min-accuracy 0.8   # a quick check

Each step takes a batch of digits, makes two noisy views of each (pixel noise and dropout), embeds
them into 16 dimensions, and pulls views of the same digit class together with SupCon (labels are
the classes). The k-NN accuracy is measured on a held-out quarter of the data, from embeddings of
the clean images; chance is 10%. With --min-accuracy the script exits 1 when the final accuracy is
below it or no better than the untrained network's (the package's tests run it that way).
"""

import argparse
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


def knn_accuracy(train_embeddings, train_labels, test_embeddings, test_labels, k=5):
    """Majority vote of the k most cosine-similar training embeddings."""
    a = torch.nn.functional.normalize(test_embeddings, dim=1)
    b = torch.nn.functional.normalize(train_embeddings, dim=1)
    nearest = (a @ b.T).topk(k, dim=1).indices
    votes = torch.nn.functional.one_hot(train_labels[nearest], 10).sum(1)
    return (votes.argmax(1) == test_labels).float().mean().item()


def views(images, generator):
    """A noisy copy: Gaussian pixel noise and a random tenth of the pixels dropped."""
    noise = 0.3 * torch.randn(images.shape, generator=generator, device=images.device)
    keep = torch.rand(images.shape, generator=generator, device=images.device) > 0.1
    return (images + noise) * keep


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=256, help="digits per step (two views each)")
    parser.add_argument("--temperature", type=float, default=0.1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--min-accuracy", type=float, default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0  # pixels in [0, 1]
    y = torch.tensor(digits.target)
    x_train, x_test, y_train, y_test = (torch.as_tensor(a).to(args.device) for a in
                                        train_test_split(x, y, test_size=0.25, random_state=0, stratify=y))
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128),
                                torch.nn.ReLU(), torch.nn.Linear(128, 16)).to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = closs.SupConLoss(temperature=args.temperature)
    generator = torch.Generator(device=args.device).manual_seed(1)

    def evaluate():
        model.eval()
        with torch.no_grad():
            accuracy = knn_accuracy(model(x_train), y_train, model(x_test), y_test)
        model.train()
        return accuracy

    print("device %s, %d training and %d test digits, chance 10%%" % (args.device, len(x_train), len(x_test)))
    untrained = evaluate()
    print("epoch   0  loss      -  k-NN accuracy %5.1f%%  (untrained network)" % (100 * untrained))
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(len(x_train), device=args.device, generator=generator)
        total, steps = 0.0, 0
        for start in range(0, len(order), args.batch):
            batch = order[start:start + args.batch]
            images, labels = x_train[batch], y_train[batch]
            features = torch.stack([model(views(images, generator)), model(views(images, generator))], dim=1)
            loss = loss_fn(features, labels)  # (B, 2, 16): the official SupContrast layout
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        if epoch % 5 == 0 or epoch == args.epochs:
            print("epoch %3d  loss %6.3f  k-NN accuracy %5.1f%%" % (epoch, total / steps, 100 * evaluate()))
    accuracy = evaluate()
    if args.min_accuracy is not None and (accuracy < args.min_accuracy or accuracy <= untrained):
        print("final accuracy %.3f: below --min-accuracy %.3f or no better than untrained (%.3f)"
              % (accuracy, args.min_accuracy, untrained))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
