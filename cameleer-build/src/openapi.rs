//! OpenAPI schemas (feature `openapi`) of the types that serialize as
//! strings of their own syntax.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::{ImageRef, Sha256Digest};

/// A string schema with a description and, if given, a pattern.
fn string(description: &str, pattern: Option<&str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .description(Some(description))
        .pattern(pattern)
        .into()
}

impl PartialSchema for Sha256Digest {
    fn schema() -> RefOr<Schema> {
        // Written as 64 lowercase hex digits; read with or without the
        // `sha256:` prefix.
        string(
            "A SHA-256: 64 hex digits, optionally prefixed by `sha256:`.",
            Some("^(sha256:)?[0-9a-f]{64}$"),
        )
    }
}

impl ToSchema for Sha256Digest {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Sha256Digest")
    }
}

impl PartialSchema for ImageRef {
    fn schema() -> RefOr<Schema> {
        string(
            "An image reference, `[registry/]repository[:tag][@sha256:digest]`.",
            None,
        )
    }
}

impl ToSchema for ImageRef {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ImageRef")
    }
}
