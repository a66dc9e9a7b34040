//! Identity's SQL, one file per subject: small named functions on a [`crate::store::Db`]
//! (autocommit) or in the caller's [`crate::store::Tx`]. Each query is written once for both
//! dialects through [`crate::store::query`]; where they really differ, the two texts sit side
//! by side and [`crate::store::Dialect::pick`] chooses.

pub(crate) mod api_keys;
pub(crate) mod devices;
pub(crate) mod first_admin;
pub(crate) mod magic_links;
pub(crate) mod mfa;
pub(crate) mod oidc;
pub(crate) mod passkeys;
pub(crate) mod password_reset;
pub(crate) mod sessions;
pub(crate) mod throttle;
pub(crate) mod tokens;
pub(crate) mod users;
