//! Schemas the API's operations share: the RFC 9457 problem every error answer is, and the
//! exact text patterns of trimmed fields (so the description and the server's checks agree in
//! both directions).

use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::{Object, ObjectBuilder, Type};

/// Control characters (Unicode category Cc), refused in every text field.
const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";

/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem: every error answer of the API.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)] // Describes the body `gatehouse_security::Problem` writes.
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` when the status says it all.
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    type_uri: String,
    /// The status's summary, the same for every occurrence.
    #[schema(example = "Unprocessable Entity")]
    title: String,
    /// The HTTP status.
    #[schema(example = 422)]
    status: u16,
    /// What went wrong this time, meant for the client's user.
    detail: Option<String>,
    /// The request's ID, also in the `X-Request-Id` header and the server's log.
    request_id: Option<String>,
    /// For `422`: each refused field with the reason.
    errors: Option<Vec<crate::error::FieldError>>,
    /// For a `401` from the token endpoint or the bearer check: `unauthenticated`,
    /// `invalid_token`, `invalid_grant` or `mfa_required`; for a `403` to a user who must set up
    /// two-step sign-in first: `mfa_enrolment_required`.
    error: Option<String>,
}

/// A pattern that matches exactly the text the server accepts for a field it trims and then
/// requires to be `min..=max` characters with no control character (`items::validate`,
/// `api_keys::validate`). It spells out the lengths of the trimmed text, which `minLength` and
/// `maxLength` cannot (they count the spaces the server trims).
fn trimmed_text_pattern(min: usize, max: usize) -> String {
    let edge = format!(r"[^\s{CONTROL}]");
    let inner = format!("[^{CONTROL}]");
    let middle = max.saturating_sub(2);
    let body = match min {
        0 => format!("(?:{edge}(?:{inner}{{0,{middle}}}{edge})?)?"),
        1 => format!("{edge}(?:{inner}{{0,{middle}}}{edge})?"),
        _ => format!("{edge}{inner}{{{},{middle}}}{edge}", min - 2),
    };
    format!(r"^\s*{body}\s*$")
}

fn trimmed_text(min: usize, max: usize, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(trimmed_text_pattern(min, max)))
        .description(Some(description))
        .build()
}

/// An item's name.
pub(crate) fn item_name() -> Object {
    trimmed_text(
        3,
        100,
        "3–100 characters after trimming spaces, no control characters.",
    )
}

/// An item's description.
pub(crate) fn item_description() -> Object {
    trimmed_text(
        5,
        500,
        "5–500 characters after trimming spaces, no control characters.",
    )
}

/// An API key's name.
pub(crate) fn key_name() -> Object {
    trimmed_text(
        1,
        100,
        "A label: 1–100 characters after trimming spaces, no control characters.",
    )
}

/// The items list's search text.
pub(crate) fn search_text() -> Object {
    trimmed_text(
        0,
        100,
        "Only items whose name or description contains this text, in any case: at most 100 \
         characters after trimming spaces, no control characters.",
    )
}

/// The items list's cursor.
pub(crate) fn cursor() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(crate::items::CURSOR_PATTERN))
        .description(Some(
            "The `next_cursor` of the previous page; empty or absent for the first page.",
        ))
        .build()
}

/// `*` or one entity-tag (RFC 9110 §8.8.3): what `If-Match` on an item accepts; anything else
/// is a `400`.
pub(crate) const ENTITY_TAG_PATTERN: &str = r#"^(\*|(W/)?"[\x21\x23-\x7E]*")$"#;

/// `If-Match` on an item.
pub(crate) fn if_match() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(ENTITY_TAG_PATTERN))
        .description(Some(
            "`*` or one entity-tag: the item's `ETag` as last read. The change is refused with \
             `412` if the item changed since (or if the tag is not its current ETag; a weak tag \
             never matches). Without it (or with `*`) the change applies to what is stored. \
             Any other value is refused with `400`.",
        ))
        .build()
}
