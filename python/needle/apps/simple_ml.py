"""The course's simple_ml helpers: MNIST parsing, softmax loss and a two-layer
network epoch written directly with needle tensors (no nn, no optim); and the CIFAR-10
and Penn Treebank training loops on nn modules and optimizers (one epoch, training,
evaluation)."""
import numpy as np

import needle as ndl
import needle.nn as nn
import needle.optim  # noqa: F401  (ndl.optim, the default optimizer)
from needle.data.datasets.mnist_dataset import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx
from needle.data.datasets.ptb_dataset import get_batch

__all__ = ["parse_mnist", "softmax_loss", "nn_epoch", "epoch_general_cifar10", "train_cifar10",
           "evaluate_cifar10", "epoch_general_ptb", "train_ptb", "evaluate_ptb"]


def parse_mnist(image_filename, label_filename):
    """Read MNIST-format idx files (gzip or plain).

    Returns:
        X: float32 (num_examples, rows*cols) with values in [0, 1].
        y: uint8 (num_examples,) class labels.
    """
    # BEGIN SOLUTION hw2
    images = read_idx(image_filename, IDX_IMAGES_MAGIC)
    labels = read_idx(label_filename, IDX_LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{image_filename} holds {images.shape[0]} images but {label_filename} "
            f"holds {labels.shape[0]} labels"
        )
    X = images.reshape(images.shape[0], -1).astype(np.float32)
    X /= 255.0
    return X, labels.copy()
    # END SOLUTION


def softmax_loss(Z, y_one_hot):
    """Mean softmax (cross-entropy) loss of logits Z (B, k) against one-hot labels (B, k)."""
    # BEGIN SOLUTION hw2
    batch_size = Z.shape[0]
    lse = ndl.ops.log(ndl.ops.summation(ndl.ops.exp(Z), axes=(1,)))
    zy = ndl.ops.summation(Z * y_one_hot, axes=(1,))
    return ndl.ops.summation(lse - zy) / batch_size
    # END SOLUTION


def nn_epoch(X, y, W1, W2, lr=0.1, batch=100):
    """One epoch of minibatch SGD on logits = relu(X W1) W2, in order (no shuffling).

    X: numpy (num_examples, input_dim); y: numpy class labels; W1, W2: Tensors.
    Returns the updated (W1, W2) as new leaf Tensors.
    """
    # BEGIN SOLUTION hw2
    num_examples = X.shape[0]
    num_classes = W2.shape[1]
    for start in range(0, num_examples, batch):
        X_batch = ndl.Tensor(X[start : start + batch], dtype=W1.dtype, requires_grad=False)
        y_batch = np.asarray(y[start : start + batch]).astype(np.int64)
        one_hot = np.zeros((y_batch.shape[0], num_classes), dtype=np.float32)
        one_hot[np.arange(y_batch.shape[0]), y_batch] = 1
        y_one_hot = ndl.Tensor(one_hot, dtype=W1.dtype, requires_grad=False)
        Z = ndl.ops.relu(X_batch @ W1) @ W2
        loss = softmax_loss(Z, y_one_hot)
        loss.backward()
        W1 = ndl.Tensor(W1.realize_cached_data() - lr * W1.grad.realize_cached_data())
        W2 = ndl.Tensor(W2.realize_cached_data() - lr * W2.grad.realize_cached_data())
    return W1, W2
    # END SOLUTION


def epoch_general_cifar10(dataloader, model, loss_fn=nn.SoftmaxLoss(), opt=None):
    """One pass over ``dataloader``: trains when ``opt`` is given, else evaluates.

    With ``opt``, the model is put in train mode and each batch updates its parameters
    (reset_grad, backward, step); without, it is put in eval mode and only the loss and
    accuracy are computed. ``loss_fn`` is a loss module instance. The batches go to the
    model as the loader yields them (images (B, 3, 32, 32)).

    Returns (average accuracy, average loss) over the samples seen: each batch's mean loss
    weighted by its size.
    """
    np.random.seed(4)
    # BEGIN SOLUTION hw4
    if opt is None:
        model.eval()
    else:
        model.train()
    correct, total_loss, count = 0, 0.0, 0
    for X, y in dataloader:
        if opt is not None:
            opt.reset_grad()
        logits = model(X)
        loss = loss_fn(logits, y)
        if opt is not None:
            loss.backward()
            opt.step()
        n = X.shape[0]
        correct += int((logits.numpy().argmax(axis=1) == y.numpy()).sum())
        total_loss += float(loss.numpy()) * n
        count += n
    return correct / count, total_loss / count
    # END SOLUTION


def train_cifar10(model, dataloader, n_epochs=1, optimizer=ndl.optim.Adam,
                  lr=0.001, weight_decay=0.001, loss_fn=nn.SoftmaxLoss):
    """Trains ``model`` for ``n_epochs`` epochs with ``optimizer(model.parameters(), lr=lr,
    weight_decay=weight_decay)`` and the loss ``loss_fn()`` (a loss module class).

    Returns (average accuracy, average loss) over the dataset in the last epoch.
    """
    np.random.seed(4)
    # BEGIN SOLUTION hw4
    opt = optimizer(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_module = loss_fn()
    avg_acc, avg_loss = 0.0, 0.0
    for _ in range(n_epochs):
        avg_acc, avg_loss = epoch_general_cifar10(dataloader, model, loss_module, opt)
    return avg_acc, avg_loss
    # END SOLUTION


def evaluate_cifar10(model, dataloader, loss_fn=nn.SoftmaxLoss):
    """One pass of ``model`` in eval mode over ``dataloader`` with the loss ``loss_fn()`` (a
    loss module class), without updates. Returns (average accuracy, average loss)."""
    np.random.seed(4)
    # BEGIN SOLUTION hw4
    return epoch_general_cifar10(dataloader, model, loss_fn())
    # END SOLUTION


def _detach_state(h):
    """The recurrent state h (a Tensor, or a tuple of them for an LSTM) cut from its graph."""
    if h is None:
        return None
    return tuple(t.detach() for t in h) if isinstance(h, tuple) else h.detach()


def epoch_general_ptb(data, model, seq_len=40, loss_fn=nn.SoftmaxLoss(), opt=None, clip=None,
                      device=None, dtype="float32"):
    """One pass over batchified token ids ``data`` (nbatch, batch_size) in windows of
    ``seq_len`` rows (``get_batch``): trains when ``opt`` is given (clipping the gradient
    norm to ``clip`` when given), else evaluates. The recurrent state carries from one
    window to the next, detached (truncated backpropagation through time).

    Returns (average accuracy, average loss) over every predicted token.
    """
    np.random.seed(4)
    # BEGIN SOLUTION hw5
    if opt is None:
        model.eval()
    else:
        model.train()
    correct, total_loss, count = 0, 0.0, 0
    h = None
    for i in range(0, data.shape[0] - 1, seq_len):
        X, y = get_batch(data, i, seq_len, device=device, dtype=dtype)
        logits, h = model(X, h)
        h = _detach_state(h)
        loss = loss_fn(logits, y)
        if opt is not None:
            opt.reset_grad()
            loss.backward()
            if clip is not None:
                opt.clip_grad_norm(clip)
            opt.step()
        n = y.shape[0]
        correct += int((logits.numpy().argmax(axis=1) == y.numpy()).sum())
        total_loss += float(loss.numpy()) * n
        count += n
    return correct / count, total_loss / count
    # END SOLUTION


def train_ptb(model, data, seq_len=40, n_epochs=1, optimizer=ndl.optim.SGD, lr=4.0,
              weight_decay=0.0, loss_fn=nn.SoftmaxLoss, clip=None, device=None, dtype="float32"):
    """Trains the language model ``model`` on batchified ``data`` for ``n_epochs`` with
    ``optimizer(model.parameters(), lr=lr, weight_decay=weight_decay)`` and the loss
    ``loss_fn()`` (a loss module class). Returns (average accuracy, average loss) of the
    last epoch."""
    np.random.seed(4)
    # BEGIN SOLUTION hw5
    opt = optimizer(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_module = loss_fn()
    avg_acc, avg_loss = 0.0, 0.0
    for _ in range(n_epochs):
        avg_acc, avg_loss = epoch_general_ptb(data, model, seq_len, loss_module, opt, clip,
                                              device, dtype)
    return avg_acc, avg_loss
    # END SOLUTION


def evaluate_ptb(model, data, seq_len=40, loss_fn=nn.SoftmaxLoss, device=None, dtype="float32"):
    """One pass of ``model`` in eval mode over batchified ``data`` with the loss
    ``loss_fn()`` (a loss module class), without updates. Returns (average accuracy,
    average loss)."""
    np.random.seed(4)
    # BEGIN SOLUTION hw5
    return epoch_general_ptb(data, model, seq_len, loss_fn(), device=device, dtype=dtype)
    # END SOLUTION


def loss_err(h, y):
    """Helper: (softmax loss, error rate) of logits h (Tensor) against labels y (numpy)."""
    y = np.asarray(y).astype(np.int64)
    y_one_hot = np.zeros((y.shape[0], h.shape[-1]), dtype=np.float32)
    y_one_hot[np.arange(y.size), y] = 1
    y_ = ndl.Tensor(y_one_hot, dtype=h.dtype, requires_grad=False)
    return softmax_loss(h, y_).numpy(), np.mean(h.numpy().argmax(axis=1) != y)
