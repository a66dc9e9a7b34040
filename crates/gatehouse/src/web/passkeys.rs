//! Passkey pages' endpoints: the WebAuthn ceremonies that `static/passkeys.js` runs from the
//! sign-in page, the second-factor page and the account page, and removing a passkey.
//!
//! Each ceremony is two JSON calls: `…/start` answers the `publicKey` options for
//! `navigator.credentials` with a ceremony token, and `…/finish` takes the browser's answer
//! with that token. They are page endpoints, not API resources: they need the browser's session
//! or pending-sign-in cookie and its CSRF token (in the `X-CSRF-Token` header, from the page's
//! `<meta name="csrf-token">`), and they are shaped by the browser's WebAuthn calls, so they are
//! not in the OpenAPI document of `/api`.
//!
//! | route | what |
//! |---|---|
//! | `POST /login/passkey/start`, `/login/passkey/finish` | sign in with a discoverable passkey |
//! | `POST /login/mfa/passkey/start`, `/login/mfa/passkey/finish` | a passkey as the second factor |
//! | `POST /account/passkeys/start`, `/account/passkeys/finish` | add a passkey |
//! | `POST /account/passkeys/remove` | remove one (a form) |
//!
//! The sign-in routes are under `/login`, so the per-IP sign-in limit covers them.
//!
//! # Security
//! The rules (single-use ceremonies, recent sign-in, audit, notices, the sign-in pipeline) are
//! the identity services'; these handlers parse and render. Refusals are problem documents that
//! name no account.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use gatehouse_security::rate_limit::too_many_requests;
use gatehouse_security::{CspNonce, CsrfToken, Problem};
use http::HeaderMap;
use http::StatusCode;
use http::header::SET_COOKIE;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::auth::throttled;
use super::session::{
    CurrentUser, clear_pending_cookie, pending_sign_in, set_cookie, set_device_cookie,
};
use crate::error::Error;
use crate::identity::passkeys::{Challenge, PasskeyRefusal};
use crate::identity::signin::{Origin, Outcome, SecondFactor};
use crate::state::AppState;

/// The passkey routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login/passkey/start", post(sign_in_start))
        .route("/login/passkey/finish", post(sign_in_finish))
        .route("/login/mfa/passkey/start", post(second_factor_start))
        .route("/login/mfa/passkey/finish", post(second_factor_finish))
        .route("/account/passkeys/start", post(register_start))
        .route("/account/passkeys/finish", post(register_finish))
        .route("/account/passkeys/remove", post(remove))
}

/// The library's challenge (`{"publicKey": …}`, as `navigator.credentials` takes it) with the
/// ceremony's token beside it.
#[derive(Serialize)]
struct ChallengeBody<T> {
    ceremony: String,
    #[serde(flatten)]
    options: T,
}

fn challenge<T: Serialize>(c: Challenge<T>) -> Response {
    Json(ChallengeBody {
        ceremony: c.ceremony,
        options: c.options,
    })
    .into_response()
}

#[derive(Deserialize)]
struct SignInAnswer {
    ceremony: String,
    credential: PublicKeyCredential,
    next: Option<String>,
}

#[derive(Deserialize)]
struct RegisterAnswer {
    ceremony: String,
    name: String,
    credential: RegisterPublicKeyCredential,
}

#[derive(Deserialize)]
struct RemoveForm {
    id: String,
}

const SIGN_IN_REFUSED: &str =
    "That passkey did not sign you in. Try again, or sign in another way.";

fn problem(status: StatusCode, detail: &str) -> Response {
    Problem::new(status).with_detail(detail).into_response()
}

/// A refusal as a problem document.
fn refused(refusal: &PasskeyRefusal) -> Response {
    match refusal {
        PasskeyRefusal::Unavailable => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Passkeys are not available on this server.",
        ),
        PasskeyRefusal::NotRecent => problem(
            StatusCode::FORBIDDEN,
            "For your safety, sign in again first: your last sign-in was more than ten minutes ago.",
        ),
        PasskeyRefusal::Expired => problem(
            StatusCode::BAD_REQUEST,
            "This request has expired or was already used. Try again.",
        ),
        PasskeyRefusal::Rejected => problem(
            StatusCode::BAD_REQUEST,
            "Your passkey's answer could not be checked. Try again.",
        ),
        PasskeyRefusal::AlreadyRegistered => {
            problem(StatusCode::CONFLICT, "This passkey is already registered.")
        }
        PasskeyRefusal::BadName => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Give the passkey a name of 1 to 60 characters.",
        ),
        PasskeyRefusal::NotFound => problem(StatusCode::NOT_FOUND, "No such passkey."),
    }
}

/// A sign-in's outcome as JSON: where to go, with the session and device cookies; or a
/// problem.
fn sign_in_answer(state: &AppState, outcome: Outcome) -> Response {
    match outcome {
        Outcome::SignedIn {
            token,
            device,
            next,
            ..
        } => {
            let to = next.unwrap_or_else(|| "/".to_owned());
            let mut response = Json(serde_json::json!({ "redirect": to })).into_response();
            let headers = response.headers_mut();
            headers.append(SET_COOKIE, set_cookie(state, &token));
            headers.append(SET_COOKIE, set_device_cookie(state, &device));
            headers.append(SET_COOKIE, clear_pending_cookie(state));
            response
        }
        Outcome::Throttled(wait) => throttled(wait),
        Outcome::RateLimited(decision) => too_many_requests(&decision),
        Outcome::SecondFactorDue(_)
        | Outcome::Refused
        | Outcome::TokensIssued(_)
        | Outcome::MfaRequired
        | Outcome::EnrolmentRequired
        | Outcome::SwitchUnconfirmed(_) => problem(StatusCode::UNAUTHORIZED, SIGN_IN_REFUSED),
    }
}

async fn sign_in_start(State(state): State<AppState>) -> Result<Response, Error> {
    Ok(match state.identity.passkey_sign_in_start().await? {
        Ok(c) => challenge(c),
        Err(refusal) => refused(&refusal),
    })
}

async fn sign_in_finish(
    State(state): State<AppState>,
    origin: Origin,
    Json(answer): Json<SignInAnswer>,
) -> Result<Response, Error> {
    let outcome = state
        .identity
        .sign_in_with_passkey(&answer.ceremony, &answer.credential, answer.next, &origin)
        .await?;
    Ok(sign_in_answer(&state, outcome))
}

async fn second_factor_start(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let Some(pending) = pending_sign_in(&state, &headers) else {
        return Ok(problem(
            StatusCode::UNAUTHORIZED,
            "Sign in again: this sign-in has expired.",
        ));
    };
    Ok(
        match state
            .identity
            .passkey_second_factor_start(pending.user_id)
            .await?
        {
            Ok(c) => challenge(c),
            Err(refusal) => refused(&refusal),
        },
    )
}

async fn second_factor_finish(
    State(state): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    Json(answer): Json<SignInAnswer>,
) -> Result<Response, Error> {
    let Some(pending) = pending_sign_in(&state, &headers) else {
        return Ok(problem(
            StatusCode::UNAUTHORIZED,
            "Sign in again: this sign-in has expired.",
        ));
    };
    let factor = SecondFactor::Passkey {
        ceremony: &answer.ceremony,
        credential: &answer.credential,
    };
    let outcome = state
        .identity
        .sign_in_second_factor(&pending, factor, &origin)
        .await?;
    Ok(sign_in_answer(&state, outcome))
}

async fn register_start(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<Response, Error> {
    Ok(
        match state
            .identity
            .passkey_registration_start(&current.user, &current.session)
            .await?
        {
            Ok(c) => challenge(c),
            Err(refusal) => refused(&refusal),
        },
    )
}

async fn register_finish(
    State(state): State<AppState>,
    current: CurrentUser,
    origin: Origin,
    Json(answer): Json<RegisterAnswer>,
) -> Result<Response, Error> {
    Ok(
        match state
            .identity
            .passkey_registration_finish(
                &current.user,
                &current.session,
                &answer.ceremony,
                &answer.credential,
                &answer.name,
                &origin,
            )
            .await?
        {
            Ok(added) => (
                StatusCode::CREATED,
                Json(serde_json::json!({ "id": added.id, "name": added.name })),
            )
                .into_response(),
            Err(refusal) => refused(&refusal),
        },
    )
}

async fn remove(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
    origin: Origin,
    Form(form): Form<RemoveForm>,
) -> Result<Response, Error> {
    let Ok(id) = Uuid::parse_str(&form.id) else {
        return Err(Error::NotFound);
    };
    match state
        .identity
        .passkey_remove(&current.user, &current.session, id, &origin)
        .await?
    {
        Ok(()) => Ok(Redirect::to("/account?notice=passkey-removed").into_response()),
        Err(PasskeyRefusal::NotRecent) => {
            super::account::sign_in_again(&state, &nonce, &csrf, &current).await
        }
        Err(_) => Err(Error::NotFound),
    }
}
