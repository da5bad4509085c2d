"""IAM: identity policies (role inline policies, managed policies) and trust policies."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from policy.rules import MANDATORY, Context, Rule, as_document, as_list, principals, statements

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
POLICY = "aws:iam/policy:Policy"
ROLE_POLICY_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
POLICY_ATTACHMENT = "aws:iam/policyAttachment:PolicyAttachment"
USER_POLICY = "aws:iam/userPolicy:UserPolicy"
IDENTITY_POLICY_TYPES = (ROLE_POLICY, POLICY, ROLE)
# Actions that AWS does not let a policy scope to a resource: "*" is the only valid Resource.
UNSCOPABLE_ACTIONS = frozenset(
    {"ecr:getauthorizationtoken", "xray:puttracesegments", "xray:puttelemetryrecords",
     "xray:getsamplingrules", "xray:getsamplingtargets", "cloudwatch:putmetricdata",
     "sts:getcalleridentity", "logs:describeloggroups", "sagemaker:listmodelpackagegroups"}
)  # fmt: skip
ADMIN_POLICY_SUFFIXES = ("/AdministratorAccess", "/PowerUserAccess", "/IAMFullAccess")


def identity_documents(props: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The identity policy documents a RolePolicy, Policy or Role (inline policies) declares."""
    document = as_document(props.get("policy"))
    if document is not None:
        yield document
    for inline in as_list(props.get("inlinePolicies")):
        if isinstance(inline, Mapping):
            inline_document = as_document(inline.get("policy"))
            if inline_document is not None:
                yield inline_document


def _allows(props: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for document in identity_documents(props):
        for statement in statements(document):
            if statement.get("Effect") == "Allow":
                yield statement


def _actions(statement: Mapping[str, Any]) -> list[str]:
    return [str(action) for action in as_list(statement.get("Action"))]


def _resources(statement: Mapping[str, Any]) -> list[str]:
    return [str(resource) for resource in as_list(statement.get("Resource"))]


def _sid(statement: Mapping[str, Any]) -> str:
    return str(statement.get("Sid", "?"))


def _admin(props: Mapping[str, Any], _: Context) -> str | None:
    for statement in _allows(props):
        if "*" in _actions(statement) and "*" in _resources(statement):
            return f"statement {_sid(statement)!r} allows '*' on '*' (administrator)"
    return None


def _star_action(props: Mapping[str, Any], _: Context) -> str | None:
    for statement in _allows(props):
        if "*" in _actions(statement) and "*" not in _resources(statement):
            return f"statement {_sid(statement)!r} allows Action '*'"
    return None


def _service_wildcard(props: Mapping[str, Any], _: Context) -> str | None:
    for statement in _allows(props):
        wild = [action for action in _actions(statement) if action.endswith(":*")]
        if wild:
            return f"statement {_sid(statement)!r} allows every action of a service: {wild}"
    return None


def _not_action(props: Mapping[str, Any], _: Context) -> str | None:
    for statement in _allows(props):
        if "NotAction" in statement or "NotResource" in statement:
            return f"statement {_sid(statement)!r} allows with NotAction/NotResource"
    return None


def _star_resource(props: Mapping[str, Any], _: Context) -> str | None:
    for statement in _allows(props):
        actions = _actions(statement)
        if "*" not in _resources(statement) or "*" in actions:
            continue
        scopable = [action for action in actions if action.lower() not in UNSCOPABLE_ACTIONS]
        if scopable:
            return f"statement {_sid(statement)!r} allows {scopable} on Resource '*'"
    return None


def _unscopable_conditioned(props: Mapping[str, Any], _: Context) -> str | None:
    for statement in _allows(props):
        actions = [action.lower() for action in _actions(statement)]
        if "cloudwatch:putmetricdata" in actions and not statement.get("Condition"):
            return f"statement {_sid(statement)!r} publishes metrics to any namespace (no condition)"
    return None


def _pass_role(props: Mapping[str, Any], _: Context) -> str | None:
    for statement in _allows(props):
        actions = [action.lower() for action in _actions(statement)]
        if "iam:passrole" not in actions and "iam:*" not in actions:
            continue
        condition = statement.get("Condition") or {}
        scoped = any(isinstance(c, Mapping) and "iam:PassedToService" in c for c in condition.values())
        if "*" in _resources(statement) or not scoped:
            return f"statement {_sid(statement)!r} passes roles without a resource and iam:PassedToService"
    return None


def _managed_admin(props: Mapping[str, Any], _: Context) -> str | None:
    arns = [str(arn) for arn in as_list(props.get("managedPolicyArns"))]
    arns += [str(props["policyArn"])] if props.get("policyArn") else []
    bad = [arn for arn in arns if arn.startswith("arn:aws:iam::aws:policy/")
           and (arn.endswith(ADMIN_POLICY_SUFFIXES) or arn.endswith("FullAccess"))]  # fmt: skip
    return f"AWS-managed broad policies attached: {bad}" if bad else None


def _trust_statements(props: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for statement in statements(as_document(props.get("assumeRolePolicy"))):
        if statement.get("Effect") == "Allow":
            yield statement


def _trust_services_only(props: Mapping[str, Any], _: Context) -> str | None:
    for statement in _trust_statements(props):
        principal = statement.get("Principal")
        others = [key for key in principal if key != "Service"] if isinstance(principal, Mapping) else ["*"]
        if others or "*" in principals(statement):
            return f"trust statement {_sid(statement)!r} trusts non-service principals {others}"
    return None


def _trust_confused_deputy(props: Mapping[str, Any], _: Context) -> str | None:
    for statement in _trust_statements(props):
        condition = statement.get("Condition") or {}
        keys = {key for operator in condition.values() if isinstance(operator, Mapping) for key in operator}
        if not keys & {"aws:SourceAccount", "aws:SourceArn"}:
            return f"trust statement {_sid(statement)!r} has no aws:SourceAccount/aws:SourceArn condition"
    return None


def _no_user_attachment(props: Mapping[str, Any], _: Context) -> str | None:
    return "policy attached to IAM users" if as_list(props.get("users")) else None


def _user_policy(props: Mapping[str, Any], _: Context) -> str | None:
    return f"inline policy on IAM user {props.get('user')!r}" if props.get("user") else None


IDENTITY = IDENTITY_POLICY_TYPES
RULES = [
    Rule("iam-no-admin", "No identity policy allows '*' on '*'", MANDATORY,
         ("CKV_AWS_62", "IAM.1"), IDENTITY, _admin),
    Rule("iam-no-star-action", "No identity policy allows Action '*'", MANDATORY,
         ("CKV_AWS_63",), IDENTITY, _star_action),
    Rule("iam-no-service-wildcard-action", "No identity policy allows every action of a service (svc:*)",
         MANDATORY, ("AwsSolutions-IAM5", "CKV_AWS_290"), IDENTITY, _service_wildcard),
    Rule("iam-no-not-action", "No Allow with NotAction or NotResource", MANDATORY,
         ("AwsSolutions-IAM5",), IDENTITY, _not_action),
    Rule("iam-no-star-resource", "Resource '*' only on actions that cannot be scoped", MANDATORY,
         ("CKV_AWS_355", "AwsSolutions-IAM5"), IDENTITY, _star_resource),
    Rule("iam-put-metric-data-condition", "cloudwatch:PutMetricData is limited to namespaces", MANDATORY,
         ("CKV_AWS_355",), IDENTITY, _unscopable_conditioned),
    Rule("iam-pass-role-scoped", "iam:PassRole names roles and sets iam:PassedToService", MANDATORY,
         ("CKV_AWS_286",), IDENTITY, _pass_role),
    Rule("iam-no-managed-admin", "No AWS-managed admin or FullAccess policy is attached", MANDATORY,
         ("AwsSolutions-IAM4", "CKV_AWS_274"), (ROLE, ROLE_POLICY_ATTACHMENT), _managed_admin),
    Rule("iam-trust-services-only", "Roles trust AWS service principals only", MANDATORY,
         ("CKV_AWS_60", "CKV_AWS_61"), (ROLE,), _trust_services_only),
    Rule("iam-trust-source-condition", "Service trust is narrowed by aws:SourceAccount or aws:SourceArn",
         MANDATORY, ("CKV_AWS_61",), (ROLE,), _trust_confused_deputy),
    Rule("iam-no-user-attachments", "Policies are not attached to IAM users", MANDATORY,
         ("CKV_AWS_40", "IAM.2"), (POLICY_ATTACHMENT,), _no_user_attachment),
    Rule("iam-no-user-inline-policy", "No inline policies on IAM users", MANDATORY,
         ("CKV_AWS_40", "IAM.2"), (USER_POLICY,), _user_policy),
]  # fmt: skip
