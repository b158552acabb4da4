"""The data side of the project, outside the modelling core: building the examplar sets (``samadata.examplar``,
command ``sama-build-examplar`` / ``tools/build_examplar_data.py``)."""
