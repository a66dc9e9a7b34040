//! The pages (server-rendered HTML forms) and their plumbing: the static files, the
//! error pages, the authentication layer, the home page and CSP violation reports. The JSON
//! API is `crate::api`.

pub mod account;
pub mod api_keys;
pub mod auth;
pub mod csp_report;
pub mod errors;
pub mod items;
pub mod mfa;
pub mod oidc;
pub mod origin;
pub mod passkeys;
pub mod password_reset;
pub mod session;
pub mod setup;
pub mod upstream;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gatehouse_security::CspNonce;

use crate::error::Error;
use crate::state::AppState;

/// The page routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/static/{file}", get(static_file))
        .route("/csp-report", post(csp_report::receive))
}

/// What the new-password forms say about the policy (`password_rules.html`) and give the
/// strength meter: the minimum length and whether seed 004's composition rules apply.
fn password_rules(state: &AppState) -> minijinja::Value {
    let policy = &state.settings.password_policy;
    minijinja::context! {
        min_length => policy.min_length,
        require_classes => policy.require_upper,
    }
}

/// Marks a page reached through a token link (a sign-in link, a reset link, the setup link):
/// its URL, which holds the token, is never sent to another site (`Referrer-Policy:
/// same-origin`, not `no-referrer`, under which browsers send `Origin: null` with the page's own
/// form and the CSRF check refuses it), and no cache keeps it.
pub(crate) fn token_page(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        http::header::REFERRER_POLICY,
        http::HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
}

/// `GET /static/{file}`: an embedded asset.
async fn static_file(
    State(state): State<AppState>,
    axum::extract::Path(file): axum::extract::Path<String>,
    headers: http::HeaderMap,
) -> Result<Response, Error> {
    state.assets.answer(&file, &headers)
}

/// `GET /`: the dashboard when signed in, else the home page.
async fn home(
    State(state): State<AppState>,
    nonce: CspNonce,
    current: Option<session::CurrentUser>,
) -> Result<Response, Error> {
    if let Some(current) = current {
        // `/` sits outside the CSRF layer (anonymous visitors need no token or cookie): the
        // sign-out form's token comes from the session's own secret.
        let csrf = gatehouse_security::CsrfSecret::from_bytes(*current.session.csrf_secret).token();
        let page = state.templates.page(
            "dashboard.html",
            &nonce,
            minijinja::context! {
                title => "Dashboard",
                csrf_token => csrf.as_str(),
                user => minijinja::context! {
                    email => current.user.email.as_str(),
                    role => current.user.role.as_str(),
                    name => current.user.display_name.as_str(),
                },
            },
        )?;
        return Ok(page.into_response());
    }
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
