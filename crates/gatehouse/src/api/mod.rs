//! The JSON API under `/api/v1`, one file per resource, described by the OpenAPI document
//! (`openapi.rs`) its routes are registered through; `schema.rs` holds the shared schemas.
//!
//! Handlers parse the request, call one domain service and answer JSON (errors as RFC 9457
//! problems). Authentication is the one the pages use (`web::session`); [`ApiUser`] reads its
//! principal.

pub mod admin;
pub mod api_keys;
pub mod auth;
pub mod items;
pub mod openapi;
pub mod schema;

pub use auth::ApiUser;
