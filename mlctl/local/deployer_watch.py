"""Following the deployer Lambda from the outside while it deploys an approved version.

In local mode, as in AWS, the loop only approves: the approval's EventBridge event runs the
deployer Lambda in the emulator, and each state change of the endpoint runs its verification. The
loop then watches what an operator can see: the deployer's invocation records (the local Lambda
runtime's ``invocations.jsonl``, :mod:`emulator.lambdas`) and the endpoint itself (DescribeEndpoint,
ListTags). Done means the endpoint ``InService`` on the config the deployer made for the version,
its ``ml-platform:verified`` tag saying ``succeeded:<config>``, and the version's serving files
published; a refusal or a failure is reported with the deployer's own reason and where its log is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from emulator.invocations import InvocationRecord, read_invocations
from handlers.common.contracts import SERVING_FILES
from handlers.common.s3_uri import S3Uri
from handlers.deployer.gate import endpoint_tags
from handlers.deployer.plan import ENDPOINT_EVENT, MODEL_PACKAGE_EVENT, TAG_VERIFIED
from handlers.deployer.serving_files import serving_file_sources
from handlers.deployer.verify import IN_SERVICE, describe_endpoint_state

SUCCEEDED, FAILED = "succeeded", "failed"  # the verified tag's outcomes (handlers.deployer.handler)
NOT_DEPLOYED = ("refused", "ignored")  # the deployer's answers to an approval it does not deploy
POLL_S = 0.5


class DeployerError(RuntimeError):
    """The deployer refused or failed, or did not finish in time; the message is one line."""


@dataclass(frozen=True)
class Deployment:
    """A version the deployer deployed and verified."""

    endpoint: str
    config_name: str
    action: str  # the approval's outcome: created, updated, in-progress, unchanged
    published: tuple[str, ...]  # the serving files' URIs


class DeployerWatch:
    """Watches one deployer function (``function``) deploying to ``endpoint``; ``invocations`` is
    the runtime's invocation log."""

    def __init__(
        self,
        sagemaker: Any,
        s3: Any,
        invocations: Path,
        function: str,
        endpoint: str,
        *,
        poll_s: float = POLL_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._sagemaker = sagemaker
        self._s3 = s3
        self._invocations = invocations
        self._function = function
        self._endpoint = endpoint
        self._poll_s = poll_s
        self._clock = clock
        self._sleep = sleep

    def wait(self, version: Any, timeout_s: float) -> Deployment:
        """Until the deployer has deployed and verified ``version`` (a ``ModelVersion``, approved)."""
        deadline = self._clock() + timeout_s
        while True:
            records = [r for r in read_invocations(self._invocations) if r.function == self._function]
            approval = self._approval(records, version)
            if approval is not None:
                deployed = self._deployed(records, approval)
                if deployed is not None:
                    self._check_published(version, deployed)
                    return deployed
            if self._clock() > deadline:
                raise DeployerError(self._timeout_message(version, approval, timeout_s))
            self._sleep(self._poll_s)

    # --- the approval's invocation -------------------------------------------------------------------

    def _approval(self, records: Sequence[InvocationRecord], version: Any) -> InvocationRecord | None:
        """The deployer's answer to the version's approval event; None until it has one."""
        answers = [r for r in records if r.detail_type == MODEL_PACKAGE_EVENT and version.arn in r.resources]
        if not answers:
            return None
        last = answers[-1]
        if not last.succeeded:
            if last.final:
                error = one_line(last.error)
                raise DeployerError(f"the deployer failed to deploy {version.label}: {error} {where(last)}")
            return None  # a retry follows
        status = str(result_of(last).get("status"))
        if status in NOT_DEPLOYED:
            reason = one_line(result_of(last).get("reason") or status)
            raise DeployerError(f"the deployer {status} {version.label}: {reason} {where(last)}")
        return last

    # --- the verification -----------------------------------------------------------------------------

    def _deployed(self, records: Sequence[InvocationRecord], approval: InvocationRecord) -> Deployment | None:
        """The deployment once verified; None while it is not; DeployerError when it failed."""
        expected = str(result_of(approval)["expected_config"])
        since = list(records[records.index(approval) + 1 :])
        failure = self._failed_verification(since)
        state = describe_endpoint_state(self._sagemaker, self._endpoint)
        verified = endpoint_tags(self._sagemaker, state.arn).get(TAG_VERIFIED, "") if state else ""
        if failure is not None and (verified == f"{FAILED}:{expected}" or failure.final):
            error = one_line(failure.error)
            raise DeployerError(f"the deployment of {expected} failed: {error} {where(failure)}")
        if state is None or (state.status, state.config_name) != (IN_SERVICE, expected):
            return None
        if verified != f"{SUCCEEDED}:{expected}":
            return None
        check = next((r for r in records if _verified(r, expected)), None)
        if check is None:
            return None  # the verifying invocation is still ending
        published = tuple(str(uri) for uri in result_of(check).get("published") or ())
        return Deployment(self._endpoint, expected, str(result_of(approval)["status"]), published)

    @staticmethod
    def _failed_verification(records: Sequence[InvocationRecord]) -> InvocationRecord | None:
        failed = [r for r in records if r.detail_type == ENDPOINT_EVENT and not r.succeeded]
        return failed[-1] if failed else None

    def _check_published(self, version: Any, deployed: Deployment) -> None:
        """The files the API and the drift monitor read are the deployed version's: each it has is
        published, each it lacks is not (the deployer withdraws another model's)."""
        sources = serving_file_sources(version)
        for name in SERVING_FILES:
            target = next((uri for uri in deployed.published if uri.rsplit("/", 1)[-1] == name), None)
            source = sources.get(name)
            if source is None or not self._exists(S3Uri(*source)):
                if target is None:
                    continue
                raise DeployerError(f"the deployer published a {name} that {version.label} does not have")
            if target is None or self._read(S3Uri.parse(target)) != self._read(S3Uri(*source)):
                raise DeployerError(
                    f"the deployer verified {deployed.config_name} but did not publish {version.label}'s "
                    f"{name} (published: {', '.join(deployed.published) or 'nothing'})"
                )

    def _exists(self, location: S3Uri) -> bool:
        try:
            self._s3.head_object(Bucket=location.bucket, Key=location.key)
        except ClientError:
            return False
        return True

    def _read(self, location: S3Uri) -> bytes:
        return bytes(self._s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read())

    def _timeout_message(self, version: Any, approval: InvocationRecord | None, timeout_s: float) -> str:
        if approval is None:
            return (
                f"the deployer did not answer the approval of {version.label} in {timeout_s:.0f} s "
                f"(its invocations: {self._invocations})"
            )
        expected = result_of(approval)["expected_config"]
        return f"the deployment of {expected} was not verified in {timeout_s:.0f} s {where(approval)}"


def _verified(record: InvocationRecord, expected: str) -> bool:
    result = result_of(record)
    return (
        record.succeeded and result.get("status") == SUCCEEDED and result.get("expected_config") == expected
    )


def result_of(record: InvocationRecord) -> dict[str, Any]:
    """The handler's answer as a mapping ({} when it answered something else, or nothing)."""
    return record.result if isinstance(record.result, dict) else {}


def where(record: InvocationRecord) -> str:
    """Where to read more about an invocation: the function's log and the request id."""
    return f"(deployer log {record.log}, request {record.request_id})"


def one_line(text: Any) -> str:
    return " ".join(str(text).split())
