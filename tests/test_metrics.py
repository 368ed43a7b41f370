"""Tests for multimix_jax.metrics against analytic / brute-force answers."""

import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from multimix_jax import metrics as M


# --------------------------------------------------------------------------
# fixtures built independently of the metric code
# --------------------------------------------------------------------------
def _disc_set(cy, cx, r, shape):
    """Pixel set {(i, j): (i-cy)^2 + (j-cx)^2 <= r^2} as Python tuples."""
    return {(i, j) for i in range(shape[0]) for j in range(shape[1])
            if (i - cy) ** 2 + (j - cx) ** 2 <= r * r}


def _render(pixels, shape):
    m = np.zeros(shape, dtype=bool)
    for i, j in pixels:
        m[i, j] = True
    return m


def _square(shape, r0, c0, s):
    m = np.zeros(shape, dtype=bool)
    m[r0:r0 + s, c0:c0 + s] = True
    return m


def _brute_boundary(mask):
    """Foreground pixels with a 4-neighbour that is background or off-image."""
    H, W = mask.shape
    out = []
    for i, j in zip(*np.nonzero(mask)):
        for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            a, b = i + di, j + dj
            if not (0 <= a < H and 0 <= b < W) or not mask[a, b]:
                out.append((i, j))
                break
    return np.array(out, dtype=float)


def _brute_ahd(p, t):
    P, T = np.argwhere(p).astype(float), np.argwhere(t).astype(float)
    D = cdist(P, T)
    return 0.5 * (D.min(1).mean() + D.min(0).mean())


def _brute_hd95(p, t):
    BP, BT = _brute_boundary(p), _brute_boundary(t)
    D = cdist(BP, BT)
    return np.percentile(np.concatenate([D.min(1), D.min(0)]), 95)


# --------------------------------------------------------------------------
# segmentation
# --------------------------------------------------------------------------
def test_identical_masks():
    m = _render(_disc_set(30, 30, 15, (64, 64)), (64, 64))
    assert M.dice(m, m) == 1.0
    assert M.jaccard(m, m) == 1.0
    assert M.averaged_hausdorff(m, m) == 0.0
    assert M.hd95(m, m) == 0.0
    assert M.ssim(m, m) == pytest.approx(1.0)


def test_shifted_disc_overlap_counts():
    shape, r, k = (64, 80), 17, 5
    A = _disc_set(32, 30, r, shape)
    B = {(i, j + k) for (i, j) in A}  # exact horizontal translation
    inter, union = len(A & B), len(A | B)
    pa, pb = _render(A, shape), _render(B, shape)
    assert M.dice(pa, pb) == pytest.approx(2 * inter / (len(A) + len(B)), abs=1e-12)
    assert M.jaccard(pa, pb) == pytest.approx(inter / union, abs=1e-12)
    # every boundary pixel of A has its translate on B's boundary -> all
    # surface distances <= k; they are not all zero.
    assert 0.0 < M.hd95(pa, pb) <= k + 1e-9
    # dice accepts {0,1} ints and probabilities the same way
    assert M.dice(pa.astype(np.uint8), pb.astype(float) * 0.9) == M.dice(pa, pb)


@pytest.mark.parametrize("s,k", [(20, 1), (40, 3), (30, 7)])
def test_shifted_squares_ahd_and_hd95(s, k):
    # A: s x s square; B: A shifted right by k (k < s / 2).
    shape = (s + 10, s + k + 10)
    a, b = _square(shape, 5, 5, s), _square(shape, 5, 5 + k, s)
    # AHD: a pixel of A in one of the k columns left of B is at distance
    # k - c (c = 0..k-1) from B, the others are inside B (distance 0):
    # directed mean = s * sum_{j=1..k} j / s^2 = k (k+1) / (2 s); symmetric.
    assert M.averaged_hausdorff(a, b) == pytest.approx(k * (k + 1) / (2 * s), abs=1e-12)
    # HD95: translating a boundary pixel by k lands on the other boundary, so
    # every surface distance is <= k; the s-2 interior pixels of A's left
    # edge (and mirrored B's right edge) are exactly k away (no B pixel has
    # column < k).  That is (s-2)/(4s-4) ~ 25% > 5% of all distances at the
    # max, so the 95th percentile is exactly k.
    assert M.hd95(a, b) == pytest.approx(k, abs=1e-12)
    # overlap: |A & B| = s (s - k)
    assert M.dice(a, b) == pytest.approx(2 * s * (s - k) / (2 * s * s))
    assert M.jaccard(a, b) == pytest.approx(s * (s - k) / (s * s + s * k))


def test_single_pixels():
    shape = (32, 32)
    a, b = np.zeros(shape, bool), np.zeros(shape, bool)
    a[10, 10] = True
    b[13, 14] = True  # distance 5 (3-4-5 triangle)
    assert M.averaged_hausdorff(a, b) == pytest.approx(5.0)
    assert M.hd95(a, b) == pytest.approx(5.0)
    assert M.dice(a, b) == 0.0 and M.jaccard(a, b) == 0.0


def test_distances_match_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(4):
        # blobby random masks that also touch the image border
        p = rng.random((18, 21)) < 0.35
        t = rng.random((18, 21)) < 0.5
        assert M.averaged_hausdorff(p, t) == pytest.approx(_brute_ahd(p, t), abs=1e-9)
        assert M.hd95(p, t) == pytest.approx(_brute_hd95(p, t), abs=1e-9)


def test_ssim_single_pixel_analytic():
    # x = 0 everywhere, y = single 1 at the centre of a 15x15 image.
    # skimage: uniform 7x7 window, sample covariance (N/(N-1), N=49),
    # C1=(0.01)^2, C2=(0.03)^2, mean over the 9x9 crop (pad 3).  The 49
    # windows covering the pixel have mu_x=var_x=cov=0, mu_y=1/49,
    # var_y = 49/48 * (1/49 - 1/49^2) = 1/49; the other 32 have SSIM 1.
    x = np.zeros((15, 15), bool)
    y = x.copy()
    y[7, 7] = True
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = c1 * c2 / (((1 / 49) ** 2 + c1) * (1 / 49 + c2))
    assert M.ssim(x, y) == pytest.approx((32 + 49 * s) / 81, rel=1e-9)
    assert M.ssim(y, x) == pytest.approx(M.ssim(x, y))


def test_empty_conventions():
    e = np.zeros((16, 16), bool)
    f = _square((16, 16), 4, 4, 6)
    # both empty: perfect agreement
    assert M.dice(e, e) == 1.0 and M.jaccard(e, e) == 1.0
    assert M.averaged_hausdorff(e, e) == 0.0 and M.hd95(e, e) == 0.0
    assert M.ssim(e, e) == pytest.approx(1.0)
    # exactly one empty: no overlap, distances = the image diagonal (the penalty)
    for p, t in ((e, f), (f, e)):
        assert M.dice(p, t) == 0.0 and M.jaccard(p, t) == 0.0
        assert M.averaged_hausdorff(p, t) == pytest.approx(16 * math.sqrt(2))
        assert M.hd95(p, t) == pytest.approx(16 * math.sqrt(2))
    # the penalty exceeds every real distance on that image (opposite corner pixels)
    a, b = np.zeros((16, 16), bool), np.zeros((16, 16), bool)
    a[0, 0], b[15, 15] = True, True
    assert M.hd95(a, b) == pytest.approx(15 * math.sqrt(2))
    assert M.hd95(a, b) < M.hd95(e, f)


def test_segmentation_metrics_penalise_and_count_empty_predictions():
    f = _square((16, 16), 4, 4, 6)
    g = _square((16, 16), 4, 5, 6)  # shifted by 1
    e = np.zeros((16, 16), bool)
    pred = np.stack([f, f, e, e])
    true = np.stack([f, g, f, e])
    out = M.segmentation_metrics(pred, true)
    assert out["n"] == 4
    assert out["dice"] == pytest.approx((1 + 2 * 30 / 72 + 0 + 1) / 4)
    # hd: the empty prediction of image 2 scores the diagonal; image 3 (both empty) scores 0
    diagonal = 16 * math.sqrt(2)
    assert out["hd"] == pytest.approx((0 + 1 / 6 + diagonal + 0) / 4)
    assert out["hd95"] == pytest.approx((0 + 1 + diagonal + 0) / 4)
    assert out["empty_pred"] == 2 and out["hd_penalised"] == 1
    # NHWC with one channel and float probabilities are accepted
    out2 = M.segmentation_metrics(pred[..., None] * 0.8, true[..., None].astype(np.float32))
    assert out2 == pytest.approx(out)


def test_segmentation_metrics_of_an_empty_set():
    out = M.segmentation_metrics(np.zeros((0, 8, 8), bool), np.zeros((0, 8, 8), bool))
    assert out["n"] == 0 and out["empty_pred"] == 0 and math.isnan(out["dice"])


# --------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------
def _known_confusion():
    # TN=3, FP=1, FN=2, TP=4 at threshold 0.5; 0.5 exactly counts as PNEUMONIA
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    prob = np.array([0.1, 0.2, 0.3, 0.7, 0.4, 0.45, 0.5, 0.8, 0.9, 0.95])
    return labels, prob


def test_classification_metrics_of_a_known_confusion():
    labels, prob = _known_confusion()
    out = M.classification_metrics(labels, prob)
    assert out["n"] == 10 and out["threshold"] == 0.5
    assert out["accuracy"] == pytest.approx(0.7) and out["accuracy_at_0.5"] == pytest.approx(0.7)
    # NORMAL as positive: TP=3, FP=2, FN=1 -> 6/9 ; PNEUMONIA: TP=4, FP=1, FN=2 -> 8/11
    assert out["f1_normal"] == pytest.approx(6 / 9)
    assert out["f1_pneumonia"] == pytest.approx(8 / 11)
    assert out["precision_pneumonia"] == pytest.approx(4 / 5)
    assert out["recall_pneumonia"] == pytest.approx(4 / 6)
    assert out["balanced_accuracy"] == pytest.approx((3 / 4 + 4 / 6) / 2)
    # AUC by pair counting: 4 neg x 6 pos = 24 pairs; negatives 0.1/0.2/0.3
    # are below every positive (18), negative 0.7 is below 0.8/0.9/0.95 (3).
    assert out["roc_auc"] == pytest.approx(21 / 24)


def test_classification_metrics_at_another_threshold():
    labels, prob = _known_confusion()
    out = M.classification_metrics(labels, prob, threshold=0.4)
    # >= 0.4: 0.7 (FP), 0.4, 0.45, 0.5, 0.8, 0.9, 0.95 -> TN=3, FP=1, FN=0, TP=6
    assert out["threshold"] == 0.4
    assert out["accuracy"] == pytest.approx(0.9) and out["accuracy_at_0.5"] == pytest.approx(0.7)
    assert out["balanced_accuracy"] == pytest.approx((3 / 4 + 1) / 2)
    assert out["f1_normal"] == pytest.approx(6 / 7) and out["f1_pneumonia"] == pytest.approx(12 / 13)
    assert out["roc_auc"] == pytest.approx(21 / 24)  # threshold-free


def test_classification_absent_class_conventions():
    out = M.classification_metrics([1, 1, 1], [0.9, 0.8, 0.7])
    assert out["f1_normal"] == 1.0 and out["f1_pneumonia"] == 1.0
    assert math.isnan(out["roc_auc"]) and math.isnan(out["balanced_accuracy"])
    # present in labels but never predicted -> F1 0, precision undefined
    out = M.classification_metrics([0, 1, 1], [0.1, 0.2, 0.3])
    assert out["f1_pneumonia"] == 0.0 and math.isnan(out["precision_pneumonia"])
    empty = M.classification_metrics([], [])
    assert empty["n"] == 0 and math.isnan(empty["accuracy"])


def test_roc_auc():
    y = np.array([0, 0, 1, 1, 1])
    s = np.array([0.1, 0.3, 0.35, 0.8, 0.9])
    assert M.classification_metrics(y, s)["roc_auc"] == 1.0
    assert M.classification_metrics(y, 1 - s)["roc_auc"] == 0.0


def test_balanced_threshold_separates_when_0_5_cannot():
    # every probability is below 0.5: at 0.5 nothing is PNEUMONIA (balanced accuracy 0.5);
    # any t in (0.2, 0.3] separates the classes perfectly: the midpoint, never a score
    labels = np.array([0, 0, 1, 1])
    prob = np.array([0.1, 0.2, 0.3, 0.4])
    t = M.balanced_threshold(labels, prob)
    assert t == pytest.approx(0.25)
    assert M.classification_metrics(labels, prob, t)["balanced_accuracy"] == 1.0


def test_balanced_threshold_is_the_midpoint_so_noise_does_not_flip_a_film():
    # separating thresholds are (0.6, 0.8]: a t just above 0.6 would flip the 0.6 film under
    # rounding noise; the midpoint leaves a margin of 0.1 on both sides
    labels = np.array([0, 0, 1, 1])
    prob = np.array([0.55, 0.6, 0.8, 0.9])
    t = M.balanced_threshold(labels, prob)
    assert t == pytest.approx(0.7)
    for noise in (-1e-6, 1e-6):
        assert M.classification_metrics(labels, prob + noise, t)["accuracy"] == 1.0
    # adjacent scores 1 ulp apart: still inside the interval, not on the lower score
    low = np.float64(0.3)
    prob = np.array([0.1, low, np.nextafter(low, 1.0), 0.9])
    assert M.classification_metrics(labels, prob, M.balanced_threshold(labels, prob))[
        "accuracy"] == 1.0
    # the open ends: above the highest score, below the lowest
    assert 0.9 < M.balanced_threshold([1, 1, 0], [0.1, 0.2, 0.9]) <= 1.0


def test_balanced_threshold_among_ties_takes_the_midpoint_closest_to_0_5():
    labels, prob = np.array([0, 0, 1, 1]), np.array([0.2, 0.3, 0.7, 0.8])
    assert M.balanced_threshold(labels, prob) == 0.5  # the midpoint of (0.3, 0.7]
    # imbalanced, 1 normal and 4 pneumonia: t <= 0.3 and t in (0.35, 0.6] are both 4/5
    # accurate, but only (0.35, 0.6] has the best balanced accuracy, (3/4 + 1) / 2 = 0.875
    labels, prob = np.array([0, 1, 1, 1, 1]), np.array([0.35, 0.3, 0.6, 0.7, 0.9])
    assert M.balanced_threshold(labels, prob) == pytest.approx(0.475)
    labels, prob = np.array([0, 1, 1, 1, 1]), np.array([0.5, 0.3, 0.6, 0.7, 0.9])
    t = M.balanced_threshold(labels, prob)
    assert t == pytest.approx(0.55)
    assert M.classification_metrics(labels, prob, t)["balanced_accuracy"] == pytest.approx(0.875)


def test_balanced_threshold_matches_a_brute_force_search():
    rng = np.random.default_rng(3)
    for _ in range(5):
        labels = rng.integers(0, 2, 40)
        prob = np.round(np.clip(0.3 * labels + rng.random(40) * 0.7, 0, 1), 2)  # with ties
        t = M.balanced_threshold(labels, prob)
        grid = np.r_[np.unique(prob), 0.5, 1.01]
        best = max(M.classification_metrics(labels, prob, g)["balanced_accuracy"] for g in grid)
        assert M.classification_metrics(labels, prob, t)["balanced_accuracy"] == pytest.approx(best)


def test_balanced_threshold_needs_both_classes():
    assert M.balanced_threshold([1, 1, 1], [0.1, 0.2, 0.3]) == 0.5


# --------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------
def test_ece_and_brier_by_hand():
    labels = [0, 0, 1, 1, 1]
    prob = [0.1, 0.12, 0.9, 0.95, 0.5]
    out = M.calibration_metrics(labels, prob)
    # bins of width 1/15: {0.1, 0.12} -> bin 1 (gap 0 - 0.11), {0.5} -> bin 7 (gap 1 - 0.5),
    # {0.9, 0.95} -> bins 13 and 14 (gaps 0.1 and 0.05)
    assert out["ece"] == pytest.approx((0.22 + 0.5 + 0.1 + 0.05) / 5)
    assert out["brier"] == pytest.approx((0.01 + 0.0144 + 0.01 + 0.0025 + 0.25) / 5)
    perfect = M.calibration_metrics([0, 1], [0.0, 1.0])
    assert perfect == {"ece": 0.0, "brier": 0.0}
    assert list(M.calibration_bin([0.0, 1 / 15, 0.999, 1.0])) == [0, 1, 14, 14]
    assert all(math.isnan(v) for v in M.calibration_metrics([], []).values())


def test_constant_probability_ece_is_the_gap_to_the_base_rate():
    labels = np.array([1] * 30 + [0] * 70)
    out = M.calibration_metrics(labels, np.full(100, 0.5))
    assert out["ece"] == pytest.approx(0.2) and out["brier"] == pytest.approx(0.25)


# --------------------------------------------------------------------------
# one mask boundary (metrics and pictures)
# --------------------------------------------------------------------------
def test_overlay_outlines_the_true_mask_with_the_metrics_boundary():
    from multimix_jax import pictures
    true = np.zeros((8, 8), bool)
    true[2:6, :] = True  # a band touching the left and right image borders
    rgb = pictures.overlay_rgb(np.zeros((8, 8), np.uint8), np.zeros((8, 8)), true)
    red = (rgb[..., 0] > 200) & (rgb[..., 1] < 50)
    np.testing.assert_array_equal(red, M.boundary(true))
    assert red[3, 0] and red[3, 7] and not red[3, 3]  # the image border is part of the edge
    np.testing.assert_array_equal(M.boundary(true), _render(map(tuple, _brute_boundary(true).astype(int)), (8, 8)))


def test_trivial_rules():
    labels = np.array([1] * 6 + [0] * 4)
    rules = M.trivial_rules(labels, prior=0.7)
    assert list(rules) == ["all_pneumonia", "all_normal", "training_prior"]
    assert rules["all_pneumonia"]["accuracy"] == 0.6 and rules["all_normal"]["accuracy"] == 0.4
    assert rules["all_pneumonia"]["f1_pneumonia"] == pytest.approx(2 * 6 / (2 * 6 + 4))
    assert rules["all_normal"]["f1_pneumonia"] == 0.0 and rules["all_normal"]["brier"] == 0.6
    prior = rules["training_prior"]  # P = 0.7 >= 0.5 for every film: all pneumonia
    assert prior["accuracy"] == 0.6 and prior["brier"] == pytest.approx(0.6 * 0.09 + 0.4 * 0.49)
    assert prior["ece"] == pytest.approx(0.1) and math.isnan(prior["balanced_accuracy"]) is False
    assert prior["roc_auc"] == 0.5 and "training_prior" not in M.trivial_rules(labels)
