"""The input contract of the deployed model: which kind it is and what one instance looks like.

One JSON document (``MODEL_INPUT_SCHEMA`` inline, or ``MODEL_INPUT_SCHEMA_URI``) builds the pydantic
model of one instance, so every request is checked against the served model's contract, and turns a
validated instance into what the endpoint takes. The format: docs/artifacts.md.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import unicodedata
from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    create_model,
    field_serializer,
    field_validator,
    model_validator,
)

from handlers.common.aws_clients import botocore_client
from handlers.common.errors import ConfigurationError, FieldProblem
from handlers.common.s3_uri import S3Uri

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SCHEMA_ENV = "MODEL_INPUT_SCHEMA"
SCHEMA_URI_ENV = "MODEL_INPUT_SCHEMA_URI"
MAX_CATEGORIES_SHOWN = 10  # in the answer to a request giving an unknown category


class _SchemaBase(BaseModel):
    # frozen + tuples: schemas are hashable, so the models built from them can be cached;
    # defer_build: validators are built when a schema is first read, not at import (cold start).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    max_batch_size: int = Field(default=100, ge=1, le=1000)
    # Read by nothing since batch preprocessing was removed; still accepted (extra keys are refused)
    # so a published schema document that names it keeps the API serving.
    label_field: str = Field(default="label", min_length=1)


class TextInputSchema(_SchemaBase):
    kind: Literal["text"]
    max_chars: int = Field(default=10_000, ge=1, le=1_000_000)

    def normalise(self, text: str) -> str:
        """NFC, trimmed, runs of whitespace collapsed: equal-looking texts become equal strings."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text is not valid Unicode (it holds a lone surrogate)") from None
        cleaned = " ".join(unicodedata.normalize("NFC", text).split())
        if not cleaned:
            raise ValueError("text must not be empty or only whitespace")
        if len(cleaned) > self.max_chars:
            raise ValueError(f"text has {len(cleaned)} characters; the limit is {self.max_chars}")
        return cleaned

    def instance_model(self) -> type[BaseModel]:
        normalise = self.normalise

        class TextInstance(BaseModel):
            model_config = ConfigDict(extra="forbid", strict=True)
            text: str

            @field_validator("text")
            @classmethod
            def _normalised(cls, value: str) -> str:
                return normalise(value)

        return TextInstance

    def to_endpoint(self, instance: BaseModel) -> Any:
        return instance.text  # type: ignore[attr-defined]


class TabularInputSchema(_SchemaBase):
    kind: Literal["tabular"]
    feature_names: tuple[str, ...] = Field(min_length=1, max_length=10_000)
    # Training statistics; leave both out when the model standardises inside itself (as this
    # repository's tabular model does), or features would be scaled twice.
    means: tuple[float, ...] | None = None
    stds: tuple[float, ...] | None = None
    # Categorical features: name -> the categories the model was trained on, in code order. A
    # request gives the category's text; the endpoint gets its code (the index here), as the
    # generic preparer wrote it in the training data. JSON: {"contract": ["annual", "monthly"]}.
    categories: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @field_validator("categories", mode="before")
    @classmethod
    def _categories_by_name(cls, value: Any) -> Any:
        # Stored as pairs, so the schema stays hashable (instance models are cached by schema).
        return tuple(value.items()) if isinstance(value, Mapping) else value

    @field_serializer("categories")
    def _categories_as_mapping(self, value: tuple[tuple[str, tuple[str, ...]], ...]) -> dict[str, list[str]]:
        return {name: list(values) for name, values in value}

    @model_validator(mode="after")
    def _consistent(self) -> TabularInputSchema:
        names = self.feature_names
        if len(set(names)) != len(names):
            raise ValueError("feature_names must be unique")
        if (self.means is None) != (self.stds is None):
            raise ValueError("give both means and stds, or neither")
        for label, values in (("means", self.means), ("stds", self.stds)):
            if values is not None and len(values) != len(names):
                raise ValueError(f"{label} needs {len(names)} values, one per feature")
            if values is not None and not all(math.isfinite(v) for v in values):
                raise ValueError(f"{label} must be finite")
        if self.stds is not None and any(s <= 0 for s in self.stds):
            raise ValueError("stds must be positive")
        for name, vocabulary in self.categories:
            if name not in names:
                raise ValueError(f"categories names {name!r}, which is not one of feature_names")
            if not vocabulary or len(set(vocabulary)) != len(vocabulary):
                raise ValueError(f"categories of {name!r} must be a non-empty list of unique strings")
        return self

    def instance_model(self) -> type[BaseModel]:
        names = self.feature_names

        def by_name(cls: type[BaseModel], value: Any) -> Any:
            # Lists are accepted in feature order; mapping them onto names gives one set of checks.
            if isinstance(value, list):
                if len(value) != len(names):
                    raise ValueError(f"expected {len(names)} features in schema order, got {len(value)}")
                return dict(zip(names, value, strict=True))
            return value

        vocabularies = dict(self.categories)
        fields: dict[str, Any] = {
            f"f{index}": (str, Field(alias=name, strict=True))
            if name in vocabularies
            else (float, Field(alias=name, strict=True, allow_inf_nan=False))
            for index, name in enumerate(names)
        }
        validators: dict[str, Any] = {"by_name": model_validator(mode="before")(by_name)}
        for index, name in enumerate(names):
            if name in vocabularies:
                validators[f"code_of_f{index}"] = field_validator(f"f{index}")(
                    category_code(vocabularies[name])
                )
        return create_model(
            "TabularInstance", __config__=ConfigDict(extra="forbid"), __validators__=validators, **fields
        )

    def to_endpoint(self, instance: BaseModel) -> Any:
        values = [getattr(instance, f"f{index}") for index in range(len(self.feature_names))]
        if self.means is None or self.stds is None:
            return values
        return [(v - m) / s for v, m, s in zip(values, self.means, self.stds, strict=True)]


def category_code(categories: tuple[str, ...]) -> Callable[[type[BaseModel], str], int]:
    """A validator turning a category's text into its code (its index in ``categories``)."""
    codes = {category: code for code, category in enumerate(categories)}
    shown = ", ".join(repr(c) for c in categories[:MAX_CATEGORIES_SHOWN])
    allowed = shown if len(categories) <= MAX_CATEGORIES_SHOWN else f"{shown}, ... ({len(categories)} in all)"

    def to_code(cls: type[BaseModel], value: str) -> int:
        if value not in codes:
            raise ValueError(f"must be one of {allowed}")
        return codes[value]

    return to_code


class ImageInputSchema(_SchemaBase):
    kind: Literal["image"]
    height: int = Field(ge=1, le=4096)
    width: int = Field(ge=1, le=4096)
    channels: int = Field(ge=1, le=4)
    max_value: int = Field(default=255, ge=1, le=255)
    max_decoded_bytes: int = Field(default=1_048_576, ge=1)

    @model_validator(mode="after")
    def _fits(self) -> ImageInputSchema:
        if self.pixel_count > self.max_decoded_bytes:
            raise ValueError("height * width * channels exceeds max_decoded_bytes")
        return self

    @property
    def pixel_count(self) -> int:
        return self.height * self.width * self.channels

    def decode(self, value: Any) -> bytes:
        """Base64 of raw uint8 pixels, row-major, channels last; size and values are checked."""
        if not isinstance(value, str):
            raise ValueError("b64 must be a base64 string")
        # Refuse before decoding: the encoded length bounds the decoded size.
        if len(value) > 4 * math.ceil(self.max_decoded_bytes / 3):
            raise ValueError(f"image is larger than {self.max_decoded_bytes} bytes")
        try:
            pixels = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("b64 is not valid base64") from None
        if len(pixels) != self.pixel_count:
            raise ValueError(
                f"expected {self.height}x{self.width}x{self.channels} = {self.pixel_count} pixel bytes, "
                f"got {len(pixels)}"
            )
        if pixels and max(pixels) > self.max_value:
            raise ValueError(f"pixel values must be at most {self.max_value}")
        return pixels

    def instance_model(self) -> type[BaseModel]:
        decode = self.decode

        class ImageInstance(BaseModel):
            model_config = ConfigDict(extra="forbid", populate_by_name=False)
            pixels: bytes = Field(alias="b64")

            @field_validator("pixels", mode="before")
            @classmethod
            def _decoded(cls, value: Any) -> bytes:
                return decode(value)

        return ImageInstance

    def to_endpoint(self, instance: BaseModel) -> Any:
        return list(instance.pixels)  # type: ignore[attr-defined]


InputSchema = Annotated[TextInputSchema | TabularInputSchema | ImageInputSchema, Field(discriminator="kind")]
AnyInputSchema = TextInputSchema | TabularInputSchema | ImageInputSchema


@cache
def _schema_adapter() -> TypeAdapter[AnyInputSchema]:
    # Built on first use: building the union's validator costs cold-start milliseconds at import.
    return TypeAdapter(InputSchema)


def parse_input_schema(document: str | bytes, source: str = "input schema") -> AnyInputSchema:
    """Validate a schema document; a bad one is a ``ConfigurationError`` naming each problem."""
    try:
        return _schema_adapter().validate_json(document)
    except ValidationError as exc:
        problems = "; ".join(f"{p.field}: {p.problem}" for p in field_problems(exc, root="schema"))
        raise ConfigurationError(
            f"{source} is invalid: {problems}", field_problems(exc, root="schema")
        ) from None


def load_input_schema(
    environ: Mapping[str, str] | None = None,
    s3_client_factory: Callable[[], S3Client] | None = None,
) -> AnyInputSchema:
    """Read the schema from ``MODEL_INPUT_SCHEMA`` (inline JSON) or ``MODEL_INPUT_SCHEMA_URI`` (s3://).

    Parameters
    ----------
    environ: the environment to read (default ``os.environ``).
    s3_client_factory: builds the S3 client, called only when the schema lives in S3.
    """
    env = os.environ if environ is None else environ
    inline, uri = env.get(SCHEMA_ENV, "").strip(), env.get(SCHEMA_URI_ENV, "").strip()
    if inline and uri:
        raise ConfigurationError(f"set {SCHEMA_ENV} or {SCHEMA_URI_ENV}, not both")
    if inline:
        return parse_input_schema(inline, SCHEMA_ENV)
    if not uri:
        raise ConfigurationError(f"neither {SCHEMA_ENV} nor {SCHEMA_URI_ENV} is set")
    bucket, key = split_s3_uri(uri)
    client = s3_client_factory() if s3_client_factory else _default_s3_client()
    document = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return parse_input_schema(document, uri)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); anything else (a bare bucket too) is a ConfigurationError."""
    try:
        location = S3Uri.parse(uri)
    except ValueError:
        location = None
    if location is None or not location.key:
        raise ConfigurationError(f"{uri!r} is not an s3://bucket/key URI")
    return location.bucket, location.key


@cache
def instance_model_for(schema: AnyInputSchema) -> type[BaseModel]:
    """The instance model of ``schema``, built once (pydantic model creation costs milliseconds)."""
    return schema.instance_model()


def field_problems(exc: ValidationError, root: str = "body") -> list[FieldProblem]:
    """Pydantic errors as ``{"field": "instances[0].text", "problem": ...}``, never echoing input;
    an error about the whole document names ``root``."""
    return [
        FieldProblem(field=field_path(error["loc"]) or root, problem=_problem_text(error["msg"]))
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def field_path(loc: tuple[str | int, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _problem_text(message: str) -> str:
    # pydantic prefixes the messages of our own validators with "Value error, ".
    return message.removeprefix("Value error, ")


def _default_s3_client() -> S3Client:
    return cast("S3Client", botocore_client("s3"))  # only a schema stored in S3 needs one
