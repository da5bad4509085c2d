"""API Gateway's IAM auth (``api.auth: iam``) for the local gateway: AWS Signature Version 4.

:func:`verify_signature` checks a request the way API Gateway checks one for a method with
``AWS_IAM`` authorization (service ``execute-api``): the ``Authorization`` header, the credential
scope, the clock skew, and then the signature itself, recomputed with botocore's signer from the
known key pair and the request's own ``X-Amz-Date`` (or ``Date``). A refusal is a :class:`SignatureRejected`
carrying API Gateway's gateway response type and its own message (docs/local-platform.md).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from emulator.isolation import AccessKeyPair
from emulator.runtime import HttpRequest

SERVICE = "execute-api"
ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
MAX_CLOCK_SKEW = timedelta(minutes=5)  # API Gateway's window either side of its own clock

MISSING_TOKEN = "MISSING_AUTHENTICATION_TOKEN"
INVALID_SIGNATURE = "INVALID_SIGNATURE"
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)
INVALID_SECURITY_TOKEN = "The security token included in the request is invalid."


class SignatureRejected(Exception):
    """API Gateway refuses the request (403): its gateway response type and its own message."""

    def __init__(self, response_type: str, message: str) -> None:
        super().__init__(message)
        self.response_type = response_type
        self.message = message


@dataclass(frozen=True)
class Authorization:
    """The parts of a SigV4 ``Authorization`` header."""

    access_key_id: str
    scope_date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str


def verify_signature(
    request: HttpRequest, credentials: AccessKeyPair, region: str, now: datetime | None = None
) -> str:
    """The access key id of a request correctly signed with ``credentials`` for ``region``;
    :class:`SignatureRejected` otherwise."""
    header = request.header("Authorization")
    if not header:
        raise SignatureRejected(MISSING_TOKEN, "Missing Authentication Token")
    authorization = parse_authorization(header)
    time = signing_time(request)
    _check_signed_headers(request, authorization, time)
    _check_scope(authorization, time.timestamp, region)
    _check_identity(request, authorization, credentials)
    _check_clock(time, now or datetime.now(UTC))
    _check_signature(request, authorization, time.timestamp, credentials, region)
    return authorization.access_key_id


def parse_authorization(header: str) -> Authorization:
    """``AWS4-HMAC-SHA256 Credential=K/D/R/S/aws4_request, SignedHeaders=a;b, Signature=hex``."""
    algorithm, _, rest = header.strip().partition(" ")
    fields = dict(_field(part) for part in rest.split(",")) if algorithm == ALGORITHM else {}
    missing = [name for name in ("Credential", "Signature", "SignedHeaders") if not fields.get(name)]
    if missing:
        raise SignatureRejected(
            INVALID_SIGNATURE,
            " ".join(f"Authorization header requires '{name}' parameter." for name in missing),
        )
    credential = fields["Credential"].split("/")
    if len(credential) != 5:
        raise SignatureRejected(
            INVALID_SIGNATURE,
            "Credential must have exactly 5 slash-delimited elements, "
            f"e.g. keyid/date/region/service/term, got '{fields['Credential']}'",
        )
    access_key_id, scope_date, scope_region, service, terminator = credential
    return Authorization(
        access_key_id=access_key_id,
        scope_date=scope_date,
        region=scope_region,
        service=service,
        terminator=terminator,
        signed_headers=tuple(fields["SignedHeaders"].split(";")),
        signature=fields["Signature"],
    )


def _field(part: str) -> tuple[str, str]:
    name, _, value = part.strip().partition("=")
    return name, value


@dataclass(frozen=True)
class SigningTime:
    """When the client signed: ``X-Amz-Date``'s value, or the ``Date`` header's if it has none."""

    header: str  # the header it came from, lower case: it must be one of the signed headers
    timestamp: str  # in SigV4's basic ISO-8601 format, ``20240131T235959Z``

    @property
    def moment(self) -> datetime:
        return datetime.strptime(self.timestamp, SIGV4_TIMESTAMP).replace(tzinfo=UTC)


def signing_time(request: HttpRequest) -> SigningTime:
    """The request's signing time, from ``X-Amz-Date`` (or ``Date``), in SigV4's format."""
    amz_date, http_date = request.header("X-Amz-Date"), request.header("Date")
    if amz_date:
        try:
            datetime.strptime(amz_date, SIGV4_TIMESTAMP)
        except ValueError:
            raise SignatureRejected(
                INVALID_SIGNATURE, f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'."
            ) from None
        return SigningTime("x-amz-date", amz_date)
    if http_date:
        try:
            moment = parsedate_to_datetime(http_date).astimezone(UTC)
        except (TypeError, ValueError):
            raise SignatureRejected(
                INVALID_SIGNATURE, f"Date header is not an HTTP date: '{http_date}'."
            ) from None
        return SigningTime("date", _stamp(moment))
    raise SignatureRejected(
        INVALID_SIGNATURE,
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
    )


def _check_signed_headers(request: HttpRequest, authorization: Authorization, time: SigningTime) -> None:
    """The headers that bind a signature to this request and this moment must be among those signed."""
    required = {"host": "'Host' or ':authority'", time.header: f"'{time.header.title()}'"}
    if request.header("X-Amz-Security-Token") is not None:
        required["x-amz-security-token"] = "'X-Amz-Security-Token'"
    for name, label in required.items():
        if name not in authorization.signed_headers:
            raise SignatureRejected(
                INVALID_SIGNATURE, f"{label} must be a 'SignedHeader' in the AWS Authorization."
            )


def _check_scope(authorization: Authorization, timestamp: str, region: str) -> None:
    if authorization.scope_date != timestamp[:8]:
        raise SignatureRejected(
            INVALID_SIGNATURE,
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{authorization.scope_date}' != '{timestamp[:8]}', from '{timestamp}'.",
        )
    if authorization.region != region:
        raise SignatureRejected(
            INVALID_SIGNATURE, f"Credential should be scoped to a valid region, not '{authorization.region}'."
        )
    if authorization.service != SERVICE:
        raise SignatureRejected(
            INVALID_SIGNATURE, f"Credential should be scoped to correct service: '{SERVICE}'."
        )
    if authorization.terminator != TERMINATOR:
        raise SignatureRejected(
            INVALID_SIGNATURE,
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
            f"not '{authorization.terminator}'.",
        )


def _check_identity(request: HttpRequest, authorization: Authorization, credentials: AccessKeyPair) -> None:
    """Only the known key pair exists here; it has no session token, so a request with one is refused."""
    known_key = hmac.compare_digest(authorization.access_key_id.encode(), credentials.access_key_id.encode())
    if not known_key or request.header("X-Amz-Security-Token") is not None:
        raise SignatureRejected(INVALID_SIGNATURE, INVALID_SECURITY_TOKEN)


def _check_clock(time: SigningTime, now: datetime) -> None:
    """A signature holds for 5 minutes either side of the gateway's clock: a captured request cannot
    be replayed later."""
    earliest, latest = now - MAX_CLOCK_SKEW, now + MAX_CLOCK_SKEW
    timestamp = time.timestamp
    if time.moment < earliest:
        raise SignatureRejected(
            INVALID_SIGNATURE,
            f"Signature expired: {timestamp} is now earlier than {_stamp(earliest)} ({_stamp(now)} - 5 min.)",
        )
    if time.moment > latest:
        raise SignatureRejected(
            INVALID_SIGNATURE,
            f"Signature not yet current: {timestamp} is still later than {_stamp(latest)} "
            f"({_stamp(now)} + 5 min.)",
        )


def _stamp(moment: datetime) -> str:
    return moment.strftime(SIGV4_TIMESTAMP)


def _check_signature(
    request: HttpRequest,
    authorization: Authorization,
    timestamp: str,
    credentials: AccessKeyPair,
    region: str,
) -> None:
    """Recompute the signature over what was signed; a mismatch answers with what it should have been."""
    signed, intact = _as_signed(request, authorization, timestamp)
    signer = SigV4Auth(Credentials(credentials.access_key_id, credentials.secret_access_key), SERVICE, region)
    canonical_request = signer.canonical_request(signed)
    string_to_sign = signer.string_to_sign(signed, canonical_request)
    expected = signer.signature(string_to_sign, signed)
    if not (intact and hmac.compare_digest(expected.encode(), authorization.signature.encode())):
        raise SignatureRejected(
            INVALID_SIGNATURE,
            f"{SIGNATURE_MISMATCH}\n\nThe Canonical String for this request should have been\n"
            f"'{canonical_request}'\n\nThe String-to-Sign should have been\n'{string_to_sign}'\n",
        )


def _as_signed(request: HttpRequest, authorization: Authorization, timestamp: str) -> tuple[AWSRequest, bool]:
    """The request as its client signed it (the signed headers only, at its ``X-Amz-Date``), and
    whether this request still carries every signed header and the body any signed hash names."""
    url = f"http://{request.header('Host') or ''}{request.target}"
    signed = AWSRequest(method=request.method, url=url, data=request.body)
    signed.context["timestamp"] = timestamp
    intact = True
    for name in authorization.signed_headers:
        values = [value for key, value in request.headers if key.lower() == name]
        intact = intact and bool(values)
        for value in values:  # repeated headers sign as one comma-joined value, in order
            signed.headers[name] = value
    if "x-amz-content-sha256" in authorization.signed_headers:
        # botocore trusts a signed payload hash as is; API Gateway hashes the body it received.
        intact = intact and request.header("X-Amz-Content-SHA256") == hashlib.sha256(request.body).hexdigest()
    return signed, intact


__all__ = [
    "ALGORITHM",
    "SERVICE",
    "Authorization",
    "SignatureRejected",
    "parse_authorization",
    "verify_signature",
]
