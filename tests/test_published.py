"""The library against numbers PUBLISHED by others, never numbers our code produced.

Every expected value below is quoted as printed in its source (documentation,
another framework's test suite, a GitHub issue, or the project's seed notes),
with the source named next to it. Tolerances follow the published digits:
about half a unit in the last printed place (``abs 5e-4`` for 3 decimals,
``rtol 5e-7`` for float32 printouts with 7-8 significant digits), or the
tolerance the source's own test uses when it states one.

Where a source's convention differs from PyTorch's (reduction, sample weights,
smoothing of binary labels, clipping of probabilities), the comment says why
the example still measures the same mathematics, or how the published value is
obtained from our per-sample numbers by the source's documented rule.

Probabilities given by a source (Keras, ``from_logits=False``) are fed as
logits ``log(p)`` (softmax) or ``log(p / (1 - p))`` (sigmoid): softmax(log p)
is p again when the row sums to 1, and ``log 0 = -inf`` is a masked class.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from xentcli import binary_cross_entropy, cross_entropy


def close(actual, expected, *, rtol=0.0, atol=0.0):
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64), rtol=rtol, atol=atol
    )


def logit(p):
    p = np.asarray(p, dtype=np.float64)
    return np.log(p) - np.log1p(-p)


DTYPES = ["float64", "float32"]


# ===========================================================================
# 1. The project's seed: ../shared/seeds/004_3d22ecc16f329160.txt,
#    "Example For Cross Entropy Loss" (CMU 11-785 notes). Raw outputs
#    [2.0, 1.0, 0.1] and [0.1, 2.0, 1.9], one-hot targets [0,1,0] and [1,0,0];
#    it prints (3 decimals) the softmax, the two losses, their mean, and
#    dLoss/dA = (softmax - Y) / N, i.e. the gradient of the MEAN.
# ===========================================================================
SEED_LOGITS = [[2.0, 1.0, 0.1], [0.1, 2.0, 1.9]]
SEED_INDEX = [1, 0]
SEED_ONEHOT = [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
SEED_PROBS = [[0.659, 0.242, 0.099], [0.073, 0.487, 0.440]]
SEED_LOSSES = [1.417, 2.620]
SEED_MEAN = 2.019
SEED_GRAD_MEAN = [[0.330, -0.379, 0.049], [-0.464, 0.243, 0.220]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", [SEED_INDEX, SEED_ONEHOT], ids=["index", "onehot"])
def test_seed_worked_example(target, dtype):
    r = cross_entropy(SEED_LOGITS, target, dtype=dtype)
    close(r.probs, SEED_PROBS, atol=5e-4)
    close(r.losses, SEED_LOSSES, atol=5e-4)
    close(r.loss, SEED_MEAN, atol=5e-4)
    close(r.grad, SEED_GRAD_MEAN, atol=5e-4)


# ===========================================================================
# 2. TensorFlow, softmax_cross_entropy_with_logits.
#    tensorflow/tensorflow tensorflow/python/kernel_tests/nn_ops/xent_op_test_base.py
#    (formerly tensorflow/python/kernel_tests/xent_op_test.py), testNpXent:
#    logits [[1,1,1,1],[1,2,3,4]], labels [[0,0,0,1],[0,.5,.5,0]];
#    "the gradient is [0.25, 0.25, 0.25, -0.75]" and, for the soft row,
#    [0.0321, -0.4129, -0.2632, 0.6439]; losses [1.3862, 1.9401]; both checked
#    there with rtol = atol = 1e-3. The gradient is per sample (TF returns
#    the backprop of each row's loss): our reduction="none" gradient.
#    testFloat/testDouble run the same inputs in float32 and float64.
# ===========================================================================
TF_XENT_LOGITS = [[1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0]]
TF_XENT_LABELS = [[0.0, 0.0, 0.0, 1.0], [0.0, 0.5, 0.5, 0.0]]
TF_XENT_LOSSES_4D = [1.3862, 1.9401]
TF_XENT_GRAD_4D = [[0.25, 0.25, 0.25, -0.75], [0.0321, -0.4129, -0.2632, 0.6439]]

# The same example to 7-8 digits, as given in the project brief (losses
# [1.3862944, 1.9401897], second gradient row [.0320586, -.4128557,
# -.2631172, .6439143]). They agree with TensorFlow's softmax test
# (tensorflow/python/kernel_tests/nn_ops/softmax_op_test.py, testNpSoftmax),
# which publishes softmax([1,2,3,4]) = [0.0320586, 0.08714432, 0.23688282,
# 0.64391426] and log_softmax = [-3.4401897, -2.4401897, -1.4401897,
# -0.4401897]: 0.5 * (2.4401897 + 1.4401897) = 1.9401897 and p - y gives the row.
TF_XENT_LOSSES_7D = [1.3862944, 1.9401897]
TF_XENT_GRAD_7D = [[0.25, 0.25, 0.25, -0.75], [0.0320586, -0.4128557, -0.2631172, 0.6439143]]


@pytest.mark.parametrize("dtype", DTYPES)
def test_tensorflow_xent_op_test_npxent(dtype):
    r = cross_entropy(TF_XENT_LOGITS, TF_XENT_LABELS, reduction="none", dtype=dtype)
    assert r.target_type == "prob"
    close(r.losses, TF_XENT_LOSSES_4D, rtol=1e-3, atol=1e-3)
    close(r.grad, TF_XENT_GRAD_4D, rtol=1e-3, atol=1e-3)
    close(r.losses, TF_XENT_LOSSES_7D, rtol=5e-7)
    close(r.grad, TF_XENT_GRAD_7D, rtol=5e-7, atol=5e-8)


# TensorFlow softmax_op_test.py, testNpSoftmax (checked there with rtol = atol
# = 1e-5): softmax and log_softmax of [1,1,1,1] and [1,2,3,4]. With a class
# index target k the loss is -log_softmax[k], and the softmax is r.probs.
TF_SOFTMAX_PROBS = [[0.25, 0.25, 0.25, 0.25], [0.0320586, 0.08714432, 0.23688282, 0.64391426]]
TF_LOG_SOFTMAX = [
    [-1.386294, -1.386294, -1.386294, -1.386294],
    [-3.4401897, -2.4401897, -1.4401897, -0.4401897],
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_tensorflow_softmax_op_test_log_softmax(k, dtype):
    r = cross_entropy(TF_XENT_LOGITS, [k, k], reduction="none", dtype=dtype)
    close(r.probs, TF_SOFTMAX_PROBS, rtol=5e-7)
    close(r.losses, [-TF_LOG_SOFTMAX[0][k], -TF_LOG_SOFTMAX[1][k]], rtol=5e-7)


# TensorFlow softmax_op_test.py, _testOverflow: log_softmax([max, 1, 2, 3]) is
# [0, -max, -max, -max] (rtol = atol = 1e-5) for max = np.finfo(type).max, in
# float64 (CPU) and float32 (GPU): so the loss is 0 for class 0 and max for
# the others, finite, with no overflow.
@pytest.mark.parametrize("dtype", DTYPES)
def test_tensorflow_softmax_op_test_overflow(dtype):
    big = float(np.finfo(dtype).max)
    r = cross_entropy([[big, 1.0, 2.0, 3.0]] * 4, [0, 1, 2, 3], reduction="none", dtype=dtype)
    close(r.losses, [0.0, big, big, big], rtol=1e-5, atol=1e-5)
    assert np.isfinite(r.losses).all()


# TensorFlow xent_op_test_base.py, _testSingleClass: one class (C = 1), the
# label-1 rows (logits 0 and 1) have loss 0 and gradient 0. (The same test's
# rows with labels -1 and 0 are not probability distributions; PyTorch
# semantics reject negative probabilities, so they are not used here.)
@pytest.mark.parametrize("dtype", DTYPES)
def test_tensorflow_single_class(dtype):
    r = cross_entropy([[0.0], [1.0]], [[1.0], [1.0]], reduction="none", dtype=dtype)
    close(r.losses, [0.0, 0.0], atol=1e-12)
    close(r.grad, [[0.0], [0.0]], atol=1e-12)


# TensorFlow softmax_op_test.py, testSoftmaxDoubleGradientPreservesSmallComponent:
# logits [37.42994775023705, 0.0] (float64); the gradient of softmax(x)[0] is
# [tail, -tail] with tail = 5.551115123125775e-17 (rtol 1e-14). That gradient
# is p0*p1*[1, -1]; the cross-entropy gradient for class 0 is p - e0 =
# [-p1, p1], the same up to the factor p0 = 1 - 5.6e-17. A naive 1 - p0
# rounds to 0 here, so this checks the small component is kept.
TF_TAIL = 5.551115123125775e-17


def test_tensorflow_softmax_small_gradient_component():
    r = cross_entropy([[37.42994775023705, 0.0]], [0], reduction="none")
    close(r.grad, [[-TF_TAIL, TF_TAIL]], rtol=1e-14)
    close(r.probs[0, 1], TF_TAIL, rtol=1e-14)


# TensorFlow tensorflow/python/kernel_tests/nn_ops/losses_test.py,
# SoftmaxCrossEntropyLossTest / SparseSoftmaxCrossEntropyLossTest (checked with
# assertAlmostEqual(..., 3), i.e. |error| < 5e-4): logits
# [[10,0,0],[0,10,0],[0,0,10]]; all-correct labels give 0.0, all-wrong labels
# (one-hot [[0,0,1],[1,0,0],[0,1,0]] or sparse [2,0,1]) give 10.0 (mean).
TF_LOSSES_LOGITS = [[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "target, expected",
    [
        ([0, 1, 2], 0.0),
        ([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], 0.0),
        ([2, 0, 1], 10.0),
        ([[0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 0]], 10.0),
    ],
    ids=["correct-index", "correct-onehot", "wrong-index", "wrong-onehot"],
)
def test_tensorflow_losses_softmax(target, expected, dtype):
    r = cross_entropy(TF_LOSSES_LOGITS, target, dtype=dtype)
    close(r.loss, expected, atol=5e-4)


# ===========================================================================
# 3. Label smoothing with PyTorch's convention (1 - eps) * onehot + eps / C.
#    TensorFlow losses_test.py testSoftmaxLabelSmoothing (the same case and
#    comment are in tf.keras' CategoricalCrossentropyTest.test_label_smoothing,
#    from_logits=True): "Label smoothing: z' = z * (1 - L) + L/n", logits
#    [[100, -100, -100]], labels [[1, 0, 0]], L = 0.1:
#    expected_value = 400.0 * label_smoothing / 3.0 (places=3).
#    testSigmoidLabelSmoothingEqualsSoftmaxTwoLabel: softmax logits
#    [[0,100],[100,0],[100,0]], labels [[0,1],[1,0],[0,1]], L = 0.1 equals the
#    sigmoid case below, expected (100 + 50 L) / 3 (places=3).
# ===========================================================================
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", [[0], [[1.0, 0.0, 0.0]]], ids=["index", "onehot"])
def test_tensorflow_softmax_label_smoothing(target, dtype):
    ls = 0.1
    r = cross_entropy([[100.0, -100.0, -100.0]], target, label_smoothing=ls, dtype=dtype)
    close(r.loss, 400.0 * ls / 3.0, atol=5e-4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "target", [[1, 0, 1], [[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]], ids=["index", "onehot"]
)
def test_tensorflow_softmax_two_label_smoothing(target, dtype):
    ls = 0.1
    r = cross_entropy([[0.0, 100.0], [100.0, 0.0], [100.0, 0.0]], target, label_smoothing=ls, dtype=dtype)
    close(r.loss, (100.0 + 50.0 * ls) / 3.0, atol=5e-4)


# PyTorch issue 104776 "torch.nn.CrossEntropyLoss: class weighting changes
# label_smoothing" (https://github.com/pytorch/pytorch/issues/104776), comment
# by nathanfranke with PyTorch's printed output: for i in range(21), logits
# [i*0.05, 1 - i*0.05] (float32), probability target [1.0, 0.0],
# CrossEntropyLoss(weight=w, label_smoothing=0.1), reduction "mean" over one
# sample, printed as cost * multiplier with 5 decimals. So this checks
# smoothing of probability targets and class weights on probability targets
# (a mean over N = 1 sample, not over the weights).
PT_104776 = [
    (
        [0.1, 0.9],
        10.0,
        [1.38857, 1.33262, 1.27954, 1.22946, 1.18248, 1.13871, 1.09822, 1.06110, 1.02739, 0.99716,
         0.97041, 0.94716, 0.92739, 0.91110, 0.89822, 0.88871, 0.88248, 0.87946, 0.87954, 0.88262,
         0.88857],
    ),
    (
        [0.01, 0.99],
        20.0,
        [0.55965, 0.57356, 0.58990, 0.60876, 0.63024, 0.65441, 0.68136, 0.71114, 0.74380, 0.77939,
         0.81791, 0.85939, 0.90380, 0.95114, 1.00136, 1.05441, 1.11024, 1.16876, 1.22990, 1.29356,
         1.35965],
    ),
    (
        [1.0, 1.0],
        1.0,
        [1.26326, 1.19615, 1.13110, 1.06819, 1.00749, 0.94908, 0.89302, 0.83936, 0.78814, 0.73940,
         0.69315, 0.64940, 0.60814, 0.56936, 0.53302, 0.49908, 0.46749, 0.43819, 0.41110, 0.38615,
         0.36326],
    ),
]


@pytest.mark.parametrize("weight, multiplier, printed", PT_104776, ids=["w0.1", "w0.01", "w1"])
def test_pytorch_issue_104776_weighted_smoothed_prob_targets(weight, multiplier, printed):
    got = []
    for i in range(21):
        logits = np.array([[i * 0.05, 1.0 - i * 0.05]], dtype=np.float32)
        r = cross_entropy(logits, [[1.0, 0.0]], weight=weight, label_smoothing=0.1, dtype="float32")
        got.append(r.loss * multiplier)
    # 5 printed decimals (+ float32 rounding of the product)
    close(got, printed, atol=6e-6)


# ===========================================================================
# 4. PyTorch issues on class weights.
# ===========================================================================
# https://github.com/pytorch/pytorch/issues/25571 "Wrong crossentropy loss
# calculation": pred [[0.2,0.3,0.5],[0.5,0.2,0.3]], y [2,1], weights
# [2.,4.,6.]: "none" gives tensor([5.6390, 4.9593]), "sum" tensor(10.5983),
# "mean" tensor(1.0598) (closed: the mean is weighted, (5.6390+4.9593)/(6+4)).
PT_25571 = dict(
    logits=[[0.2, 0.3, 0.5], [0.5, 0.2, 0.3]], target=[2, 1], weight=[2.0, 4.0, 6.0],
    none=[5.6390, 4.9593], sum=10.5983, mean=1.0598,
)

# https://github.com/pytorch/pytorch/issues/8062 "CrossEntropyLoss mishandles
# weights": input [[-100,100],[-100,100]], target [0,1], weights [20,10];
# reduce=False prints tensor([4000., -0.]), size_average=True prints
# tensor(133.3333) (= 4000 / (20 + 10), the weighted mean).
PT_8062 = dict(
    logits=[[-100.0, 100.0], [-100.0, 100.0]], target=[0, 1], weight=[20.0, 10.0],
    none=[4000.0, 0.0], mean=133.3333,
)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pytorch_issue_25571_weighted_reductions(dtype):
    c = PT_25571
    args = (c["logits"], c["target"])
    r = cross_entropy(*args, weight=c["weight"], reduction="none", dtype=dtype)
    close(r.losses, c["none"], atol=5e-5)
    close(cross_entropy(*args, weight=c["weight"], reduction="sum", dtype=dtype).loss, c["sum"], atol=5e-5)
    r = cross_entropy(*args, weight=c["weight"], reduction="mean", dtype=dtype)
    close(r.loss, c["mean"], atol=5e-5)
    assert r.denominator == pytest.approx(10.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pytorch_issue_8062_weighted_mean(dtype):
    c = PT_8062
    r = cross_entropy(c["logits"], c["target"], weight=c["weight"], reduction="none", dtype=dtype)
    close(r.losses, c["none"], rtol=5e-7, atol=5e-7)
    r = cross_entropy(c["logits"], c["target"], weight=c["weight"], dtype=dtype)
    close(r.loss, c["mean"], atol=5e-5)


# ===========================================================================
# 5. MindSpore documentation (float32 printouts).
# ===========================================================================
# mindspore.ops.SoftmaxCrossEntropyWithLogits
# (https://www.mindspore.cn/docs/en/stable/api_python/ops/mindspore.ops.SoftmaxCrossEntropyWithLogits.html):
# logits [[2,4,1,4,5],[2,1,2,4,3]], one-hot labels [[0,0,0,0,1],[0,0,0,1,0]];
# print(loss) -> [0.5899297  0.52374405]; print(dlogits) -> the per-sample
# gradient rows below.
MS_LOGITS = [[2.0, 4.0, 1.0, 4.0, 5.0], [2.0, 1.0, 2.0, 4.0, 3.0]]
MS_ONEHOT = [[0.0, 0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0, 0.0]]
MS_LOSS = [0.5899297, 0.52374405]
MS_DLOGITS = [
    [0.02760027, 0.20393994, 0.01015357, 0.20393994, -0.44563377],
    [0.08015892, 0.02948882, 0.08015892, -0.4077012, 0.21789455],
]

# mindspore.ops.SparseSoftmaxCrossEntropyWithLogits (same site): logits
# [[2,3,1,4,5],[2,1,2,4,3]], labels [0,1]; print(loss) -> 3.4878292 (the
# batch mean); with is_grad=True the gradient of that mean:
MS_SPARSE_LOGITS = [[2.0, 3.0, 1.0, 4.0, 5.0], [2.0, 1.0, 2.0, 4.0, 3.0]]
MS_SPARSE_LABELS = [0, 1]
MS_SPARSE_LOSS = 3.4878292
MS_SPARSE_GRAD = [
    [-0.48415753, 0.04306427, 0.00582811, 0.11706084, 0.3182043],
    [0.04007946, -0.4852556, 0.04007946, 0.2961494, 0.10894729],
]

# mindspore.nn.SoftmaxCrossEntropyWithLogits docstring (mindspore
# nn/loss/loss.py): logits [[3,5,6,9,12,33,42,12,32,72]]; sparse label [1]
# prints [67.]; one-hot label at index 6 prints [30.].
MS_NN_LOGITS = [[3.0, 5.0, 6.0, 9.0, 12.0, 33.0, 42.0, 12.0, 32.0, 72.0]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", [MS_ONEHOT, [4, 3]], ids=["onehot", "index"])
def test_mindspore_softmax_cross_entropy_with_logits(target, dtype):
    r = cross_entropy(MS_LOGITS, target, reduction="none", dtype=dtype)
    close(r.losses, MS_LOSS, rtol=5e-7)
    close(r.grad, MS_DLOGITS, rtol=5e-7, atol=5e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mindspore_sparse_softmax_cross_entropy_mean_and_grad(dtype):
    r = cross_entropy(MS_SPARSE_LOGITS, MS_SPARSE_LABELS, reduction="mean", dtype=dtype)
    close(r.loss, MS_SPARSE_LOSS, rtol=5e-7)
    close(r.grad, MS_SPARSE_GRAD, rtol=5e-7, atol=5e-9)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "target, printed",
    [([1], 67.0), ([[0.0, 0, 0, 0, 0, 0, 1.0, 0, 0, 0]], 30.0)],
    ids=["sparse", "onehot"],
)
def test_mindspore_nn_softmax_cross_entropy(target, printed, dtype):
    r = cross_entropy(MS_NN_LOGITS, target, reduction="none", dtype=dtype)
    close(r.losses, [printed], rtol=5e-8)


# ===========================================================================
# 6. TensorFlow: tf.nn.sigmoid_cross_entropy_with_logits and tf.losses.
# ===========================================================================
# https://www.tensorflow.org/api_docs/python/tf/nn/sigmoid_cross_entropy_with_logits
# (e.g. r2.6, r2.10): logits [1., -1., 0., 1., -1., 0., 0.], labels
# [0., 0., 0., 1., 1., 1., 0.5] -> array([1.3132617, 0.3132617, 0.6931472,
# 0.3132617, 1.3132617, 0.6931472, 0.6931472], dtype=float32).
TF_SIG_LOGITS = [1.0, -1.0, 0.0, 1.0, -1.0, 0.0, 0.0]
TF_SIG_LABELS = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.5]
TF_SIG_LOSSES = [1.3132617, 0.3132617, 0.6931472, 0.3132617, 1.3132617, 0.6931472, 0.6931472]


@pytest.mark.parametrize("dtype", DTYPES)
def test_tensorflow_sigmoid_cross_entropy_docs(dtype):
    r = binary_cross_entropy(TF_SIG_LOGITS, TF_SIG_LABELS, reduction="none", dtype=dtype)
    close(np.ravel(r.losses), TF_SIG_LOSSES, rtol=5e-7)


# tensorflow/python/kernel_tests/nn_ops/losses_test.py, SigmoidCrossEntropyLossTest
# (assertAlmostEqual(..., 3), |error| < 5e-4; the mean is over all elements):
TF_AW = [[100.0, -100.0, -100.0], [-100.0, 100.0, -100.0], [-100.0, -100.0, 100.0]]
TF_SIG_CASES = [
    # testAllCorrectSigmoid
    (TF_AW, [[1, 0, 0], [0, 1, 0], [0, 0, 1]], 0.0),
    # testAllWrongSigmoid: 600.0 / 9.0
    (TF_AW, [[0, 0, 1], [1, 0, 0], [0, 1, 0]], 600.0 / 9.0),
    # testMultiCorrectSigmoid
    ([[100.0, -100.0, 100.0], [100.0, 100.0, -100.0], [-100.0, 100.0, 100.0]],
     [[1, 0, 1], [1, 1, 0], [0, 1, 1]], 0.0),
    # testSigmoidFloat64: 44.444
    ([[100.0, -100.0, 100.0], [100.0, -100.0, 100.0], [100.0, 100.0, -100.0]],
     [[1, 0, 1], [1, 1, 0], [0, 1, 1]], 44.444),
    # testLossWithSingleDimPlaceholderForLogitsAndWeights1/2: ones -> 0.313
    (np.ones((32, 1)), np.ones((32, 1)), 0.313),
    (np.ones((32, 2)), np.ones((32, 2)), 0.313),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("logits, labels, expected", TF_SIG_CASES,
                         ids=["all-correct", "all-wrong", "multi-correct", "float64", "ones1", "ones2"])
def test_tensorflow_losses_sigmoid(logits, labels, expected, dtype):
    r = binary_cross_entropy(logits, np.asarray(labels, dtype=np.float64), dtype=dtype)
    close(r.loss, expected, atol=5e-4)


# testSigmoidNoReduction: elementwise losses ((0,0,0),(0,100,100),(100,0,100)).
@pytest.mark.parametrize("dtype", DTYPES)
def test_tensorflow_losses_sigmoid_no_reduction(dtype):
    r = binary_cross_entropy(
        [[100.0, -100.0, 100.0], [100.0, -100.0, 100.0], [100.0, 100.0, -100.0]],
        [[1.0, 0, 1.0], [1.0, 1.0, 0], [0, 1.0, 1.0]],
        reduction="none",
        dtype=dtype,
    )
    close(r.losses, [[0.0, 0.0, 0.0], [0.0, 100.0, 100.0], [100.0, 0.0, 100.0]], atol=5e-4)


# testSigmoidLabelSmoothingCorrect: logits [[100,-100,-100]], labels [[1,0,1]],
# "The new labels are: z' = z * (1 - L) + 0.5 L", L = 0.1,
# expected_value = (100.0 + 50.0 * label_smoothing) / 3.0 (places=3); the same
# case is tf.keras' BinaryCrossentropyTest.test_label_smoothing
# (tensorflow/python/keras/losses_test.py, from_logits=True).
# TF/Keras smooth every binary label towards 0.5 (two outcomes per element),
# which is not PyTorch's cross_entropy smoothing eps / C over the C columns,
# and PyTorch's BCEWithLogitsLoss (like binary_cross_entropy here) has no
# smoothing argument at all. So no convention is tested: the smoothed targets
# z' are passed in, and the test checks BCE with those soft targets, whose
# mathematics is the same in every framework.
@pytest.mark.parametrize("dtype", DTYPES)
def test_tensorflow_sigmoid_label_smoothing(dtype):
    ls = 0.1
    z = np.array([[1.0, 0.0, 1.0]])
    r = binary_cross_entropy([[100.0, -100.0, -100.0]], z * (1 - ls) + 0.5 * ls, dtype=dtype)
    close(r.loss, (100.0 + 50.0 * ls) / 3.0, atol=5e-4)


# A blog printout of tf.nn.sigmoid_cross_entropy_with_logits in float64
# (https://cnblogs.com/smallredness/p/11199541.html, "tf.nn.sigmoid_cross_entropy_with_logits
# 分类"; it states printouts 1 and 3, and 2 and 4, are equal), 9 significant digits:
BLOG_SIG = [
    (
        [[11.0, 8.0, 7.0], [10.0, 14.0, 3.0], [1.0, 2.0, 4.0]],
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        [[1.67015613e-05, 8.00033541e00, 7.00091147e00],
         [1.00000454e01, 8.31528373e-07, 3.04858735e00],
         [1.31326169e00, 2.12692801e00, 1.81499279e-02]],
    ),
    (
        [[1.0, 8.0, 7.0], [10.0, 14.0, 3.0], [1.0, 2.0, 4.0]],
        [[0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        [[1.31326169e00, 3.35406373e-04, 7.00091147e00],
         [4.53988992e-05, 8.31528373e-07, 3.04858735e00],
         [1.31326169e00, 2.12692801e00, 1.81499279e-02]],
    ),
]


@pytest.mark.parametrize("logits, labels, printed", BLOG_SIG, ids=["labels", "labels1"])
def test_blog_sigmoid_cross_entropy_float64(logits, labels, printed):
    r = binary_cross_entropy(logits, labels, reduction="none")
    close(r.losses, printed, rtol=1e-8)


# ===========================================================================
# 7. PyTorch: BCEWithLogitsLoss documentation and test suite.
# ===========================================================================
# torch.nn.BCEWithLogitsLoss docstring (pytorch/pytorch torch/nn/modules/loss.py,
# https://pytorch.org/docs/stable/generated/torch.nn.BCEWithLogitsLoss.html;
# the PyTorch 1.x docstring prints tensor(0.2014), as quoted in copies of it):
#   target = torch.ones([10, 64]); output = torch.full([10, 64], 1.5)
#   pos_weight = torch.ones([64]); criterion(output, target)  # -log(sigmoid(1.5))
#   tensor(0.2014)        (newer docs print tensor(0.20...))
# and: "if a dataset contains 100 positive and 300 negative examples of a
# single class, then pos_weight for the class should be equal to 300/100 = 3.
# The loss would act as if the dataset contains 3 x 100 = 300 positive examples."
@pytest.mark.parametrize("dtype", DTYPES)
def test_pytorch_bce_with_logits_docs_pos_weight(dtype):
    r = binary_cross_entropy(np.full((10, 64), 1.5), np.ones((10, 64)), pos_weight=np.ones(64), dtype=dtype)
    close(r.loss, 0.2014, atol=5e-5)
    close(r.loss, -math.log(1.0 / (1.0 + math.exp(-1.5))), rtol=5e-7 if dtype == "float32" else 1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pytorch_bce_with_logits_docs_pos_weight_3(dtype):
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 2.0]])
    plain = binary_cross_entropy(x, np.ones_like(x), reduction="none", dtype=dtype)
    weighted = binary_cross_entropy(
        x, np.ones_like(x), pos_weight=300.0 / 100.0, reduction="none", dtype=dtype
    )
    close(weighted.losses, 3.0 * plain.losses, rtol=1e-6)
    # negatives are not reweighted
    neg = binary_cross_entropy(x, np.zeros_like(x), pos_weight=3.0, reduction="none", dtype=dtype)
    plain_neg = binary_cross_entropy(x, np.zeros_like(x), reduction="none", dtype=dtype)
    close(neg.losses, plain_neg.losses, rtol=1e-6)


# pytorch/pytorch test/test_mps.py,
# test_bce_with_logits_has_correct_grad_at_zero and
# test_bce_with_logits_with_pos_weight_has_correct_grad_at_zero: output zeros
# (3, 1), target zeros, reduction='sum' (pos_weight ones(3, 1) in the second):
# expected_grad = torch.empty(3, 1).fill_(0.5).
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pos_weight", [None, 1.0], ids=["plain", "pos_weight"])
def test_pytorch_bce_with_logits_grad_at_zero(pos_weight, dtype):
    r = binary_cross_entropy(
        np.zeros((3, 1)), np.zeros((3, 1)), pos_weight=pos_weight, reduction="sum", dtype=dtype
    )
    close(r.grad, np.full((3, 1), 0.5), rtol=0, atol=0)


# ===========================================================================
# 8. Keras documentation (tf.keras / keras.losses and keras.ops).
#    Keras prints 3-4 decimals and its doctests compare loosely: for example
#    the BinaryCrossentropy example prints 1.730 for a sum of 0.23516 +
#    1.49576 = 1.73092 and 0.243 for 0.24364, so 3-decimal Keras values are
#    compared within one unit of the last printed place (1e-3).
#    Keras' default reduction "sum_over_batch_size" is the mean over samples;
#    with sample_weight s it is sum(s_i * l_i) / N (Keras' documented rule,
#    not PyTorch's), applied here to our per-sample losses.
# ===========================================================================
# tf.keras.losses.CategoricalCrossentropy
# (https://www.tensorflow.org/api_docs/python/tf/keras/losses/CategoricalCrossentropy):
# y_true [[0,1,0],[0,0,1]], y_pred [[0.05,0.95,0],[0.1,0.8,0.1]]: 1.177;
# sample_weight [0.3,0.7]: 0.814; reduction "sum": 2.354; None: [0.0513, 2.303].
# tf.keras.losses.SparseCategoricalCrossentropy (r2.3-r2.7 pages): the same
# with y_true [1, 2]. The functions categorical_crossentropy and
# sparse_categorical_crossentropy print array([0.0513, 2.303]).
KERAS_CCE_PRED = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
KERAS_CCE_ONEHOT = [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
KERAS_CCE_SPARSE = [1, 2]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", [KERAS_CCE_ONEHOT, KERAS_CCE_SPARSE], ids=["categorical", "sparse"])
def test_keras_categorical_crossentropy_docs(target, dtype):
    with np.errstate(divide="ignore"):
        logits = np.log(KERAS_CCE_PRED)  # log(0) = -inf: a masked class
    none = cross_entropy(logits, target, reduction="none", dtype=dtype).losses
    close(none[0], 0.0513, atol=1e-4)
    close(none[1], 2.303, atol=1e-3)
    close(cross_entropy(logits, target, dtype=dtype).loss, 1.177, atol=1e-3)
    close(cross_entropy(logits, target, reduction="sum", dtype=dtype).loss, 2.354, atol=1e-3)
    close(np.dot([0.3, 0.7], none) / 2, 0.814, atol=1e-3)


# keras.ops.categorical_crossentropy (Keras 3;
# https://www.tensorflow.org/api_docs/python/tf/keras/ops/categorical_crossentropy):
# target [[1,0,0],[0,1,0],[0,0,1]], output [[0.9,0.05,0.05],[0.1,0.8,0.1],
# [0.2,0.3,0.5]] -> array([0.10536054 0.22314355 0.6931472 ], dtype=float32).
# keras.ops.binary_crossentropy (same site): target [0,1,1,0], output
# [0.1,0.9,0.8,0.2] -> array([0.10536054 0.10536054 0.22314355 0.22314355]).
@pytest.mark.parametrize("dtype", DTYPES)
def test_keras_ops_categorical_crossentropy(dtype):
    p = [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.3, 0.5]]
    r = cross_entropy(np.log(p), [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], reduction="none", dtype=dtype)
    close(r.losses, [0.10536054, 0.22314355, 0.6931472], rtol=5e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_keras_ops_binary_crossentropy(dtype):
    r = binary_cross_entropy(logit([0.1, 0.9, 0.8, 0.2]), [0.0, 1.0, 1.0, 0.0], reduction="none", dtype=dtype)
    close(np.ravel(r.losses), [0.10536054, 0.10536054, 0.22314355, 0.22314355], rtol=5e-7)


# tf.keras.losses.BinaryCrossentropy
# (https://www.tensorflow.org/versions/r2.6/api_docs/python/tf/keras/losses/BinaryCrossentropy,
# same in keras.losses.BinaryCrossentropy's docstring):
#   Example 1: y_true [0,1,0,0], y_pred (logits) [-18.6, 0.51, 2.94, -12.8],
#   from_logits=True -> 0.865.
#   Example 2: y_true [[0,1],[0,0]], y_pred [[-18.6,0.51],[2.94,-12.8]]:
#   0.865; sample_weight [0.8, 0.2]: 0.243; "sum": 1.730; None:
#   array([0.235, 1.496]). Keras' per-sample loss is the mean over the last
#   axis of the elementwise losses (our r.losses, shape (N, C)).
# r2.3 page, from_logits=False: y_true [[0.,1.],[0.,0.]], y_pred
#   [[0.6,0.4],[0.4,0.6]]: 0.815; sample_weight [1, 0]: 0.458; "sum": 1.630;
#   None: array([0.916, 0.714]) (Keras clips probabilities to [1e-7, 1-1e-7],
#   which does not touch these).
KERAS_BCE = [
    ([[-18.6, 0.51], [2.94, -12.8]], [[0.0, 1.0], [0.0, 0.0]], [0.8, 0.2],
     dict(mean=0.865, weighted=0.243, sum=1.730, none=[0.235, 1.496])),
    (logit([[0.6, 0.4], [0.4, 0.6]]), [[0.0, 1.0], [0.0, 0.0]], [1.0, 0.0],
     dict(mean=0.815, weighted=0.458, sum=1.630, none=[0.916, 0.714])),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("logits, y, sample_weight, printed", KERAS_BCE, ids=["from_logits", "probabilities"])
def test_keras_binary_crossentropy_docs(logits, y, sample_weight, printed, dtype):
    r = binary_cross_entropy(logits, y, reduction="none", dtype=dtype)
    per_sample = np.asarray(r.losses, dtype=np.float64).mean(axis=1)
    close(per_sample, printed["none"], atol=1e-3)
    close(per_sample.mean(), printed["mean"], atol=1e-3)
    close(per_sample.sum(), printed["sum"], atol=1e-3)
    close(np.dot(sample_weight, per_sample) / len(per_sample), printed["weighted"], atol=1e-3)
    # Example 1: the same 4 numbers as one sample; Keras' mean = our mean.
    close(binary_cross_entropy(np.ravel(logits), np.ravel(y), dtype=dtype).loss, printed["mean"], atol=1e-3)


# tf.keras' own tests: tensorflow/tensorflow tensorflow/python/keras/losses_test.py
# (assertAlmostEqual(..., 3): |error| < 5e-4).
# CategoricalCrossentropyTest / SparseCategoricalCrossentropyTest, y_true
# identity ([0, 1, 2] sparse):
#   logits [[8,1,1],[0,9,1],[2,3,5]], from_logits=True: test_unweighted .0573,
#   test_scalar_weighted (sample_weight 2.3) .1317, test_sample_weighted
#   ([1.2, 3.4, 5.6]) 0.31829, test_no_reduction (0.001822, 0.000459, 0.169846);
#   probabilities [[.9,.05,.05],[.5,.89,.6],[.05,.01,.94]]: .3239, 2.3 -> .7449,
#   [1.2, 3.4, 5.6] -> 1.0696. Keras divides each probability row by its sum
#   (the middle row sums to 1.99), and softmax(log p) = p / sum(p) does the
#   same, so log(p) are the matching logits. Sample weights use Keras' rule
#   sum(s_i * l_i) / N on our per-sample losses.
# BinaryCrossentropyTest (from_logits=True): y_true [[1,0,1],[0,1,1]], logits
#   [[100,-100,100],[100,100,-100]]: test_no_reduction (0., 66.6666) (mean over
#   the last axis), sample_weight [4, 3] -> 100.
TFK_CCE_LOGITS = [[8.0, 1.0, 1.0], [0.0, 9.0, 1.0], [2.0, 3.0, 5.0]]
TFK_CCE_PROBS = [[0.9, 0.05, 0.05], [0.5, 0.89, 0.6], [0.05, 0.01, 0.94]]
TFK_CASES = [
    (TFK_CCE_LOGITS, dict(mean=0.0573, scalar=0.1317, sample=0.31829, none=[0.001822, 0.000459, 0.169846])),
    (np.log(TFK_CCE_PROBS), dict(mean=0.3239, scalar=0.7449, sample=1.0696, none=None)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", [[0, 1, 2], np.eye(3)], ids=["sparse", "categorical"])
@pytest.mark.parametrize("logits, printed", TFK_CASES, ids=["from_logits", "probabilities"])
def test_tf_keras_losses_test_categorical(logits, printed, target, dtype):
    r = cross_entropy(logits, target, reduction="none", dtype=dtype)
    per_sample = np.asarray(r.losses, dtype=np.float64)
    if printed["none"] is not None:
        close(per_sample, printed["none"], atol=5e-7)
    close(cross_entropy(logits, target, dtype=dtype).loss, printed["mean"], atol=5e-4)
    close(2.3 * per_sample.sum() / 3, printed["scalar"], atol=5e-4)
    close(np.dot([1.2, 3.4, 5.6], per_sample) / 3, printed["sample"], atol=5e-4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tf_keras_losses_test_binary_from_logits(dtype):
    r = binary_cross_entropy(
        [[100.0, -100.0, 100.0], [100.0, 100.0, -100.0]], [[1.0, 0, 1.0], [0, 1.0, 1.0]],
        reduction="none", dtype=dtype,
    )
    per_sample = np.asarray(r.losses, dtype=np.float64).mean(axis=1)
    close(per_sample, [0.0, 66.6666], atol=5e-4)
    close(np.dot([4.0, 3.0], per_sample) / 2, 100.0, atol=5e-4)


# ===========================================================================
# 9. optax (google-deepmind/optax, optax/losses/_classification.py and
#    optax/losses/_classification_test.py).
# ===========================================================================
# softmax_cross_entropy / softmax_cross_entropy_with_integer_labels docstrings
# (jnp.set_printoptions(precision=4)): logits [[1.2,-0.8,-0.5],[0.9,-1.2,1.1]],
# labels [[1,0,0],[0,1,0]] (or [0, 1]) -> [0.2761 2.9518].
# Second docstring example: logits = arange(24).reshape(1, 2, 3, 4), axis=(2, 3)
# (12 classes per row, rows 0..11 and 12..23), labels ravel_multi_index((1,1),
# (2,3)) in a (3,4) slice = 5 and 11 -> [[6.4587 0.4587]].
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", [[0, 1], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], ids=["index", "onehot"])
def test_optax_docstring_example(target, dtype):
    r = cross_entropy([[1.2, -0.8, -0.5], [0.9, -1.2, 1.1]], target, reduction="none", dtype=dtype)
    close(r.losses, [0.2761, 2.9518], atol=5e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_optax_docstring_axes_example(dtype):
    r = cross_entropy(np.arange(24.0).reshape(2, 12), [5, 11], reduction="none", dtype=dtype)
    close(r.losses, [6.4587, 0.4587], atol=5e-5)


# SoftmaxCrossEntropyTest: ys [[10,1,-2],[1,4,0.2]] (float32), ts
# [[0,1,0],[1,0,0]], exp [9.00013, 3.0696733] (atol 1e-4).
# SafeSoftmaxCrossEntropyTest (0 log 0 = 0 for logits -inf with label 0, the
# convention this library uses for masked classes): adds rows [-inf,0,0] with
# labels [0,.5,.5] -> 0.693147, [-inf,0,0] with [.4,.3,.3] -> inf,
# [-inf,0,-inf] with [0,1,0] -> 0.0.
OPTAX_YS = [
    [10.0, 1.0, -2.0], [1.0, 4.0, 0.2], [-np.inf, 0.0, 0.0], [-np.inf, 0.0, 0.0], [-np.inf, 0.0, -np.inf]
]
OPTAX_TS = [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.4, 0.3, 0.3], [0.0, 1.0, 0.0]]
OPTAX_EXP = [9.00013, 3.0696733, 0.693147, np.inf, 0.0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_optax_softmax_cross_entropy_test(dtype):
    r = cross_entropy(OPTAX_YS[:2], OPTAX_TS[:2], reduction="none", dtype=dtype)
    close(r.losses, OPTAX_EXP[:2], atol=1e-4)
    r = cross_entropy(OPTAX_YS[:2], [1, 0], reduction="none", dtype=dtype)
    close(r.losses, OPTAX_EXP[:2], atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_optax_safe_softmax_cross_entropy_test(dtype):
    with pytest.warns(Warning, match="infinite"):
        r = cross_entropy(OPTAX_YS, OPTAX_TS, reduction="none", dtype=dtype)
    close(r.losses, OPTAX_EXP, atol=1e-4)
    assert r.warnings  # the infinite row is reported


# SigmoidCrossEntropyTest.test_sigmoid_cross_entropy: mean of
# sigmoid_binary_cross_entropy(preds, labels) (float64), rtol = atol = 1e-6.
OPTAX_SIGMOID = [
    ([-1e09, -1e-09], [1.0, 0.0], 5e08),
    ([-1e09, -1e-09], [0.0, 1.0], 0.3465736),
    ([1e09, 1e-09], [1.0, 0.0], 0.3465736),
    ([1e09, 1e-09], [0.0, 1.0], 5e08),
    ([-1e09, 1e-09], [1.0, 0.0], 5e08),
    ([-1e09, 1e-09], [0.0, 1.0], 0.3465736),
    ([1e09, -1e-09], [1.0, 0.0], 0.3465736),
    ([1e09, -1e-09], [0.0, 1.0], 5e08),
    ([0.0, 0.0], [1.0, 0.0], 0.6931472),
    ([0.0, 0.0], [0.0, 1.0], 0.6931472),
]


@pytest.mark.parametrize("preds, labels, expected", OPTAX_SIGMOID)
def test_optax_sigmoid_binary_cross_entropy(preds, labels, expected):
    r = binary_cross_entropy(preds, labels)
    close(r.loss, expected, rtol=1e-6, atol=1e-6)
