"""Terminal output: text safe to print whatever it holds, and progress (rich on a terminal,
plain lines in CI logs)."""
