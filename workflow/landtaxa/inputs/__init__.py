"""What the workflow reads: the image inventory (sheets, folders, STAC catalogs), the area of
interest, the common grid of tiles and each date's mosaic on it, and the built-in demo region."""
