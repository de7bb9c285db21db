"""Verification of the FAISS shortlist with local features: does the query really show this instance?

The embedding ranks instances by a global descriptor of a 224 px crop, which averages small details away. The
strongest instance-image-navigation systems decide "found" from keypoint matches between the goal image and
the observation instead (IEVE, Lei et al., CVPR 2024, arXiv 2403.14163, with LightGlue; Mod-IIN, Krantz et
al., ICCV 2023, arXiv 2304.10029, with SuperGlue). Those matchers need downloaded weights; this module uses
classic ones that need none (OpenCV):

- ``sift``: SIFT keypoints and descriptors (Lowe, IJCV 2004), brute-force L2 2-NN matching;
- ``orb``: oriented FAST keypoints and rotated BRIEF binary descriptors (Rublee et al., ICCV 2011), Hamming
  2-NN matching (AKAZE is not in the OpenCV 5 main modules this project pins);

each followed by Lowe's ratio test and a RANSAC homography (``cv2.findHomography`` with USAC MAGSAC++, Barath
et al., CVPR 2020, when the OpenCV build has it). The evidence for an instance is the largest number of RANSAC
inliers between the query and any of the instance's views checked (its best-matching views in the shortlist,
at most ``retrieval.verify_views``). Features of stored views are computed once and cached in memory.

How the evidence enters the answer (ranking and open-set decision) is :class:`ssl_nav.retrieval.query.Retriever`'s
job; ``retrieval.verify`` switches the stage off (the default, see BENCHMARKS.md "Verification").
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

MATCHERS: tuple[str, ...] = ("sift", "orb")
#: fewest ratio-test matches for which a homography is fitted (4 points define one; fewer inliers are noise)
MIN_MATCHES = 8


@dataclass
class InstanceVerification:
    """The local-feature evidence for one shortlisted instance."""

    instance_id: str
    inliers: int  #: RANSAC inliers of its best-matching view (0: none, or fewer than MIN_MATCHES matches)
    matches: int  #: ratio-test matches of that view
    view_id: str | None  #: that view
    n_views: int  #: views checked

    def to_json(self) -> dict:
        return {"inliers": self.inliers, "matches": self.matches, "view_id": self.view_id, "n_views": self.n_views}


def evidence(inliers: int, scale: float) -> float:
    """Inlier count mapped to [0, 1]: ``log(1 + n) / log(1 + scale)``, capped at 1 (``scale`` inliers = full
    evidence; the log makes the first inliers count most)."""
    return min(1.0, math.log1p(max(0, int(inliers))) / math.log1p(max(1.0, float(scale))))


class LocalFeatureVerifier:
    """Keypoint matching of a query against stored views (see the module docstring). Thread-safe."""

    def __init__(self, matcher: str = "sift", ratio: float = 0.8, ransac_px: float = 5.0, max_side: int = 320,
                 cache_views: int = 20000) -> None:
        import cv2

        if matcher not in MATCHERS:
            raise ValueError(f"retrieval.verify_matcher must be one of {', '.join(MATCHERS)}, got {matcher!r}")
        self.matcher = matcher
        self.ratio = float(ratio)
        self.ransac_px = float(ransac_px)
        self.max_side = int(max_side)
        self._cv2 = cv2
        if matcher == "sift":
            self._detector = cv2.SIFT_create(nfeatures=1000)
            self._norm = cv2.NORM_L2
        else:
            self._detector = cv2.ORB_create(nfeatures=1000)
            self._norm = cv2.NORM_HAMMING
        self._method = getattr(cv2, "USAC_MAGSAC", cv2.RANSAC)
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()
        self._cache_views = int(cache_views)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ features
    def features(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(xy, descriptors)`` of a uint8 RGB image (grayscale, longer side at most ``max_side``)."""
        cv2 = self._cv2
        gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        h, w = gray.shape
        s = self.max_side / max(h, w)
        if s < 1.0:
            gray = cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        kps, desc = self._detector.detectAndCompute(gray, None)
        xy = np.array([k.pt for k in kps], dtype=np.float32).reshape(-1, 2)
        return xy, desc

    def view_features(self, view_id: str, load: Callable[[str], np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """The cached features of a stored view (``load(view_id)`` -> its RGB image on a miss)."""
        with self._lock:
            hit = self._cache.get(view_id)
            if hit is not None:
                self._cache.move_to_end(view_id)
                return hit
        feats = self.features(load(view_id))
        with self._lock:
            self._cache[view_id] = feats
            while len(self._cache) > self._cache_views:
                self._cache.popitem(last=False)
        return feats

    def forget(self, view_ids: Sequence[str] | None = None) -> None:
        """Drop cached features (all, or of ``view_ids``): after views are removed or the store is rewritten."""
        with self._lock:
            if view_ids is None:
                self._cache.clear()
            else:
                for v in view_ids:
                    self._cache.pop(v, None)

    # ------------------------------------------------------------------ matching
    def match(self, q: tuple[np.ndarray, np.ndarray | None], v: tuple[np.ndarray, np.ndarray | None]
              ) -> tuple[int, int]:
        """``(ratio-test matches, RANSAC homography inliers)`` between two feature sets."""
        cv2 = self._cv2
        (qxy, qd), (vxy, vd) = q, v
        if qd is None or vd is None or len(qd) < 2 or len(vd) < 2:
            return 0, 0
        bf = cv2.BFMatcher(self._norm)
        good = [m[0] for m in bf.knnMatch(qd, vd, k=2) if len(m) == 2 and m[0].distance < self.ratio * m[1].distance]
        if len(good) < MIN_MATCHES:
            return len(good), 0
        src = qxy[[m.queryIdx for m in good]].reshape(-1, 1, 2)
        dst = vxy[[m.trainIdx for m in good]].reshape(-1, 1, 2)
        _, mask = cv2.findHomography(src, dst, self._method, self.ransac_px, maxIters=2000, confidence=0.999)
        return len(good), int(mask.sum()) if mask is not None else 0

    def verify(self, query: np.ndarray | tuple[np.ndarray, np.ndarray | None],
               candidates: Sequence[tuple[str, Sequence[str]]], load: Callable[[str], np.ndarray]
               ) -> list[InstanceVerification]:
        """Evidence for each ``(instance_id, view_ids)`` candidate: the best of its views by inliers.

        ``query`` is the query's RGB image or its :meth:`features`; ``load(view_id)`` reads a stored view.
        """
        q = query if isinstance(query, tuple) else self.features(query)
        out = []
        for inst, views in candidates:
            best = (0, 0, None)
            for vid in views:
                m, n = self.match(q, self.view_features(vid, load))
                if (n, m) > best[:2]:
                    best = (n, m, vid)
            out.append(InstanceVerification(inst, best[0], best[1], best[2], len(views)))
        return out
