"""Batch scoring: a job cut into tasks (plan), scored anywhere (score), on an engine (engines)."""
