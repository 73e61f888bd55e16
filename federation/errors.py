"""The one error family of the project.

Every error a user or a peer can cause is a :class:`CreditNetError` with an
:class:`ErrorCode`. The node's service layer maps codes to gRPC status codes in one
place (``node/service/errors.py``); the CLI prints ``str(error)`` and exits non-zero.
Messages never contain a personal identifier in clear.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    """What kind of failure an error is; decides the gRPC status and the CLI exit code."""

    INVALID_INPUT = "invalid input"
    NOT_FOUND = "not found"
    ALREADY_EXISTS = "already exists"
    PERMISSION_DENIED = "permission denied"
    UNAUTHENTICATED = "unauthenticated"
    FAILED_PRECONDITION = "failed precondition"
    UNAVAILABLE = "unavailable"
    RESOURCE_EXHAUSTED = "resource exhausted"
    INTERNAL = "internal"


class CreditNetError(Exception):
    """Base of every error this project raises on purpose."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """The message plus what an operator can do about it."""
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class InvalidInputError(CreditNetError):
    code = ErrorCode.INVALID_INPUT


class NotFoundError(CreditNetError):
    code = ErrorCode.NOT_FOUND


class AlreadyExistsError(CreditNetError):
    code = ErrorCode.ALREADY_EXISTS


class UnauthenticatedError(CreditNetError):
    code = ErrorCode.UNAUTHENTICATED


class PermissionDeniedError(CreditNetError):
    code = ErrorCode.PERMISSION_DENIED


class FailedPreconditionError(CreditNetError):
    code = ErrorCode.FAILED_PRECONDITION


class UnavailableError(CreditNetError):
    code = ErrorCode.UNAVAILABLE


class QuotaExceededError(CreditNetError):
    """A daily allowance is used up (a peer's probes or disclosures at a holder)."""

    code = ErrorCode.RESOURCE_EXHAUSTED


# --- identifiers -----------------------------------------------------------------


class InvalidIdentifierError(InvalidInputError):
    """A subject identifier (USCC or resident ID) is malformed; the message says how."""


# --- signatures and the federation manifest --------------------------------------


class SignatureError(CreditNetError):
    """A signature does not verify, or a key cannot be used."""

    code = ErrorCode.PERMISSION_DENIED


class ManifestError(CreditNetError):
    """Base of the federation manifest errors (python-tuf style family)."""

    code = ErrorCode.FAILED_PRECONDITION


class ManifestFormatError(ManifestError):
    """The manifest document is not well formed."""

    code = ErrorCode.INVALID_INPUT


class UnsignedManifestError(ManifestError):
    """Not enough valid signatures from the members that must sign."""

    code = ErrorCode.PERMISSION_DENIED


class BadVersionNumberError(ManifestError):
    """Rollback, equal version, or a gap in the chain of versions."""


class ExpiredManifestError(ManifestError):
    """The manifest has expired: refusing it stops a freeze attack."""


class WrongFederationError(ManifestError):
    """The manifest belongs to another federation."""


# --- the node's own files ----------------------------------------------------------


class ConfigError(CreditNetError):
    """The node's configuration is missing or broken."""

    code = ErrorCode.FAILED_PRECONDITION


class KeyFileError(CreditNetError):
    """A key file is missing, unreadable, or readable by others."""

    code = ErrorCode.FAILED_PRECONDITION


class StorageError(CreditNetError):
    """The database cannot be reached or is not at the expected schema."""

    code = ErrorCode.UNAVAILABLE


# --- sanction-list logs --------------------------------------------------------------


class ListEntryError(InvalidInputError):
    """A list entry, removal or objection is not valid (the message says which field)."""


class ConflictError(AlreadyExistsError):
    """The same decision (authority, document number) was submitted with other content."""


class InvalidProofError(CreditNetError):
    """A Merkle inclusion or consistency proof does not verify, or is malformed."""

    code = ErrorCode.FAILED_PRECONDITION


class CheckpointError(CreditNetError):
    """A signed checkpoint is malformed, not signed by its origin, or from the future."""

    code = ErrorCode.PERMISSION_DENIED


class SplitViewError(CreditNetError):
    """A city showed two histories that cannot both be true; sync from it is stopped."""

    code = ErrorCode.FAILED_PRECONDITION


# --- credit reports and their status lists ------------------------------------------


class ReportFormatError(InvalidInputError):
    """A credit report or a report status list is malformed (the message says which field)."""


class ReportStatusError(FailedPreconditionError):
    """A status change that cannot be made (e.g. revoking a report already revoked)."""


class StatusListError(CreditNetError):
    """A report status list is not signed by its issuer, or contradicts the copy held."""

    code = ErrorCode.PERMISSION_DENIED


class StaleStatusListError(StatusListError):
    """A status list older than the copy held: refused, as a rollback would be."""

    code = ErrorCode.FAILED_PRECONDITION


# --- ratings -------------------------------------------------------------------------------


class RatingError(InvalidInputError):
    """A rating scale, statement, scale mapping or recognition policy is not valid."""


class RatingVerificationError(CreditNetError):
    """A signed rating statement or scale mapping is not signed by its issuer's key."""

    code = ErrorCode.PERMISSION_DENIED


class CommonScaleMismatchError(RatingVerificationError):
    """A scale mapping maps onto another common scale than the manifest's."""

    code = ErrorCode.FAILED_PRECONDITION


class ScaleMappingConflictError(AlreadyExistsError):
    """An issuer signed two different mappings of one scale with the same version."""
