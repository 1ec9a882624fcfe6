"""CTR data: raw readers, feature encoding, splits and caches, generated default data."""
