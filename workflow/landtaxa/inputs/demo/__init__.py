"""The built-in demo: a synthetic multi-granule region with a known ground truth.

:mod:`.spec` says what the region is and where its files go (read when the workflow plans);
:mod:`.scene` synthesises the images and the truth (the workflow's ``demo`` step).
"""
