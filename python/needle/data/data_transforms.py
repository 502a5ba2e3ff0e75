"""Image transforms on H x W x C numpy arrays, with the course framework's RNG order."""
import numpy as np

__all__ = ["Transform", "RandomFlipHorizontal", "RandomCrop"]


class Transform:
    def __call__(self, x):
        raise NotImplementedError


class RandomFlipHorizontal(Transform):
    """Flips the image left-right with probability p (one ``np.random.rand()`` draw)."""

    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, img):
        # BEGIN SOLUTION hw2
        flip_img = np.random.rand() < self.p
        if flip_img:
            return img[:, ::-1, :]
        return img
        # END SOLUTION


class RandomCrop(Transform):
    """Zero-pads by ``padding`` on each side, then crops back to H x W at a random shift.

    The shift is one ``np.random.randint(-padding, padding + 1, size=2)`` draw
    (rows, then columns).
    """

    def __init__(self, padding=3):
        self.padding = padding

    def __call__(self, img):
        # BEGIN SOLUTION hw2
        shift_x, shift_y = np.random.randint(low=-self.padding, high=self.padding + 1, size=2)
        H, W = img.shape[0], img.shape[1]
        p = self.padding
        pad = ((p, p), (p, p)) + ((0, 0),) * (img.ndim - 2)
        padded = np.pad(img, pad)
        return padded[p + shift_x : p + shift_x + H, p + shift_y : p + shift_y + W]
        # END SOLUTION
