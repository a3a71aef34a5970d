"""The shared image-id and route rules; they live in core (``datasources.imageids``)."""

from datasources.imageids import image_ids_for_display_set, instances_of, number_of_frames, study_uids_from_route

__all__ = ["image_ids_for_display_set", "instances_of", "number_of_frames", "study_uids_from_route"]
