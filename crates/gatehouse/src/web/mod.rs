//! Shared page plumbing: templates, static assets, the error pages, the home page and CSP
//! violation reports.

pub mod assets;
pub mod csp_report;
pub mod errors;
pub mod templates;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gatehouse_security::CspNonce;

use crate::Error;
use crate::app::AppState;

/// The page routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/static/{file}", get(assets::serve))
        .route("/csp-report", post(csp_report::receive))
}

/// `GET /`: the home page.
async fn home(State(state): State<AppState>, nonce: CspNonce) -> Result<Response, Error> {
    if let Some(page) = state.templates.prerendered("home.html") {
        return Ok(page.into_response());
    }
    let page = state.templates.page(
        "home.html",
        &nonce,
        minijinja::context! { title => "Welcome" },
    )?;
    Ok(page.into_response())
}

/// Anything no route matched: a 404 problem or page.
pub async fn not_found() -> Error {
    Error::NotFound
}
