//! `/setup`: the page a first start's one-time link opens, which creates the first admin
//! (`identity::first_admin` holds the rule).
//!
//! # Security
//! - The form is CSRF-protected like every form; the token in the URL is checked on `GET` (to
//!   show the form or say why not) and used up only by the `POST`.
//! - The page sends `Referrer-Policy: same-origin` and `Cache-Control: no-store`: its URL carries
//!   the token.
//! - Once a user exists the page refuses (410), whatever the token.

use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};
use gatehouse_security::{CspNonce, CsrfToken};
use http::StatusCode;
use minijinja::context;
use serde::Deserialize;

use super::auth::{render_sign_in, with_status};
use crate::error::Error;
use crate::identity::accounts::PasswordChange;
use crate::identity::first_admin::{FirstSignIn, SetupOutcome, SetupState};
use crate::identity::signin::{Origin, Outcome};
use crate::state::AppState;

/// The setup route.
pub fn router() -> Router<AppState> {
    Router::new().route("/setup", get(setup_page).post(create_admin))
}

const LINK_EXPIRED: &str = "This setup link has expired or was already used. Restart Gatehouse: it prints a new one while there are no users.";

#[derive(Debug, Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: String,
}

#[derive(Deserialize)]
struct SetupForm {
    token: String,
    email: String,
    /// `password` or `mail`.
    method: String,
    password: Option<secrecy::SecretString>,
    confirm: Option<secrecy::SecretString>,
}

/// Renders `setup.html` with `extra`, as a token page.
fn render(
    state: &AppState,
    nonce: &CspNonce,
    csrf: &CsrfToken,
    token: &str,
    status: StatusCode,
    extra: minijinja::Value,
) -> Result<Response, Error> {
    let page = state.templates.page(
        "setup.html",
        nonce,
        context! {
            title => "Create the first admin",
            csrf_token => csrf.as_str(),
            token => token,
            rules => super::password_rules(state),
            ..extra
        },
    )?;
    let mut response = with_status(status, page);
    super::token_page(&mut response);
    Ok(response)
}

async fn setup_page(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    Query(q): Query<TokenQuery>,
) -> Result<Response, Error> {
    let (status, extra) = match state.identity.setup_state(&q.token).await? {
        SetupState::Open => (StatusCode::OK, context! {}),
        SetupState::LinkExpired => (
            StatusCode::BAD_REQUEST,
            context! { closed => true, error => LINK_EXPIRED },
        ),
        SetupState::Over => (StatusCode::GONE, context! { closed => true, over => true }),
    };
    render(&state, &nonce, &csrf, &q.token, status, extra)
}

async fn create_admin(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    origin: Origin,
    Form(form): Form<SetupForm>,
) -> Result<Response, Error> {
    let sign_in = if form.method == "mail" {
        FirstSignIn::Mail
    } else {
        let empty = || secrecy::SecretString::from("");
        FirstSignIn::Password {
            password: form.password.unwrap_or_else(empty),
            confirm: form.confirm.unwrap_or_else(empty),
        }
    };
    let outcome = state
        .identity
        .create_first_admin(&form.token, &form.email, sign_in, &origin)
        .await?;
    let email = form.email.trim();
    let (status, extra) = match outcome {
        SetupOutcome::SignedIn {
            token,
            device,
            user,
        } => {
            let signed_in = Outcome::SignedIn {
                token,
                device,
                user,
                next: None,
                // The policy refused a common password before the account was made.
                password_change_advised: false,
            };
            return render_sign_in(&state, signed_in, || Err(Error::NotFound));
        }
        SetupOutcome::LinkMailed(user) => (
            StatusCode::OK,
            context! {
                closed => true,
                sent => true,
                email => user.email.as_str(),
                valid_for => state.identity.sign_in_link_valid_for(),
                log_transport => state.settings.smtp.host.is_none(),
            },
        ),
        SetupOutcome::InvalidEmail(error) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            context! { error => error, email => email, method => form.method },
        ),
        SetupOutcome::Password(PasswordChange::Weak(errors)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            context! { errors => errors, email => email, method => form.method },
        ),
        SetupOutcome::Password(_) => (
            StatusCode::BAD_REQUEST,
            context! { error => "The two passwords are not the same.", email => email, method => form.method },
        ),
        SetupOutcome::LinkExpired => (
            StatusCode::BAD_REQUEST,
            context! { closed => true, error => LINK_EXPIRED },
        ),
        SetupOutcome::Over => (StatusCode::GONE, context! { closed => true, over => true }),
    };
    render(&state, &nonce, &csrf, &form.token, status, extra)
}
