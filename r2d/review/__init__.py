"""The review workflow: the store and its audit chain, a nurse's session (shown case, drafts, queue), the
export of nurse-post-processed rationales for Stage 2, agreement, adjudication, ordering and improve runs."""

from r2d.review.export import ExportPolicy, export_stage2_dataset
from r2d.review.store import ReviewRecord, ReviewStore

__all__ = ["ExportPolicy", "export_stage2_dataset", "ReviewRecord", "ReviewStore"]
