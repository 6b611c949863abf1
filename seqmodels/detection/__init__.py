"""Temporal activity detection in untrimmed videos: annotations, per-step targets, post-processing, mAP."""
