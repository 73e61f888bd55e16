"""The one key function of private matching: how a subject identifier enters the table.

Holder and querier MUST place and look up a subject under the identical string, or a
listed subject silently never matches. Both sides call :func:`subject_key`, and nothing
else in the node derives a matching key.
"""

from __future__ import annotations

from federation.subjects import normalize_identifier


def subject_key(identifier: str) -> str:
    """The matching key of a subject identifier (USCC or resident ID): its normalised form.

    The same normalisation the node applies to every identifier it stores or signs
    (:func:`federation.subjects.normalize_identifier`: no whitespace, half-width, ASCII
    upper case), so ``"９１３５０２００ma2yj1xr9g"`` and ``"91350200MA2YJ1XR9G"`` share a key.
    Validation is the caller's business (entries on a list are valid by construction; a
    querier checks user input with :func:`federation.subjects.parse_subject` first).
    """
    return normalize_identifier(identifier)
