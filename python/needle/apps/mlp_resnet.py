"""The course's MLP ResNet on MNIST-format data: blocks, model, one epoch, training."""
import os

import numpy as np

import needle as ndl
import needle.data  # noqa: F401  (ndl.data)
import needle.nn as nn
import needle.optim  # noqa: F401  (ndl.optim, the default optimizer)

__all__ = ["ResidualBlock", "MLPResNet", "epoch", "train_mnist"]


def ResidualBlock(dim, hidden_dim, norm=nn.BatchNorm1d, drop_prob=0.1):
    """ReLU(x + norm(Linear(Dropout(ReLU(norm(Linear(x))))))), dim -> hidden_dim -> dim."""
    # BEGIN SOLUTION hw2
    return nn.Sequential(
        nn.Residual(
            nn.Sequential(
                nn.Linear(dim, hidden_dim),
                norm(hidden_dim),
                nn.ReLU(),
                nn.Dropout(drop_prob),
                nn.Linear(hidden_dim, dim),
                norm(dim),
            )
        ),
        nn.ReLU(),
    )
    # END SOLUTION


def MLPResNet(dim, hidden_dim=100, num_blocks=3, num_classes=10, norm=nn.BatchNorm1d, drop_prob=0.1):
    """Linear(dim, hidden) -> ReLU -> num_blocks x ResidualBlock(hidden, hidden//2) -> Linear."""
    # BEGIN SOLUTION hw2
    return nn.Sequential(
        nn.Linear(dim, hidden_dim),
        nn.ReLU(),
        *[ResidualBlock(hidden_dim, hidden_dim // 2, norm, drop_prob) for _ in range(num_blocks)],
        nn.Linear(hidden_dim, num_classes),
    )
    # END SOLUTION


def epoch(dataloader, model, opt=None):
    """One pass over ``dataloader``: trains when ``opt`` is given, else evaluates.

    Images are flattened to (batch, features). Returns (error rate, mean loss) over
    the dataset's samples.
    """
    np.random.seed(4)
    # BEGIN SOLUTION hw2
    loss_func = nn.SoftmaxLoss()
    if opt is None:
        model.eval()
    else:
        model.train()
    errors, total_loss, count = 0, 0.0, 0
    for X, y in dataloader:
        if len(X.shape) > 2:
            X = X.reshape((X.shape[0], int(np.prod(X.shape[1:]))))
        if opt is not None:
            opt.reset_grad()
        logits = model(X)
        loss = loss_func(logits, y)
        if opt is not None:
            loss.backward()
            opt.step()
        n = X.shape[0]
        errors += int((logits.numpy().argmax(axis=1) != y.numpy()).sum())
        total_loss += float(loss.numpy()) * n
        count += n
    return errors / count, total_loss / count
    # END SOLUTION


def train_mnist(batch_size=100, epochs=10, optimizer=ndl.optim.Adam, lr=0.001,
                weight_decay=0.001, hidden_dim=100, data_dir="data"):
    """Train MLPResNet(784, hidden_dim) on the idx files in ``data_dir``.

    Returns (train error, train loss, test error, test loss): train numbers from the
    last epoch, test numbers from one evaluation pass at the end.
    """
    np.random.seed(4)
    # BEGIN SOLUTION hw2
    train_set = ndl.data.MNISTDataset(
        os.path.join(data_dir, "train-images-idx3-ubyte.gz"),
        os.path.join(data_dir, "train-labels-idx1-ubyte.gz"),
    )
    test_set = ndl.data.MNISTDataset(
        os.path.join(data_dir, "t10k-images-idx3-ubyte.gz"),
        os.path.join(data_dir, "t10k-labels-idx1-ubyte.gz"),
    )
    train_loader = ndl.data.DataLoader(train_set, batch_size, shuffle=True)
    test_loader = ndl.data.DataLoader(test_set, batch_size)
    model = MLPResNet(784, hidden_dim)
    opt = optimizer(model.parameters(), lr=lr, weight_decay=weight_decay)
    train_err, train_loss = 0.0, 0.0
    for _ in range(epochs):
        train_err, train_loss = epoch(train_loader, model, opt)
    test_err, test_loss = epoch(test_loader, model)
    return train_err, train_loss, test_err, test_loss
    # END SOLUTION
