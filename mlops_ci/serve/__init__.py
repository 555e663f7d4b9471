"""The scoring service (`mlops-ci serve`): FastAPI on uvicorn, from the `serve` extra."""
