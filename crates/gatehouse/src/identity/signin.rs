//! Passwordless sign-in: who may get a link, sending it, and turning a used link into a session.
//!
//! # Security
//! - **No oracle.** [`request_link`] returns before looking anything up: the allowlist check,
//!   the link and the mail all happen in a background task, so the response (status, body and
//!   timing) is the same for every address, allowed or not.
//! - Only allowlisted addresses get a mail: an active user, or an address in a domain of
//!   `GATEHOUSE_ALLOWED_DOMAINS` (who gets an account with role `user` at first sign-in).
//!   Disabled users get nothing, and a link sent before they were disabled does not sign them in.
//! - Every sign-in creates a new session (fresh token and CSRF secret) and is audited.
//! - A user with MFA gets no session from a first factor alone, whichever it is (password, link
//!   or code): [`complete`] hands back a [`PendingSignIn`] instead, finished at `/login/mfa`.

use gatehouse_security::{Decision, Quota};
use sha2::Digest as _;

use crate::Error;
use crate::app::AppState;
use crate::audit::{self, Actor, AuditContext, AuditEvent};
use crate::config::Rate;
use crate::identity::magic_links::{self, Consumed};
use crate::identity::mfa::PendingSignIn;
use crate::identity::sessions::{SessionMeta, SessionToken};
use crate::identity::users::{self, NewUser};
use crate::identity::{DisplayName, Email, Role, User, UserStatus};
use crate::mail::{Mail, mask_email};

/// Why a consumed link does not sign anyone in.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The address is not (or no longer) allowed.
    #[error("this address may not sign in")]
    NotAllowed,
    /// Anything else.
    #[error(transparent)]
    Other(#[from] Error),
}

/// Whether, and as whom, an address may sign in by link.
enum Allowance {
    /// An active user.
    User(User),
    /// No account yet, in an allowed domain: one is created at first sign-in.
    NewInAllowedDomain,
    /// Unknown outside the allowed domains, or disabled.
    No,
}

async fn allowance(state: &AppState, email: &Email) -> Result<Allowance, Error> {
    Ok(match users::find_by_email(&state.db, email).await? {
        Some(user) if user.status == UserStatus::Active => Allowance::User(user),
        Some(_) => Allowance::No,
        None if domain_allowed(state, email) => Allowance::NewInAllowedDomain,
        None => Allowance::No,
    })
}

fn domain_allowed(state: &AppState, email: &Email) -> bool {
    state
        .settings
        .allowed_domains
        .iter()
        .any(|d| d == email.domain())
}

/// Counts this request against the address's mail budget, then queues "send a link to
/// `email` if it is allowed" and returns. The budget is checked for every address alike, in
/// the request path, so it tells nothing about which addresses exist; over budget, nothing is
/// queued at all.
pub async fn request_link(state: &AppState, email: Email, next: Option<String>) {
    if !within_mail_budget(state, &email).await {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = send_link(&state, &email, next.as_deref()).await {
            tracing::error!(event = "magic_link_failed", to = %mask_email(&email), error = %e, "could not send a sign-in link");
        }
    });
}

/// Checks one event against a per-address rule. `Ok(None)`: within budget (or the rule is
/// off); `Ok(Some(decision))`: over budget. When the store cannot decide, the sign-in rules'
/// failure policy applies (a denial is reported as a decision with a short retry).
async fn per_address(
    state: &AppState,
    rule: &'static str,
    rate: Option<Rate>,
    email: &Email,
) -> Option<Decision> {
    let rate = rate?;
    let quota = Quota::new(rate.limit, rate.period).ok()?;
    // Keyed by a hash: the rate-limit store never holds addresses.
    let key = hex::encode(sha2::Sha256::digest(email.as_str().as_bytes()));
    match state.limiter.check(&format!("{rule}:{key}"), &quota).await {
        Ok(decision) if decision.allowed => None,
        Ok(decision) => {
            tracing::info!(event = "rate_limited", rule, to = %mask_email(email), "per-address limit reached");
            Some(decision)
        }
        Err(e) => {
            let deny = state.settings.signin_rate_limit_deny_on_store_error;
            tracing::warn!(event = "rate_limit_store_error", rule, error = %e, deny, "cannot check a per-address limit");
            deny.then(|| Decision {
                allowed: false,
                limit: rate.limit,
                remaining: 0,
                reset_after: quota.emission_interval(),
                retry_after: Some(quota.emission_interval()),
            })
        }
    }
}

/// Counts a sign-in attempt for the submitted address (`GATEHOUSE_SIGNIN_EMAIL_RATE_LIMIT`).
/// Applies to every address alike, so a refusal tells nothing about which exist.
pub async fn attempt_allowed(state: &AppState, email: &Email) -> Result<(), Decision> {
    match per_address(
        state,
        "signin_email",
        state.settings.signin_email_rate_limit,
        email,
    )
    .await
    {
        None => Ok(()),
        Some(decision) => Err(decision),
    }
}

/// Whether `email` may get another sign-in or reset mail now (`GATEHOUSE_MAGIC_LINK_RATE_LIMIT`,
/// one budget for both).
pub async fn within_mail_budget(state: &AppState, email: &Email) -> bool {
    per_address(
        state,
        "magic_link_mail",
        state.settings.magic_link_rate_limit,
        email,
    )
    .await
    .is_none()
}

async fn send_link(state: &AppState, email: &Email, next: Option<&str>) -> Result<(), Error> {
    if matches!(allowance(state, email).await?, Allowance::No) {
        tracing::info!(event = "magic_link_not_allowed", to = %mask_email(email), "no link for an address that is not allowed");
        return Ok(());
    }
    let link = magic_links::issue(&state.db, &state.keys, state.clock.now(), email, next).await?;
    let base = state.settings.public_url.as_str().trim_end_matches('/');
    let url = format!(
        "{base}/login/magic/verify?token={}",
        magic_links::expose(&link.token)
    );
    let code = magic_links::expose(&link.code);
    let minutes = magic_links::LINK_LIFETIME.as_secs() / 60;
    let (text, html) = state.templates.mail(
        "magic_link",
        minijinja::context! { url => url, code => code, minutes => minutes },
    )?;
    state
        .mailer
        .send(Mail {
            to: email.clone(),
            subject: "Your Gatehouse sign-in link".into(),
            text,
            html,
        })
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    tracing::info!(event = "magic_link_sent", to = %mask_email(email), "sign-in link queued");
    Ok(())
}

/// What an accepted first factor comes to.
#[derive(Debug)]
pub enum SignedIn {
    /// A new session (its cookie token) for the user.
    Session(SessionToken, User),
    /// The user has MFA: no session until the second factor at `/login/mfa`.
    SecondFactorDue(PendingSignIn),
}

/// Signs in the owner of a consumed link (or a checked password): a new session, audited; or,
/// for a user with MFA, the pending sign-in that `/login/mfa` finishes. Every way in passes
/// here, so none skips the second factor.
pub async fn complete(
    state: &AppState,
    consumed: &Consumed,
    method: &'static str,
    meta: &SessionMeta,
    request_id: Option<String>,
) -> Result<SignedIn, SignInError> {
    let user = match allowance(state, &consumed.email).await? {
        Allowance::User(user) => user,
        Allowance::No => return Err(SignInError::NotAllowed),
        Allowance::NewInAllowedDomain => {
            let ctx = AuditContext {
                actor: Actor::System,
                client_ip: meta.client_ip,
                request_id: request_id.clone(),
            };
            let new = NewUser {
                email: consumed.email.clone(),
                display_name: DisplayName::default(),
                role: Role::User,
            };
            users::create(&state.db, new, &ctx).await?
        }
    };
    if user.mfa_enabled {
        tracing::info!(event = "second_factor_due", user_id = %user.id, method, "first factor accepted; second factor due");
        return Ok(SignedIn::SecondFactorDue(PendingSignIn::new(
            user.id,
            method,
            consumed.next.clone(),
            state.clock.now(),
        )));
    }
    let token = start_session(state, &user, method, meta, request_id).await?;
    Ok(SignedIn::Session(token, user))
}

/// Starts a session for a user whose sign-in is complete (`method` names every factor given),
/// audited as `auth.sign_in`.
pub async fn start_session(
    state: &AppState,
    user: &User,
    method: &str,
    meta: &SessionMeta,
    request_id: Option<String>,
) -> Result<SessionToken, Error> {
    let (token, session) = state.sessions.create(user.id, meta).await?;
    let ctx = AuditContext {
        actor: Actor::User(user.id),
        client_ip: meta.client_ip,
        request_id,
    };
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        &ctx,
        AuditEvent {
            action: "auth.sign_in",
            entity_type: "session",
            entity_id: Some(session.id_hash[..16].to_owned()),
            changes: serde_json::json!({ "method": method }),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(event = "sign_in", user_id = %user.id, method, "signed in");
    Ok(token)
}

/// Signs in with a password (see [`check_password`]), then as [`complete`] does.
pub async fn with_password(
    state: &AppState,
    email: &Email,
    password: &secrecy::SecretString,
    next: Option<String>,
    meta: &SessionMeta,
    request_id: Option<String>,
) -> Result<SignedIn, SignInError> {
    check_password(state, email, password, meta, request_id.clone()).await?;
    let consumed = Consumed {
        email: email.clone(),
        next,
    };
    complete(state, &consumed, "password", meta, request_id).await
}

/// Checks a password: the same failure (recorded as `auth.password_failed`) for an unknown
/// address, a wrong password, a user without a password and a disabled user, after the same
/// work (a dummy verification when there is no hash to check). A legacy or outdated hash is
/// replaced after a success. Starts nothing: the caller makes a session or tokens.
pub async fn check_password(
    state: &AppState,
    email: &Email,
    password: &secrecy::SecretString,
    meta: &SessionMeta,
    request_id: Option<String>,
) -> Result<User, SignInError> {
    let user = users::find_by_email(&state.db, email).await?;
    let stored = match &user {
        Some(u) => users::password_hash(&state.db, u.id).await?,
        None => None,
    };
    let verified = match &stored {
        Some(hash) => state.passwords.verify(password, hash).await?,
        None => {
            state.passwords.verify_dummy(password).await?;
            crate::identity::passwords::Verified {
                ok: false,
                needs_rehash: false,
            }
        }
    };
    let user = match user {
        Some(u) if verified.ok && u.status == UserStatus::Active => u,
        _ => {
            record_failure(state, email, "password", meta, request_id).await?;
            return Err(SignInError::NotAllowed);
        }
    };
    if verified.needs_rehash {
        let fresh = state.passwords.hash(password).await?;
        users::upgrade_password_hash(&state.db, user.id, &fresh).await?;
        tracing::info!(event = "password_hash_upgraded", user_id = %user.id, "password hash upgraded to the current parameters");
    }
    Ok(user)
}

/// Records that failed password sign-ins locked an address (`auth.locked`).
pub async fn record_lock(
    state: &AppState,
    email: &Email,
    meta: &SessionMeta,
    request_id: Option<String>,
) -> Result<(), Error> {
    let minutes = state.settings.throttle.lock_duration.as_secs() / 60;
    audit_address_event(
        state,
        "auth.locked",
        email,
        meta,
        request_id,
        serde_json::json!({ "minutes": minutes }),
    )
    .await?;
    tracing::warn!(event = "sign_in_locked", to = %mask_email(email), "password sign-in locked after repeated failures");
    Ok(())
}

/// Records a password reset request (`auth.password_reset_requested`) for the submitted
/// address, whether or not it has an account: the record, like the answer, tells nothing.
pub async fn record_reset_request(
    state: &AppState,
    email: &Email,
    meta: &SessionMeta,
    request_id: Option<String>,
) -> Result<(), Error> {
    audit_address_event(
        state,
        "auth.password_reset_requested",
        email,
        meta,
        request_id,
        serde_json::json!({}),
    )
    .await
}

/// An audit record about a submitted address (masked), by the system, from this request.
async fn audit_address_event(
    state: &AppState,
    action: &'static str,
    email: &Email,
    meta: &SessionMeta,
    request_id: Option<String>,
    changes: serde_json::Value,
) -> Result<(), Error> {
    let ctx = AuditContext {
        actor: Actor::System,
        client_ip: meta.client_ip,
        request_id,
    };
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        &ctx,
        AuditEvent {
            action,
            entity_type: "email",
            entity_id: Some(mask_email(email)),
            changes,
        },
    )
    .await?;
    tx.commit().await
}

/// Records a failed code attempt.
pub async fn record_failed_code(
    state: &AppState,
    email: &Email,
    meta: &SessionMeta,
    request_id: Option<String>,
) -> Result<(), Error> {
    record_failure(state, email, "code", meta, request_id).await
}

/// Records a failed sign-in attempt (`auth.code_failed` or `auth.password_failed`).
async fn record_failure(
    state: &AppState,
    email: &Email,
    method: &'static str,
    meta: &SessionMeta,
    request_id: Option<String>,
) -> Result<(), Error> {
    let action = if method == "code" {
        "auth.code_failed"
    } else {
        "auth.password_failed"
    };
    audit_address_event(
        state,
        action,
        email,
        meta,
        request_id,
        serde_json::json!({}),
    )
    .await?;
    tracing::warn!(event = "sign_in_failed", method, to = %mask_email(email), "sign-in failed");
    Ok(())
}
