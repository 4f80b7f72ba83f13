"""The algorithms of one subject's structural MRI: pure functions on arrays, images and files (no nipype).

One module per processing stage, named as the stage is in ``workflows/`` and ``smriflow/interfaces/``:
:mod:`~smriflow.anat.conform`, :mod:`~smriflow.anat.bias`, :mod:`~smriflow.anat.brain_extraction`,
:mod:`~smriflow.anat.tissue_segmentation`, :mod:`~smriflow.anat.spatial_normalization`,
:mod:`~smriflow.anat.modulation`, :mod:`~smriflow.anat.lesions`, :mod:`~smriflow.anat.contrasts`.
"""
