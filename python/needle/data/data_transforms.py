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
        # Pixel (i, j) of the crop is pixel (i + shift_x, j + shift_y) of the image, or a
        # zero of the padding: copy the rows and columns that overlap into zeros (the same
        # result as np.pad and a slice, without padding the whole image first).
        out = np.zeros_like(img)
        r0, r1 = max(0, -shift_x), min(H, H - shift_x)
        c0, c1 = max(0, -shift_y), min(W, W - shift_y)
        if r0 < r1 and c0 < c1:  # a shift past the image's edge leaves only zeros
            out[r0:r1, c0:c1] = img[r0 + shift_x : r1 + shift_x, c0 + shift_y : c1 + shift_y]
        return out
        # END SOLUTION
