"""URLs and text fit to print or record: no password, token or signed-URL secret in them.

The one helper every path uses. A URL is parsed (``urllib.parse``), never sliced: its userinfo
ends at the *last* ``@`` before the host (``http://alice:p@ss@host/`` has the password
``p@ss``), and a query parameter whose name looks like a secret (``token``, ``sig``,
``X-Amz-Signature``, ``api_key``, ``code``, ...) keeps its name but not its value. Printed text
(:func:`redact_text`: every line the CLI prints, the CI annotations, and through
:class:`RedactingFilter` the log records of MLflow and the libraries under it) also loses the
values of the secret variables this process holds (``SECRET_VARIABLES``, the password in
``MLFLOW_TRACKING_URI``) wherever they stand.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

MASK = "***"

# Credentials of the CI platform, the registry and mlops-ci itself. The training command (the
# pull request's code) gets none of them (pipeline/usercommand.py; data credentials such as
# AWS_* stay): MLflow reads the registry credentials from these, and mlops-ci logs the run
# itself. Printed text shows none of their values (redact_text) but those of SHOWN_VARIABLES.
SECRET_VARIABLES = (
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "SYSTEM_ACCESSTOKEN",
    "AZURE_DEVOPS_EXT_PAT",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    "DATABRICKS_TOKEN",
    "DATABRICKS_CLIENT_SECRET",
    "MLOPS_ADMIN_TOKEN",
)
# Withheld from the training command, but no secret in themselves: a user name and a file's
# path, which a message about them has to name.
SHOWN_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_CLIENT_CERT_PATH")
# Where runs go: the training command gets them without userinfo or secret query values, and
# printed text shows none of the password in them.
URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
# A value shorter than this is left in printed text: no real credential is that short, and
# masking "true" or "admin" would mangle every message that holds the word.
MIN_SECRET_LENGTH = 6

# Query parameter names that carry a credential: OAuth and API tokens, passwords, Azure SAS
# (sig), AWS and GCS signed URLs (X-Amz-Signature, X-Goog-Signature, ...), Azure Functions
# keys (code), and anything named like a key or secret.
_SECRET_NAME = re.compile(
    r"token|secret|passw|pwd|pass$|key|sig|auth|cred|session|^code$|^sas$|^x-amz-|^x-goog-",
    re.IGNORECASE,
)
# A URL inside free text (an error message): scheme://, then everything up to whitespace or a
# quote that ends it in a message.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")


def secret_name(name: str) -> bool:
    """Whether a query parameter (or variable) of this name holds a credential."""
    return bool(_SECRET_NAME.search(name))


def safe_url(url: str, userinfo: str = MASK, query: bool = True) -> str:
    """``url`` with its userinfo replaced by ``userinfo`` (``""`` drops it, with its ``@``)
    and the values of secret-looking query parameters masked (``query=False`` drops the
    query and fragment whole); text that is not a ``scheme://`` URL comes back unchanged
    (``git@github.com:a/b.git`` holds no secret)."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is no number: the netloc is not what it seems
    except ValueError:
        return _unparsable(url)
    netloc = parts.netloc
    if "@" in netloc:
        host = netloc.rpartition("@")[2]
        netloc = f"{userinfo}@{host}" if userinfo else host
    if not query:
        return f"{parts.scheme}://{netloc}{parts.path}"
    query_text = parts.query
    if query_text:
        pairs = parse_qsl(query_text, keep_blank_values=True)
        if any(secret_name(k) for k, _ in pairs):
            query_text = urlencode(
                [(k, MASK if secret_name(k) else v) for k, v in pairs], safe="*/:@,"
            )
    if (netloc, query_text) == (parts.netloc, parts.query):
        return url
    # Built by hand: urlunsplit drops the '//' of an empty host (sqlite:///x).
    return (
        f"{parts.scheme}://{netloc}{parts.path}"
        + (f"?{query_text}" if query_text else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )


def redact_urls(text: str) -> str:
    """Free text (an error message from MLflow, requests or git) with every URL in it made
    safe by :func:`safe_url`."""
    return _URL_IN_TEXT.sub(lambda m: safe_url(m.group(0)), text)


def _unparsable(url: str) -> str:
    """A URL ``urlsplit`` refuses (a bad IPv6 host, a port that is no number): keep only its
    scheme, as nothing after ``://`` can be told apart from a credential."""
    return f"{url.split('://', 1)[0]}://{MASK}"


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """The secret values ``env`` (this process's environment) holds, longest first: those of
    ``SECRET_VARIABLES`` (but ``SHOWN_VARIABLES``) and the password in each of
    ``URI_VARIABLES``, as written and percent-decoded; none shorter than ``MIN_SECRET_LENGTH``."""
    env = os.environ if env is None else env
    found = {env.get(name, "") for name in SECRET_VARIABLES if name not in SHOWN_VARIABLES}
    for name in URI_VARIABLES:
        password = _password(env.get(name, ""))
        found.update((password, unquote(password)))
    return sorted((v for v in found if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def redact_text(text: str, env: Mapping[str, str] | None = None) -> str:
    """Text to print (an error line, a log record, a CI annotation): each secret value of
    ``env`` (:func:`secret_values`) becomes ``***`` wherever it stands, and every URL is made
    safe by :func:`safe_url`."""
    for value in secret_values(env):
        text = text.replace(value, MASK)
    return redact_urls(text)


class RedactingFilter(logging.Filter):
    """A handler's filter that passes every record, rewritten by :func:`redact_text`: its
    message with its arguments, its traceback and its stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # the handler reports a record it cannot format, as without us
            return True
        masked = redact_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


_FILTER = RedactingFilter()


def redact_logs(*names: str) -> None:
    """Put :class:`RedactingFilter` on every handler of the named loggers, of the root logger
    and on logging's last resort (what prints a record when no handler is set up). On the
    handlers, not the loggers: a logger's filter never sees its children's records. Idempotent."""
    handlers = [logging.lastResort, *logging.getLogger().handlers]
    for name in names:
        handlers += logging.getLogger(name).handlers
    for handler in handlers:
        if handler is not None and _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


def _password(uri: str) -> str:
    """The password in a URI's userinfo (``""`` when none, or when it cannot be parsed)."""
    if "://" not in uri:
        return ""
    try:
        return urlsplit(uri).password or ""
    except ValueError:
        return ""
