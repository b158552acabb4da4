"""The data side of the project, outside the modelling core: building the examplar sets (command
``sama-build-examplar`` / ``tools/build_examplar_data.py``; overview and command line in ``samadata.examplar``)."""
