"""Instance retrieval (SimView, arXiv 2404.09647): embed stored views, search them with FAISS, score instances
by their best view, reject queries that are not in the map, turn the winner into a navigation goal, and
evaluate (top-1/top-5, mAP, open-set AUROC, goal-distance error)."""
