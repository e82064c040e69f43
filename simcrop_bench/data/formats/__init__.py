"""File formats read and written by the data layer: NIfTI, MetaImage, Decathlon JSON."""
