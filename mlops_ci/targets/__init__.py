"""Deploy targets: ``local`` (a background `mlops-ci serve`), ``docker`` (the packaged image
through the Docker SDK) and ``kubernetes`` (manifests, applied or written)."""
