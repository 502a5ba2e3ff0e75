"""The sequence modules (nn.Embedding, nn.RNNCell, nn.RNN, nn.LSTMCell, nn.LSTM) against
torch.nn with copied weights, the PTB-layout text data (Dictionary, Corpus, batchify,
get_batch, the KJV splits) and the language model with its training loops, on every device.

Homework marks: the modules, the data functions and the language model are homework 5's
and run with the fused LSTM step off (its composite is the code homework 5 writes); the
fused step against that composite, argument errors and the KJV helper are framework code,
without a mark.
"""
import os

import numpy as np
import pytest

import needle as ndl
import needle.nn as nn
from needle import _needle
from needle.apps.models import LanguageModel
from needle.apps.simple_ml import evaluate_ptb, train_ptb
from needle.data import Corpus, Dictionary, batchify, get_batch
from needle.data.datasets.kjv_dataset import kjv_corpus, kjv_splits

from gradcheck import DEVICES, check_gradients, kernels_off, close

torch = pytest.importorskip("torch")
hw5 = pytest.mark.hw5
LSTM_KERNELS = ("lstm_cell", "lstm_cell_grad")


@pytest.fixture
def composite_lstm():
    """The LSTM step's composite, the code homework 5 writes."""
    with kernels_off(*LSTM_KERNELS):
        yield


def T(x, device, requires_grad=True, dtype="float32"):
    return ndl.Tensor(np.asarray(x), device=device, dtype=dtype, requires_grad=requires_grad)


# --- copying weights between needle cells and torch modules ---

def copy_cell(cell, torch_module, suffix=""):
    """Sets torch_module's layer weights (suffix "_l0" etc. for RNN/LSTM) from a needle cell:
    torch keeps (out, in) weights, needle (in, out)."""
    with torch.no_grad():
        getattr(torch_module, "weight_ih" + suffix).copy_(torch.tensor(cell.W_ih.numpy().T))
        getattr(torch_module, "weight_hh" + suffix).copy_(torch.tensor(cell.W_hh.numpy().T))
        if cell.bias_ih is not None:
            getattr(torch_module, "bias_ih" + suffix).copy_(torch.tensor(cell.bias_ih.numpy()))
            getattr(torch_module, "bias_hh" + suffix).copy_(torch.tensor(cell.bias_hh.numpy()))


def check_cell_grads(cell, torch_module, suffix="", rtol=1e-4):
    close(cell.W_ih.grad, getattr(torch_module, "weight_ih" + suffix).grad.T, rtol, "W_ih.grad")
    close(cell.W_hh.grad, getattr(torch_module, "weight_hh" + suffix).grad.T, rtol, "W_hh.grad")
    if cell.bias_ih is not None:
        close(cell.bias_ih.grad, getattr(torch_module, "bias_ih" + suffix).grad, rtol, "bias_ih.grad")
        close(cell.bias_hh.grad, getattr(torch_module, "bias_hh" + suffix).grad, rtol, "bias_hh.grad")


# --- Embedding ---

@hw5
@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "cuda"])
def test_embedding_forward_and_repeated_id_gradient(device):
    np.random.seed(0)
    emb = nn.Embedding(7, 5, device=device)
    assert emb.weight.shape == (7, 5)
    ids = np.array([[1, 3, 1], [6, 1, 0]])
    out = emb(T(ids.astype(np.float32), device, requires_grad=False))
    close(out, emb.weight.numpy()[ids], err_msg="forward")
    c = np.random.randn(2, 3, 5).astype(np.float32)
    (out * T(c, device, requires_grad=False)).sum().backward()
    want = np.zeros((7, 5), np.float32)
    np.add.at(want, ids, c)
    close(emb.weight.grad, want, err_msg="gradient (id 1 three times)")


@hw5
def test_embedding_init_is_standard_normal_and_takes_integer_ids():
    np.random.seed(3)
    emb = nn.Embedding(4, 3)
    np.random.seed(3)
    np.testing.assert_allclose(emb.weight.numpy(), np.random.randn(4, 3).astype(np.float32), rtol=1e-6)
    out = emb(ndl.Tensor(np.array([[2], [3]], dtype=np.int64)))
    assert out.shape == (2, 1, 3)
    close(out, emb.weight.numpy()[[[2], [3]]])


@pytest.mark.parametrize("ids", [[[7]], [[-1]], [[1.5]]], ids=["too-large", "negative", "fractional"])
def test_embedding_rejects_bad_ids(ids):
    emb = nn.Embedding(7, 2)
    with pytest.raises(ValueError, match=r"\[Embedding\]"):
        emb(ndl.Tensor(np.array(ids, dtype=np.float32)))


# --- RNNCell / RNN ---

@hw5
@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "cuda"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("init_hidden", [True, False])
def test_rnn_cell_matches_torch(device, bias, nonlinearity, init_hidden):
    np.random.seed(1)
    batch, n_in, hidden = 4, 5, 6
    x = np.random.randn(batch, n_in).astype(np.float32)
    h0 = np.random.randn(batch, hidden).astype(np.float32)
    cell = nn.RNNCell(n_in, hidden, bias=bias, nonlinearity=nonlinearity, device=device)
    ref = torch.nn.RNNCell(n_in, hidden, bias=bias, nonlinearity=nonlinearity)
    copy_cell(cell, ref)
    X, H = T(x, device), T(h0, device)
    xt, ht = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    out = cell(X, H) if init_hidden else cell(X)
    want = ref(xt, ht) if init_hidden else ref(xt)
    close(out, want, err_msg="h'")
    out.sum().backward()
    want.sum().backward()
    check_cell_grads(cell, ref)
    close(X.grad, xt.grad, err_msg="X.grad")
    if init_hidden:
        close(H.grad, ht.grad, err_msg="h.grad")


@hw5
def test_rnn_cell_init_draws_in_the_course_order():
    """W_ih, W_hh, bias_ih, bias_hh, each U(-1/sqrt(hidden), 1/sqrt(hidden)) from np.random."""
    np.random.seed(5)
    cell = nn.RNNCell(3, 4)
    np.random.seed(5)
    for p, shape in ((cell.W_ih, (3, 4)), (cell.W_hh, (4, 4)), (cell.bias_ih, (4,)), (cell.bias_hh, (4,))):
        want = (np.random.rand(*shape) * 2 - 1) * 0.5
        np.testing.assert_allclose(p.numpy(), want, rtol=1e-5, atol=1e-6)
    assert len(cell.parameters()) == 4
    assert len(nn.RNNCell(3, 4, bias=False).parameters()) == 2


@hw5
@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "cuda"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("init_hidden", [True, False])
def test_rnn_matches_torch(device, num_layers, bias, init_hidden):
    np.random.seed(2)
    seq, batch, n_in, hidden = 5, 3, 4, 6
    x = np.random.randn(seq, batch, n_in).astype(np.float32)
    h0 = np.random.randn(num_layers, batch, hidden).astype(np.float32)
    model = nn.RNN(n_in, hidden, num_layers, bias=bias, device=device)
    assert len(model.rnn_cells) == num_layers
    ref = torch.nn.RNN(n_in, hidden, num_layers, bias=bias)
    for k, cell in enumerate(model.rnn_cells):
        copy_cell(cell, ref, f"_l{k}")
    X, H = T(x, device), T(h0, device)
    xt, ht = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    out, h_n = model(X, H) if init_hidden else model(X)
    want, want_h = ref(xt, ht) if init_hidden else ref(xt)
    close(out, want, err_msg="output")
    close(h_n, want_h, err_msg="h_n")
    (out.sum() + h_n.sum()).backward()
    (want.sum() + want_h.sum()).backward()
    for k, cell in enumerate(model.rnn_cells):
        check_cell_grads(cell, ref, f"_l{k}")
    close(X.grad, xt.grad, err_msg="X.grad")
    if init_hidden:
        close(H.grad, ht.grad, err_msg="h0.grad")


# --- LSTMCell / LSTM ---

@hw5
@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "cuda"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("init_hidden", [True, False])
def test_lstm_cell_matches_torch(device, bias, init_hidden, composite_lstm):
    np.random.seed(3)
    batch, n_in, hidden = 4, 5, 3
    x = np.random.randn(batch, n_in).astype(np.float32)
    h0, c0 = (np.random.randn(batch, hidden).astype(np.float32) for _ in range(2))
    cell = nn.LSTMCell(n_in, hidden, bias=bias, device=device)
    assert cell.W_ih.shape == (n_in, 4 * hidden) and cell.W_hh.shape == (hidden, 4 * hidden)
    ref = torch.nn.LSTMCell(n_in, hidden, bias=bias)
    copy_cell(cell, ref)
    X, H, C = T(x, device), T(h0, device), T(c0, device)
    xt, ht, ct = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    h, c = cell(X, (H, C)) if init_hidden else cell(X)
    want_h, want_c = ref(xt, (ht, ct)) if init_hidden else ref(xt)
    close(h, want_h, err_msg="h'")
    close(c, want_c, err_msg="c'")
    (h.sum() + (c * c).sum()).backward()
    (want_h.sum() + (want_c * want_c).sum()).backward()
    check_cell_grads(cell, ref)
    close(X.grad, xt.grad, err_msg="X.grad")
    if init_hidden:
        close(H.grad, ht.grad, err_msg="h0.grad")
        close(C.grad, ct.grad, err_msg="c0.grad")


def check_lstm_against_torch(device, num_layers, init_hidden, bias=True):
    np.random.seed(4)
    seq, batch, n_in, hidden = 6, 2, 3, 5
    x = np.random.randn(seq, batch, n_in).astype(np.float32)
    h0, c0 = (np.random.randn(num_layers, batch, hidden).astype(np.float32) for _ in range(2))
    model = nn.LSTM(n_in, hidden, num_layers, bias=bias, device=device)
    assert len(model.lstm_cells) == num_layers
    ref = torch.nn.LSTM(n_in, hidden, num_layers, bias=bias)
    for k, cell in enumerate(model.lstm_cells):
        copy_cell(cell, ref, f"_l{k}")
    X, H, C = T(x, device), T(h0, device), T(c0, device)
    xt, ht, ct = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    out, (h_n, c_n) = model(X, (H, C)) if init_hidden else model(X)
    want, (want_h, want_c) = ref(xt, (ht, ct)) if init_hidden else ref(xt)
    for got, ref_value, name in ((out, want, "output"), (h_n, want_h, "h_n"), (c_n, want_c, "c_n")):
        close(got, ref_value, err_msg=name)
    (out.sum() + h_n.sum() + c_n.sum()).backward()
    (want.sum() + want_h.sum() + want_c.sum()).backward()
    for k, cell in enumerate(model.lstm_cells):
        check_cell_grads(cell, ref, f"_l{k}")
    close(X.grad, xt.grad, err_msg="X.grad")
    if init_hidden:
        close(H.grad, ht.grad, err_msg="h0.grad")
        close(C.grad, ct.grad, err_msg="c0.grad")


@hw5
@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "cuda"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("init_hidden", [True, False])
def test_lstm_matches_torch(device, num_layers, init_hidden, composite_lstm):
    check_lstm_against_torch(device, num_layers, init_hidden)


@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "cuda"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("init_hidden", [True, False])
def test_lstm_layer_op_matches_torch(device, num_layers, bias, init_hidden):
    """nn.LSTM's path where the device has the fused cell: per layer one matmul for the
    input projections and one ops.lstm_sequence."""
    if not _needle.kernels.has("lstm_cell", device):
        pytest.skip(f"no fused lstm_cell kernel on {device}")
    check_lstm_against_torch(device, num_layers, init_hidden, bias)


@hw5
def test_lstm_cell_finite_differences_float64(composite_lstm):
    np.random.seed(6)
    cell = nn.LSTMCell(3, 2, dtype="float64")
    x = ndl.Tensor(np.random.randn(2, 3), dtype="float64", requires_grad=True)
    h0 = ndl.Tensor(np.random.randn(2, 2), dtype="float64", requires_grad=True)
    c0 = ndl.Tensor(np.random.randn(2, 2), dtype="float64", requires_grad=True)

    def step(x, h0, c0):
        h, c = cell(x, (h0, c0))
        return ndl.ops.stack([h, c], 0)

    check_gradients(step, x, h0, c0)


@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "cuda"])
def test_fused_lstm_step_matches_its_composite(device):
    """The fused lstm_cell kernels (where the device has them) against the composite."""
    if not _needle.kernels.has("lstm_cell", device):
        pytest.skip(f"no fused lstm_cell kernel on {device}")
    np.random.seed(7)
    x = np.random.randn(5, 3, 4).astype(np.float32)

    def run():
        np.random.seed(8)
        model = nn.LSTM(4, 6, 2, device=device)
        X = T(x, device)
        out, (h, c) = model(X)
        (out.sum() + (c * c).sum()).backward()
        return [out.numpy(), h.numpy(), c.numpy(), X.grad.numpy()] + [p.grad.numpy() for p in model.parameters()]

    fused = run()
    with kernels_off(*LSTM_KERNELS):
        composite = run()
    for k, (a, b) in enumerate(zip(fused, composite)):
        close(a, b, rtol=1e-5, err_msg=f"result {k}")


@pytest.mark.parametrize("make, args, match", [
    (lambda: nn.RNNCell(3, 4), (np.zeros((2, 5)),), r"\[RNNCell\].*\(batch, 3\)"),
    (lambda: nn.RNNCell(3, 4), (np.zeros((2, 3)), np.zeros((2, 5))), r"\[RNNCell\] h must have shape \(2, 4\)"),
    (lambda: nn.RNN(3, 4), (np.zeros((2, 3)),), r"\[RNN\].*\(seq_len, batch, input_size\)"),
    (lambda: nn.RNN(3, 4, 2), (np.zeros((5, 2, 3)), np.zeros((1, 2, 4))), r"\[RNN\] h0 must have shape \(2, 2, 4\)"),
    (lambda: nn.LSTMCell(3, 4), (np.zeros((2, 4)),), r"\[LSTMCell\]"),
    (lambda: nn.LSTM(3, 4), (np.zeros((5, 2, 2)),), r"\[LSTM\].*\(seq_len, batch, 3\)"),
])
def test_sequence_modules_name_themselves_on_bad_shapes(make, args, match):
    module = make()
    tensors = [ndl.Tensor(a, dtype="float32") for a in args]
    with pytest.raises(ValueError, match=match):
        module(*tensors)


@pytest.mark.parametrize("make", [
    lambda: nn.RNNCell(0, 4), lambda: nn.RNNCell(3, 4, nonlinearity="sigmoid"),
    lambda: nn.LSTM(3, 4, num_layers=0), lambda: nn.Embedding(3, 0),
    lambda: LanguageModel(4, 10, 8, seq_model="gru"),
])
def test_sequence_modules_reject_bad_arguments(make):
    with pytest.raises(ValueError):
        make()


# --- Dictionary, Corpus, batchify, get_batch ---

def write_corpus(tmp_path, train, test, valid=None):
    for name, lines in (("train.txt", train), ("test.txt", test), ("valid.txt", valid)):
        if lines is not None:
            (tmp_path / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(tmp_path)


@hw5
def test_dictionary_numbers_words_in_order_of_first_use():
    d = Dictionary()
    assert [d.add_word(w) for w in ["the", "cat", "the", "sat"]] == [0, 1, 0, 2]
    assert len(d) == 3
    assert d.idx2word == ["the", "cat", "sat"] and d.word2idx["sat"] == 2


@hw5
def test_corpus_reads_lines_with_eos(tmp_path):
    base = write_corpus(tmp_path, [" the cat  sat", "the dog"], ["a cat", "the end", "never read"])
    corpus = Corpus(base)
    words = corpus.dictionary.idx2word
    assert [words[i] for i in corpus.train] == ["the", "cat", "sat", "<eos>", "the", "dog", "<eos>"]
    assert [words[i] for i in corpus.test] == ["a", "cat", "<eos>", "the", "end", "<eos>", "never", "read", "<eos>"]
    assert len(corpus.dictionary) == 9 and corpus.valid is None
    limited = Corpus(base, max_lines=1)
    assert [limited.dictionary.idx2word[i] for i in limited.test] == ["a", "cat", "<eos>"]
    assert len(limited.train) == 4


def test_corpus_reads_valid_and_rejects_missing_files(tmp_path):
    base = write_corpus(tmp_path, ["a b"], ["b"], valid=["c a"])
    assert Corpus(base).valid == [3, 0, 2]
    os.remove(os.path.join(base, "test.txt"))
    with pytest.raises(FileNotFoundError, match=r"\[Corpus\] no test.txt"):
        Corpus(base)


@hw5
def test_batchify_and_get_batch():
    data = list(range(23))
    batches = batchify(data, 4, device=None, dtype="float32")
    assert isinstance(batches, np.ndarray) and batches.shape == (5, 4) and batches.dtype == np.float32
    np.testing.assert_array_equal(batches[:, 1], np.arange(5, 10))  # column j: the j-th stretch
    X, y = get_batch(batches, 0, 3)
    assert X.shape == (3, 4) and y.shape == (12,)
    np.testing.assert_array_equal(X.numpy(), batches[0:3])
    np.testing.assert_array_equal(y.numpy(), batches[1:4].reshape(-1))
    X, y = get_batch(batches, 3, 3)  # the last window is shorter
    assert X.shape == (1, 4) and y.shape == (4,)
    np.testing.assert_array_equal(y.numpy(), batches[4])


def test_batch_functions_reject_bad_arguments():
    with pytest.raises(ValueError, match=r"\[batchify\]"):
        batchify([1, 2], 3, None, "float32")
    with pytest.raises(ValueError, match=r"\[batchify\]"):
        batchify([1, 2], 0, None, "float32")
    with pytest.raises(IndexError, match=r"\[get_batch\]"):
        get_batch(np.zeros((4, 2)), 3, 2)


# --- LanguageModel and the training loops ---

@hw5
@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "cuda"])
@pytest.mark.parametrize("seq_model", ["rnn", "lstm"])
def test_language_model_shapes_and_gradients(device, seq_model, composite_lstm):
    np.random.seed(9)
    model = LanguageModel(6, 11, 8, num_layers=2, seq_model=seq_model, device=device)
    x = ndl.Tensor(np.random.randint(0, 11, size=(5, 3)).astype(np.float32), device=device)
    logits, h = model(x)
    assert logits.shape == (15, 11)
    states = h if seq_model == "lstm" else (h,)
    assert all(s.shape == (2, 3, 8) for s in states)
    logits2, _ = model(x, h)
    nn.SoftmaxLoss()(logits2, ndl.Tensor(np.arange(15) % 11, device=device)).backward()
    params = model.parameters()
    assert len(params) == 1 + 2 * 4 + 2  # embedding, 2 layers of (W_ih, W_hh, 2 biases), linear
    for k, p in enumerate(params):
        assert p.grad is not None and np.abs(p.grad.numpy()).sum() > 0, f"parameter {k} {p.shape} got no gradient"


@hw5
@pytest.mark.parametrize("seq_model", ["rnn", "lstm"])
def test_train_ptb_lowers_the_loss(tmp_path, seq_model, composite_lstm):
    """A repetitive corpus is learnable: two epochs of train_ptb cut evaluate_ptb's loss."""
    rng = np.random.RandomState(0)
    lines = [" ".join(["a", "b", "c", "d", "e"][: rng.randint(2, 6)]) for _ in range(60)]
    corpus = Corpus(write_corpus(tmp_path, lines, lines[:10]))
    data = batchify(corpus.train, 4, None, "float32")
    np.random.seed(0)
    model = LanguageModel(8, len(corpus.dictionary), 16, seq_model=seq_model)
    before_acc, before = evaluate_ptb(model, data, seq_len=10)
    acc, loss = train_ptb(model, data, seq_len=10, n_epochs=3, lr=1.0 if seq_model == "rnn" else 3.0, clip=0.5)
    after_acc, after = evaluate_ptb(model, data, seq_len=10)
    assert np.isfinite(loss) and 0 <= acc <= 1
    assert after < 0.75 * before, f"loss {before:.3f} -> {after:.3f}"
    assert after_acc > before_acc


# --- the King James Bible corpus ---

def test_kjv_splits_are_deterministic_and_disjoint():
    verses = [f"v{k}" for k in range(100)]
    train, valid, test = kjv_splits(verses, every=20)
    assert valid == ["v10", "v30", "v50", "v70", "v90"]
    assert test == ["v11", "v31", "v51", "v71", "v91"]
    assert len(train) == 90 and train[:11] == [f"v{k}" for k in range(10)] + ["v12"]
    with pytest.raises(ValueError, match=r"\[kjv_corpus\]"):
        kjv_splits(verses, every=2)


@pytest.mark.skipif(not os.path.exists("/usr/bin/bible"), reason="Debian's bible-kjv is not installed")
def test_kjv_corpus_writes_the_ptb_layout(tmp_path):
    base = kjv_corpus(str(tmp_path / "kjv"))
    lines = {name: (tmp_path / "kjv" / name).read_text().splitlines() for name in ("train.txt", "valid.txt", "test.txt")}
    assert [len(v) for v in lines.values()] == [31102 - 2 * 1555, 1555, 1555]
    assert lines["train.txt"][0] == "in the beginning god created the heaven and the earth ."
    corpus = Corpus(base, max_lines=100)
    assert corpus.valid is not None and len(corpus.dictionary) > 500
    assert kjv_corpus(base) == base  # second call: kept
