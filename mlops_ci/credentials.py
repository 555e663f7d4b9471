"""URLs and text fit to print or record: no password, token or signed-URL secret in them.

The one helper every path uses. A URL is parsed (``urllib.parse``), never sliced: its userinfo
ends at the *last* ``@`` before the host (``http://alice:p@ss@host/`` has the password
``p@ss``), and a query parameter whose name looks like a secret (``token``, ``sig``,
``X-Amz-Signature``, ``api_key``, ``code``, ...) keeps its name but not its value.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

MASK = "***"
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
