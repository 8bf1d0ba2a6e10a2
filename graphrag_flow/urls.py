"""URLs as they may be shown: never with the `user:password@` part a URL can carry.

`llm.api_base` and `neo4j.uri` may embed credentials (`https://user:pass@host/v1`); every
message, log line, summary and artifact that names one of them goes through `safe_url`.
"""

from __future__ import annotations


def _authority_span(url: str) -> tuple[int, int] | None:
    """Start and end of the `//authority` part of `url`, or None when it has none."""
    start = url.find("//")
    if start < 0 or ("://" not in url and not url.startswith("//")):
        return None
    start += 2
    end = len(url)
    for sep in "/?#":
        i = url.find(sep, start)
        if 0 <= i < end:
            end = i
    return start, end


def url_userinfo(url: str) -> str:
    """The `user:password` part of `url` ('' when there is none): a secret to scrub from texts."""
    span = _authority_span(url)
    if span is None:
        return ""
    authority = url[span[0]:span[1]]
    return authority.rpartition("@")[0]


def safe_url(url: str) -> str:
    """`url` without its `user:password@` part; any scheme (http, bolt, neo4j+s, ...)."""
    span = _authority_span(url)
    if span is None:
        return url
    start, end = span
    authority = url[start:end]
    if "@" not in authority:
        return url
    return url[:start] + authority.rpartition("@")[2] + url[end:]


def scrub_url(text: str, url: str) -> str:
    """`text` with `url` shown safely and its user info, wherever it appears alone, masked."""
    shown = safe_url(url)
    if shown != url:
        text = text.replace(url, shown)
        userinfo = url_userinfo(url)
        for secret in {userinfo, userinfo.partition(":")[2]}:
            if len(secret) >= 4:
                text = text.replace(secret, "***")
    return text
