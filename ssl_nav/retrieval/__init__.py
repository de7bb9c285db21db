"""Instance retrieval (SimView, arXiv 2404.09647): embed the robot's stored views, search them with FAISS, score
instances by their best view, decide whether the query's object is in the map at all (open-set scores,
calibrated on a calibration split), turn the winner into a navigation goal, and evaluate (top-1/top-5, mAP,
open-set AUROC, goal-distance error). docs/retrieval.md describes the commands, the protocol and the formats."""
