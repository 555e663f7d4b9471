"""Markdown that is safe with any string, mermaid charts, and a comparison rendered for a
pull request or a job summary."""
