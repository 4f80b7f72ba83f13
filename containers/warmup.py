"""Build smriflow's caches once, when the container image is built, so that nothing is derived or fetched
at run time: the MNI152NLin2009aSym template files (1 and 2 mm) made from the copy nilearn ships, and the
label images of the default atlases of ``anat_preproc``. Run by ``containers/Dockerfile`` and
``containers/smriflow.def`` with ``SMRIFLOW_CACHE`` set to a folder inside the image.
"""

from smriflow.utils.atlases import cached_atlas_dseg
from smriflow.utils.templates import get_template

#: the default ``atlases`` of workflows/anat_preproc.yml (tests/containers/test_containers.py checks it)
ATLASES = ("desikankilliany", "harvardoxford", "aal")

for resolution in (1, 2):
    for suffix in ("T1w", "mask"):
        print(get_template(resolution=resolution, suffix=suffix))
    for label in ("GM", "WM", "CSF"):
        print(get_template(resolution=resolution, suffix="probseg", label=label))
for atlas in ATLASES:
    print(cached_atlas_dseg(atlas))
