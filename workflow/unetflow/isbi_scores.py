"""The ISBI 2012 challenge's scores: V_Rand and V_Info after border thinning, best threshold.

Arganda-Carreras et al., "Crowdsourcing the creation of image segmentation
algorithms for connectomics", Front. Neuroanat. 9:142 (2015). The protocol,
step by step, on a cell-interior probability map ``p`` and ground-truth
objects ``T`` (0 = membrane):

1. threshold: interior where ``p > threshold``, for each threshold of a sweep
   (0.0, 0.1, ..., 0.9, as the challenge's Fiji script);
2. thin the predicted borders to one pixel (``skimage.morphology.thin``, on the
   map mirrored at its edges so that borders keep reaching the edge) and label
   the interior's 4-connected components, the segments ``S``;
3. give each remaining border pixel to its nearest segment
   (``skimage.segmentation.expand_labels``), so that borders do not count as
   a segment of their own;
4. restrict to the ground truth's foreground (pixels where ``T > 0``) and
   build the joint distribution ``p_ij`` of segment i of S and object j of T,
   with marginals ``s_i`` and ``t_j``;
5. V_Rand = 2 sum p_ij^2 / (sum s_i^2 + sum t_j^2), the harmonic mean of the
   split score sum p_ij^2 / sum t_j^2 and the merge score sum p_ij^2 / sum s_i^2;
   V_Info = 2 I(S;T) / (H(S) + H(T)), the harmonic mean of I/H(S) (split) and
   I/H(T) (merge);
6. average each over the slices, and take the best value over the thresholds.

Scores are in [0, 1], higher is better. ``skimage.metrics.adapted_rand_error``
is 1 - V_Rand without steps 1-3 and 6.

A segmentation is scored as the challenge scored one submitted as a map: its objects' borders
(a pixel whose 4-neighbour has another label) and its background (label 0) as the membrane,
every other pixel as the interior, through steps 2-5 at one threshold
(:func:`segmentation_v_scores`). This is how segmentation methods were ranked on the challenge's
leaderboard (e.g. the mutex watershed's V_Rand 0.988), and it is close to 1 - the adapted
Rand error of the same objects.

The challenge's first ranking also had a *pixel error*: 1 - the maximal F-score of
pixel similarity over the same thresholds, the cell interior (``p > threshold``
against ``T > 0``) being the positive class, pixels pooled over the stack
(:func:`interior_counts`, :func:`best_pixel_error`).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from skimage.measure import label as connected_components
from skimage.morphology import thin
from skimage.segmentation import expand_labels, find_boundaries

THRESHOLDS = tuple(round(0.1 * step, 1) for step in range(10))
THINNING_PAD = 16


def thinned_segments(interior_probability: np.ndarray, threshold: float) -> np.ndarray:
    """Steps 1-3: segments of ``p > threshold`` with one-pixel borders given to the nearest segment."""
    # mirror before thinning: thinning treats the image edge as background and would
    # shorten every membrane that reaches it, merging the cells on both sides
    border = np.pad(interior_probability <= threshold, THINNING_PAD, mode="reflect")
    border = thin(border)[THINNING_PAD:-THINNING_PAD, THINNING_PAD:-THINNING_PAD]
    segments = connected_components(~border, connectivity=1)
    return expand_labels(segments, distance=2)


def contingency(segments: np.ndarray, truth: np.ndarray) -> sparse.csr_matrix:
    """Step 4: joint distribution of (segment, object) over the ground truth's foreground."""
    foreground = truth > 0
    rows, cols = segments[foreground].astype(np.int64), truth[foreground].astype(np.int64)
    counts = sparse.coo_matrix((np.ones(rows.size), (rows, cols))).tocsr()
    return counts / max(rows.size, 1)


def v_rand(joint: sparse.csr_matrix) -> tuple[float, float, float]:
    """(V_Rand, split score, merge score) of a joint distribution (step 5)."""
    pairs = float(joint.multiply(joint).sum())
    segment_sum = float(np.square(np.asarray(joint.sum(axis=1))).sum())
    truth_sum = float(np.square(np.asarray(joint.sum(axis=0))).sum())
    if pairs == 0:
        return 0.0, 0.0, 0.0
    return 2 * pairs / (segment_sum + truth_sum), pairs / truth_sum, pairs / segment_sum


def entropy(probabilities: np.ndarray) -> float:
    probabilities = probabilities[probabilities > 0]
    return float(-(probabilities * np.log(probabilities)).sum())


def v_info(joint: sparse.csr_matrix) -> tuple[float, float, float]:
    """(V_Info, split score, merge score) of a joint distribution (step 5)."""
    segment_entropy = entropy(np.asarray(joint.sum(axis=1)).ravel())
    truth_entropy = entropy(np.asarray(joint.sum(axis=0)).ravel())
    mutual = segment_entropy + truth_entropy - entropy(joint.data)
    if segment_entropy + truth_entropy == 0:
        return 1.0, 1.0, 1.0  # one segment, one object: identical partitions
    split = mutual / segment_entropy if segment_entropy > 0 else 1.0
    merge = mutual / truth_entropy if truth_entropy > 0 else 1.0
    return 2 * mutual / (segment_entropy + truth_entropy), split, merge


def slice_scores(interior_probability: np.ndarray, truth: np.ndarray,
                 thresholds: tuple[float, ...] = THRESHOLDS) -> np.ndarray:
    """(thresholds, 2) array of V_Rand and V_Info of one slice at each threshold."""
    scores = []
    for threshold in thresholds:
        joint = contingency(thinned_segments(interior_probability, threshold), truth)
        scores.append((v_rand(joint)[0], v_info(joint)[0]))
    return np.array(scores)


def segment_interior(segments: np.ndarray) -> np.ndarray:
    """The map a segmentation is submitted as: 1 inside its objects, 0 on their borders (both
    sides of each) and on its background (0)."""
    borders = find_boundaries(segments, connectivity=1, mode="thick")
    return ((segments > 0) & ~borders).astype(np.float32)


def segmentation_v_scores(segments: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(V_Rand, V_Info) of a slice's ``segments`` against ``truth``, submitted as their borders."""
    rand, info = slice_scores(segment_interior(segments), truth, thresholds=(0.5,))[0]
    return float(rand), float(info)


def best_scores(per_slice: list[np.ndarray], thresholds: tuple[float, ...] = THRESHOLDS) -> dict[str, float]:
    """Step 6: the best slice-averaged V_Rand and V_Info over the thresholds, and where."""
    mean = np.mean(per_slice, axis=0)
    best_rand, best_info = int(np.argmax(mean[:, 0])), int(np.argmax(mean[:, 1]))
    return {"v_rand": float(mean[best_rand, 0]), "v_rand_threshold": thresholds[best_rand],
            "v_info": float(mean[best_info, 1]), "v_info_threshold": thresholds[best_info]}


def interior_counts(interior_probability: np.ndarray, truth: np.ndarray,
                    thresholds: tuple[float, ...] = THRESHOLDS) -> np.ndarray:
    """(thresholds, 3) counts of true-positive, false-positive and false-negative interior
    pixels of one slice at each threshold (interior: ``p > threshold``; truth: ``T > 0``)."""
    actual = truth > 0
    counts = []
    for threshold in thresholds:
        predicted = interior_probability > threshold
        counts.append((np.count_nonzero(predicted & actual), np.count_nonzero(predicted & ~actual),
                       np.count_nonzero(~predicted & actual)))
    return np.array(counts, dtype=np.int64)


def best_pixel_error(counts: np.ndarray, thresholds: tuple[float, ...] = THRESHOLDS) -> dict[str, float]:
    """The challenge's pixel error, 1 - the best F-score over the thresholds, from the summed
    ``counts`` of :func:`interior_counts`, and the threshold where it is reached."""
    true_positive, false_positive, false_negative = counts.T.astype(np.float64)
    denominator = 2 * true_positive + false_positive + false_negative
    f_score = np.divide(2 * true_positive, denominator, out=np.ones_like(denominator), where=denominator > 0)
    best = int(np.argmax(f_score))
    return {"isbi_pixel_error": float(1 - f_score[best]), "isbi_pixel_error_threshold": thresholds[best]}
