//! Static assets, embedded in the binary and served with cache headers.
//!
//! Pages link to fingerprinted names (`/static/app.3f2a9c1b.css`): their content never changes,
//! so they are cached for a year as `immutable`. The plain names (`/static/app.css`) stay
//! reachable with a short cache and an `ETag`, for tools and old links.

use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue, StatusCode};
use sha2::{Digest as _, Sha256};

use crate::error::Error;

const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../static/app.css"),
    ),
    (
        "password.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/password.js"),
    ),
    (
        "passkeys.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/passkeys.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../static/favicon.svg"),
    ),
];

#[derive(Debug)]
struct Asset {
    name: &'static str,
    fingerprinted: String,
    content_type: HeaderValue,
    etag: HeaderValue,
    bytes: &'static [u8],
}

/// Every embedded asset.
#[derive(Debug)]
pub struct Assets {
    assets: Vec<Asset>,
}

impl Default for Assets {
    fn default() -> Self {
        Self::embedded()
    }
}

impl Assets {
    /// The assets compiled into the binary.
    pub fn embedded() -> Self {
        let assets = FILES
            .iter()
            .map(|(name, content_type, bytes)| {
                let digest = hex::encode(&Sha256::digest(bytes)[..8]);
                let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
                Asset {
                    name,
                    fingerprinted: format!("{stem}.{digest}.{ext}"),
                    content_type: HeaderValue::from_static(content_type),
                    etag: HeaderValue::from_str(&format!("\"{digest}\""))
                        .unwrap_or(HeaderValue::from_static("\"0\"")),
                    bytes,
                }
            })
            .collect();
        Self { assets }
    }

    /// The URL pages should use for `name`.
    pub fn url(&self, name: &str) -> Option<String> {
        self.assets
            .iter()
            .find(|a| a.name == name)
            .map(|a| format!("/static/{}", a.fingerprinted))
    }
}

impl Assets {
    /// The answer to `GET /static/{file}`: the asset by its fingerprinted name (cached for a
    /// year) or its plain name (five minutes, with an `ETag`), or `404`.
    pub fn answer(&self, file: &str, headers: &HeaderMap) -> Result<Response, Error> {
        let (asset, immutable) = self
            .assets
            .iter()
            .find_map(|a| {
                if a.fingerprinted == file {
                    Some((a, true))
                } else if a.name == file {
                    Some((a, false))
                } else {
                    None
                }
            })
            .ok_or(Error::NotFound)?;
        let cache = HeaderValue::from_static(if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "public, max-age=300"
        });
        if headers.get(IF_NONE_MATCH) == Some(&asset.etag) {
            return Ok((
                StatusCode::NOT_MODIFIED,
                [(ETAG, asset.etag.clone()), (CACHE_CONTROL, cache)],
            )
                .into_response());
        }
        Ok((
            [
                (CONTENT_TYPE, asset.content_type.clone()),
                (ETAG, asset.etag.clone()),
                (CACHE_CONTROL, cache),
            ],
            asset.bytes,
        )
            .into_response())
    }
}
