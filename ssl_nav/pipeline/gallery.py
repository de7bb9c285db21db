"""``report.png``: each query photo with its top-3 instances under every model (green = correct, red = wrong)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ssl_nav.frames import write_png
from ssl_nav.views.store import ViewStore

def write_gallery(path: Path, queries: list[dict], images: list[np.ndarray], store: ViewStore, retrievers: dict,
                  max_rows: int = 10, tile: int = 112) -> None:
    """report.png: per row a query photo, then its top-3 instances under each model (best-matching stored view),
    bordered green when correct and red when wrong; not-in-map queries are labelled as such."""
    names = list(retrievers)
    views_by_id = {v["view_id"]: v for v in store.views()}
    rows_idx = [i for i, q in enumerate(queries) if q["instance_id"] is not None][:max_rows - 2]
    rows_idx += [i for i, q in enumerate(queries) if q["instance_id"] is None][:max_rows - len(rows_idx)]
    pad, head = 6, 22
    width = pad + (tile + pad) * (1 + 3 * len(names)) + pad * len(names)
    canvas_rows = []
    header = np.full((head + 4, width, 3), 255, np.uint8)
    x = pad + tile + pad
    for n in names:
        cv2.putText(header, f"{n}: top-3", (x + 2, head - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        x += 3 * (tile + pad) + pad
    cv2.putText(header, "query", (pad + 2, head - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    canvas_rows.append(header)
    for i in rows_idx:
        q = queries[i]
        row = np.full((tile + head + pad, width, 3), 255, np.uint8)
        qi = cv2.resize(images[i], (tile, tile), interpolation=cv2.INTER_AREA)
        row[head:head + tile, pad:pad + tile] = qi
        label = f"#{q['instance_id']}" if q["instance_id"] is not None else "not in map"
        cv2.putText(row, label, (pad + 2, head - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        x = pad + tile + pad
        for n in names:
            ranked = retrievers[n].rank(retrievers[n].embedder.embed([images[i]])[0])[0][:3]
            for j, s in enumerate(ranked):
                v = views_by_id.get(s.best_view_id)
                img = store.load_image(v) if v is not None else np.zeros((tile, tile, 3), np.uint8)
                img = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA)
                correct = q["instance_id"] is not None and s.instance_id == q["instance_id"]
                color = (0, 170, 0) if correct else (210, 0, 0)
                cv2.rectangle(img, (0, 0), (tile - 1, tile - 1), color, 4)
                row[head:head + tile, x:x + tile] = img
                cv2.putText(row, f"#{s.instance_id} {s.score:.2f}", (x + 2, head - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                            color, 1, cv2.LINE_AA)
                x += tile + pad
            x += pad
        canvas_rows.append(row)
    write_png(path, np.concatenate(canvas_rows, axis=0))
