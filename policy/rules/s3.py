"""S3: public access, ownership, encryption, versioning, TLS, access logs, lifecycle."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from policy.rules import (
    ADVISORY,
    MANDATORY,
    OURS,
    Context,
    Resource,
    Rule,
    StackRule,
    as_document,
    as_list,
    dig,
    has_tls_only_deny,
    is_public_allow,
    number,
    statements,
)

BUCKET = "aws:s3/bucket:Bucket"
BUCKET_V2 = "aws:s3/bucketV2:BucketV2"
BUCKETS = (BUCKET, BUCKET_V2)
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
POLICY = "aws:s3/bucketPolicy:BucketPolicy"
LOGGING = "aws:s3/bucketLogging:BucketLogging"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
PUBLIC_ACLS = ("public-read", "public-read-write", "authenticated-read")


def _flag(flag: str) -> Any:
    def check(props: Mapping[str, Any], _: Context) -> str | None:
        return None if props.get(flag) is True else f"public access block has {flag} off"

    return check


def _ownership_enforced(props: Mapping[str, Any], _: Context) -> str | None:
    ownership = dig(props, "rule", "objectOwnership")
    return None if ownership == "BucketOwnerEnforced" else f"object ownership is {ownership!r}, not enforced"


def _sse_rules(props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [rule for rule in as_list(props.get("rules")) if isinstance(rule, Mapping)]


def _sse_default(props: Mapping[str, Any], _: Context) -> str | None:
    algorithms = [
        dig(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm") for rule in _sse_rules(props)
    ]
    return None if any(algorithms) else "no default server-side encryption algorithm"


def _sse_kms_cmk(props: Mapping[str, Any], ctx: Context) -> str | None:
    if _sse_default(props, ctx):
        return None  # no default encryption at all: s3-default-encryption reports it
    for rule in _sse_rules(props):
        default = dig(rule, "applyServerSideEncryptionByDefault") or {}
        if str(default.get("sseAlgorithm", "")).startswith("aws:kms") and default.get("kmsMasterKeyId"):
            return None
    return "default encryption is not SSE-KMS with a customer-managed key"


def _bucket_key(props: Mapping[str, Any], _: Context) -> str | None:
    for rule in _sse_rules(props):
        algorithm = str(dig(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm") or "")
        if algorithm.startswith("aws:kms") and rule.get("bucketKeyEnabled") is not True:
            return "SSE-KMS without an S3 bucket key (one KMS request per object)"
    return None


def _versioning(props: Mapping[str, Any], _: Context) -> str | None:
    status = dig(props, "versioningConfiguration", "status")
    return None if status == "Enabled" else f"versioning status is {status!r}"


def _tls_only(props: Mapping[str, Any], _: Context) -> str | None:
    document = as_document(props.get("policy"))
    return None if has_tls_only_deny(document) else "bucket policy does not deny aws:SecureTransport=false"


def _no_public_principal(props: Mapping[str, Any], _: Context) -> str | None:
    for statement in statements(as_document(props.get("policy"))):
        if is_public_allow(statement):
            return f"statement {statement.get('Sid', '?')!r} allows Principal '*' without a condition"
    return None


def _logging_target(props: Mapping[str, Any], _: Context) -> str | None:
    return None if props.get("targetBucket") else "access logging has no target bucket"


def _lifecycle_rules(props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [rule for rule in as_list(props.get("rules")) if isinstance(rule, Mapping)]


def _lifecycle_filter(props: Mapping[str, Any], _: Context) -> str | None:
    missing = [str(rule.get("id", "?")) for rule in _lifecycle_rules(props) if rule.get("filter") is None]
    return f"lifecycle rules without an explicit filter: {missing}" if missing else None


def _abort_multipart(props: Mapping[str, Any], _: Context) -> str | None:
    for rule in _lifecycle_rules(props):
        days = number(dig(rule, "abortIncompleteMultipartUpload", "daysAfterInitiation"))
        if rule.get("status") == "Enabled" and days is not None and days > 0:
            return None
    return "no enabled lifecycle rule aborts incomplete multipart uploads"


def _noncurrent_days(props: Mapping[str, Any], _: Context) -> str | None:
    for rule in _lifecycle_rules(props):
        expiration = rule.get("noncurrentVersionExpiration")
        if expiration is None:
            continue
        days = number(dig(rule, "noncurrentVersionExpiration", "noncurrentDays"))
        if days is None or days < 1:
            return f"rule {rule.get('id', '?')!r} expires noncurrent versions without a number of days"
    return None


def _raw_never_expires(props: Mapping[str, Any], _: Context) -> str | None:
    if "-raw-" not in str(props.get("bucket", "")):
        return None
    expiring = [str(rule.get("id", "?")) for rule in _lifecycle_rules(props) if rule.get("expiration")]
    return f"raw data expires by rules {expiring}" if expiring else None


def _no_public_acl(props: Mapping[str, Any], _: Context) -> str | None:
    acl = props.get("acl")
    return f"bucket ACL {acl!r} grants public access" if acl in PUBLIC_ACLS else None


# ----------------------------------------------------------------------- stack rules


def _bucket_names(resources: Sequence[Resource]) -> list[tuple[Resource, str]]:
    named = []
    for resource in resources:
        if resource.type in BUCKETS and isinstance(resource.props.get("bucket"), str):
            named.append((resource, str(resource.props["bucket"])))
    return named


def _configured(resources: Sequence[Resource], type_: str) -> set[str]:
    return {str(r.props.get("bucket")) for r in resources if r.type == type_ and r.props.get("bucket")}


def _every_bucket_has(type_: str, what: str, exempt_log_targets: bool = False) -> Any:
    def check(resources: Sequence[Resource], _: Context) -> list[tuple[Resource, str]]:
        configured = _configured(resources, type_)
        exempt: set[str] = set()
        if exempt_log_targets:
            exempt = {str(r.props.get("targetBucket")) for r in resources if r.type == LOGGING}
        return [
            (bucket, f"bucket {name} has no {what}")
            for bucket, name in _bucket_names(resources)
            if name not in configured and name not in exempt
        ]

    return check


def _every_bucket_tls_only(resources: Sequence[Resource], _: Context) -> list[tuple[Resource, str]]:
    tls_only = {
        str(r.props.get("bucket"))
        for r in resources
        if r.type == POLICY and has_tls_only_deny(as_document(r.props.get("policy")))
    }
    return [
        (bucket, f"bucket {name} has no TLS-only bucket policy")
        for bucket, name in _bucket_names(resources)
        if name not in tls_only
    ]


PAB = ("S3.1", "S3.8")
RULES = [
    Rule("s3-block-public-acls", "Public access block sets blockPublicAcls", MANDATORY,
         ("CKV_AWS_53", *PAB), (PUBLIC_ACCESS_BLOCK,), _flag("blockPublicAcls")),
    Rule("s3-block-public-policy", "Public access block sets blockPublicPolicy", MANDATORY,
         ("CKV_AWS_54", *PAB), (PUBLIC_ACCESS_BLOCK,), _flag("blockPublicPolicy")),
    Rule("s3-ignore-public-acls", "Public access block sets ignorePublicAcls", MANDATORY,
         ("CKV_AWS_55", *PAB), (PUBLIC_ACCESS_BLOCK,), _flag("ignorePublicAcls")),
    Rule("s3-restrict-public-buckets", "Public access block sets restrictPublicBuckets", MANDATORY,
         ("CKV_AWS_56", *PAB), (PUBLIC_ACCESS_BLOCK,), _flag("restrictPublicBuckets")),
    Rule("s3-acls-disabled", "Object ownership is BucketOwnerEnforced (ACLs disabled)", MANDATORY,
         ("CKV2_AWS_65", "S3.12"), (OWNERSHIP,), _ownership_enforced),
    Rule("s3-no-public-acl", "The bucket has no public canned ACL", MANDATORY,
         ("CKV_AWS_20", "S3.2", "S3.3"), BUCKETS, _no_public_acl),
    Rule("s3-default-encryption", "Default server-side encryption is configured", MANDATORY,
         ("CKV_AWS_19",), (ENCRYPTION,), _sse_default),
    Rule("s3-sse-kms-cmk", "Default encryption is SSE-KMS with a customer-managed key", ADVISORY,
         ("CKV_AWS_145", "S3.17"), (ENCRYPTION,), _sse_kms_cmk),
    Rule("s3-bucket-key", "SSE-KMS buckets enable the S3 bucket key", MANDATORY,
         ("CKV_AWS_145", OURS), (ENCRYPTION,), _bucket_key),
    Rule("s3-versioning", "Versioning is Enabled", MANDATORY,
         ("CKV_AWS_21", "S3.14"), (VERSIONING,), _versioning),
    Rule("s3-tls-only", "The bucket policy denies requests without TLS", MANDATORY,
         ("S3.5", "AwsSolutions-S10"), (POLICY,), _tls_only),
    Rule("s3-no-public-principal", "No bucket policy statement allows Principal '*' unconditionally",
         MANDATORY, ("CKV_AWS_70", "S3.6"), (POLICY,), _no_public_principal),
    Rule("s3-access-log-target", "Server access logging names a target bucket", MANDATORY,
         ("CKV_AWS_18", "S3.9"), (LOGGING,), _logging_target),
    Rule("s3-lifecycle-filter", "Every lifecycle rule has an explicit filter", MANDATORY,
         (OURS,), (LIFECYCLE,), _lifecycle_filter),
    Rule("s3-abort-multipart", "Lifecycle aborts incomplete multipart uploads", MANDATORY,
         ("CKV_AWS_300",), (LIFECYCLE,), _abort_multipart),
    Rule("s3-noncurrent-days", "Noncurrent versions expire only after a configured number of days",
         MANDATORY, ("CKV_AWS_300", OURS), (LIFECYCLE,), _noncurrent_days),
    Rule("s3-raw-never-expires", "Lifecycle of the raw bucket never expires current objects", MANDATORY,
         (OURS,), (LIFECYCLE,), _raw_never_expires),
]  # fmt: skip

STACK_RULES = [
    StackRule("s3-bucket-public-access-block", "Every bucket has a public access block resource", MANDATORY,
              ("CKV_AWS_53", "CKV_AWS_54", "CKV_AWS_55", "CKV_AWS_56", "S3.8"),
              _every_bucket_has(PUBLIC_ACCESS_BLOCK, "public access block")),
    StackRule("s3-bucket-ownership-controls", "Every bucket has ownership controls", MANDATORY,
              ("CKV2_AWS_65", "S3.12"), _every_bucket_has(OWNERSHIP, "ownership controls")),
    StackRule("s3-bucket-encryption", "Every bucket has a server-side encryption configuration",
              MANDATORY, ("CKV_AWS_19", "CKV_AWS_145"), _every_bucket_has(ENCRYPTION, "encryption config")),
    StackRule("s3-bucket-versioning", "Every bucket has a versioning resource", MANDATORY,
              ("CKV_AWS_21", "S3.14"), _every_bucket_has(VERSIONING, "versioning")),
    StackRule("s3-bucket-tls-policy", "Every bucket has a TLS-only bucket policy", MANDATORY,
              ("S3.5",), _every_bucket_tls_only),
    StackRule("s3-bucket-access-logging",
              "Every bucket logs access to a log bucket (a bucket receiving access logs is exempt: "
              "logging it would loop)", MANDATORY, ("CKV_AWS_18", "S3.9"),
              _every_bucket_has(LOGGING, "access logging", exempt_log_targets=True)),
    StackRule("s3-bucket-lifecycle", "Every bucket has a lifecycle configuration", MANDATORY,
              ("CKV2_AWS_61", "S3.13"), _every_bucket_has(LIFECYCLE, "lifecycle configuration")),
]  # fmt: skip
