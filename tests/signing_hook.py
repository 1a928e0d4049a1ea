"""A signing hook for the tests (config key ``sign_hrefs``): appends the signature the test server demands.

Like ``planetary_computer.sign``, it takes a URL and returns it with a short-lived credential in its
query string, read here from ``$LANDTAXA_TEST_SIGNATURE`` by whichever process signs.
"""

from __future__ import annotations

import os


def sign(url: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}sig={os.environ['LANDTAXA_TEST_SIGNATURE']}"
