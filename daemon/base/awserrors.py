"""The one way awsd classifies AWS errors: throttled, transient, refused for good, denied.

Every retry decision (the outbox senders, the pollers, the reconciler, the exporters) asks these
functions, so "worth trying again" means the same everywhere. They look at botocore's
`ClientError` codes and at the exception types of botocore and aiohttp; aiohttp is looked up
only if something already imported it (no aiohttp error can exist otherwise), so importing this
module stays light for `awsd check-config`.
"""

from __future__ import annotations

import re
import sys

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "KMSThrottlingException",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
        "KMSInternalException",
    }
)
# A Pi without a real-time clock signs with a wrong time until NTP catches up after boot.
CLOCK_SKEW_CODES = frozenset(
    {"RequestTimeTooSkewed", "RequestExpired", "RequestInTheFuture", "SignatureExpired"}
)


ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthorizationError",
        "AuthorizationErrorException",
        "UnauthorizedOperation",
        "InvalidClientTokenId",
    }
)
"""What AWS answers when the credentials may not do something (or are not known)."""

IAM_HINT = "(the credentials lack this permission; `awsd iam-policy` prints what awsd needs)"

# An XML error body where botocore expected JSON (moto answers JSON-protocol services' auth
# failures this way, and so do some proxies): botocore then reports the HTTP status as the code
# and the whole body as the message.
_XML_ERROR = re.compile(r"<Code>([^<]*)</Code>\s*<Message>([^<]*)</Message>", re.S)


def _error(exc: ClientError) -> tuple[str, str]:
    err = exc.response.get("Error", {})
    code, message = str(err.get("Code", "") or ""), str(err.get("Message", "") or "")
    embedded = _XML_ERROR.search(message) if "<Code>" in message else None
    if embedded:
        code, message = embedded.group(1), embedded.group(2)
    return code, message


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a ClientError (`AWS.SimpleQueueService.NonExistentQueue`...)."""
    if isinstance(exc, ClientError):
        return _error(exc)[0] or None
    return None


def is_access_denied(exc: BaseException) -> bool:
    """The credentials may not make this call: an IAM fix away, worth retrying meanwhile."""
    return error_code(exc) in ACCESS_DENIED_CODES


def http_status(exc: BaseException) -> int | None:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status else None
    return None


BAD_REQUEST_CODES = frozenset(
    {
        "InvalidParameterValue",
        "InvalidParameter",
        "InvalidParameterException",
        "InvalidMessageContents",
        "MissingParameter",
        "ValidationError",
        "ValidationException",
        "ParameterValueInvalid",
        "InvalidArgumentException",
        "SerializationException",
        "InvalidAttributeValue",
        "InvalidParameterCombination",
        "InvalidRequestContentException",  # Lambda: the payload is not JSON
        "RequestTooLargeException",  # Lambda: the payload is too large
    }
)


def is_bad_request(exc: BaseException) -> bool:
    """AWS refused the request's content: sending it again unchanged will fail again. (Missing
    resources, denied access and bad credentials are not: they may be fixed while we wait.)"""
    return error_code(exc) in BAD_REQUEST_CODES


def is_throttle(exc: BaseException) -> bool:
    code = error_code(exc)
    return code in THROTTLE_CODES or http_status(exc) == 429


def is_connection_error(exc: BaseException) -> bool:
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None and isinstance(exc, aiohttp.ClientError):
        return True
    return isinstance(
        exc,
        EndpointConnectionError
        | ConnectionClosedError
        | ConnectTimeoutError
        | ReadTimeoutError
        | TimeoutError
        | ConnectionError,
    )


CREDENTIAL_CODES = ACCESS_DENIED_CODES | {
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
}


def is_credentials_error(exc: BaseException) -> bool:
    """No usable credentials, or not allowed: an operator fixes it (or the instance role comes
    up), so data waiting to be sent is worth keeping rather than dropping."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return True
    return error_code(exc) in CREDENTIAL_CODES


def is_clock_skew(exc: BaseException) -> bool:
    """AWS refused the request's signing time: retry once the clock is right (after NTP)."""
    if error_code(exc) in CLOCK_SKEW_CODES:
        return True
    if isinstance(exc, ClientError):
        message = str(exc.response.get("Error", {}).get("Message", "")).lower()
        return "signature expired" in message or "signature not yet current" in message
    return False


def is_retryable(exc: BaseException) -> bool:
    """Worth trying again later: throttling, AWS-side 5xx, timeouts, lost connections."""
    if is_throttle(exc) or is_connection_error(exc):
        return True
    if error_code(exc) in TRANSIENT_CODES or is_clock_skew(exc):
        return True
    status = http_status(exc)
    if status is not None and status >= 500:
        return True
    return isinstance(exc, BotoCoreError) and "timeout" in type(exc).__name__.lower()


def describe_error(exc: BaseException) -> str:
    """A one-line description for logs: the AWS code and message, or the exception type. A
    permission error says so and points at `awsd iam-policy`, whichever worker logs it."""
    if isinstance(exc, ClientError):
        code, message = _error(exc)
        text = f"{code or 'ClientError'}: {message}".strip()
        if code in ACCESS_DENIED_CODES:
            text += f" {IAM_HINT}"
        return text
    return f"{type(exc).__name__}: {exc}"
