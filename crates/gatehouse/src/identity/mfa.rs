//! Multi-factor authentication: TOTP (RFC 6238, `totp-rs`) with recovery codes, and the signed
//! "second factor due" state between a first factor and a session.
//!
//! # Security
//! - Secrets are 160 random bits (RFC 4226's recommendation), stored sealed with
//!   XChaCha20-Poly1305 under a key derived from the secret key ([`Purpose::Totp`]); never in the
//!   clear, never logged. Enrolment keeps the new secret in `totp_pending` until a code made from
//!   it is entered, so a half-finished setup never locks anyone out.
//! - Codes are accepted one step (30 s) either side of now. Each accepted code raises
//!   `totp_last_step` by one conditional `UPDATE`, and only a later step is accepted after it:
//!   a code cannot be replayed, not even by two instances racing (one update wins).
//! - Ten recovery codes of ten Crockford base32 characters (50 bits each), shown once and stored
//!   as HMAC-SHA256 under a key derived from the secret key ([`Keys::code_mac`]); each is spent by
//!   one conditional `UPDATE`, so it works once.
//! - [`PendingSignIn`] is what a browser holds between the first factor and the second: the user,
//!   the method and where to go next, for five minutes, under an HMAC of its own key. It grants
//!   nothing but the right to enter a code, and the code's failures count against the account's
//!   sign-in throttle (see `identity::throttle`).
//! - A reset by an administrator, a disable and a confirmation are audited in the same
//!   transaction as the change.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::{Rng as _, RngCore as _};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;
use uuid::Uuid;

use super::queries::mfa::{self as queries, Sealed};
use crate::audit::{self, AuditContext, AuditEvent};
use crate::error::Error;
use crate::identity::magic_links::{CROCKFORD, normalize_code};
use crate::keys::{Keys, Purpose, Standing, Sweep};
use crate::store::{Db, Tx};

/// Seconds per TOTP step.
const STEP: u64 = 30;
/// Digits per TOTP code.
const DIGITS: usize = 6;
/// Bytes of a TOTP secret.
const SECRET_BYTES: usize = 20;
/// Recovery codes issued at a time.
pub const RECOVERY_CODES: usize = 10;
/// Characters per recovery code.
const RECOVERY_CODE_LEN: usize = 10;
/// The name authenticator apps show above the code.
const ISSUER: &str = "Gatehouse";
/// How long a browser may take between its first factor and its code.
pub const PENDING_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// What the enrolment page shows: the secret as a QR code and as text to type.
#[derive(Debug)]
pub struct Enrolment {
    /// The secret in base32, in groups of four for typing.
    pub setup_key: String,
    /// The `otpauth://` URI the QR code holds.
    pub uri: String,
    /// The QR code as an inline `<svg>` element.
    pub qr_svg: String,
}

/// The outcome of checking a second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// A current TOTP code, not used before.
    Totp,
    /// An unused recovery code, now spent; `remaining` are left.
    RecoveryCode {
        /// Unused codes left.
        remaining: usize,
    },
    /// A right TOTP code whose time step was already used: refused, and the holder is told
    /// (ASVS V2.8.5: someone may have seen the code and know the first factor).
    Replayed,
    /// Wrong, stale or spent.
    Rejected,
}

fn totp(secret: Vec<u8>, account: &str) -> totp_rs::TOTP {
    totp_rs::TOTP::new_unchecked(
        totp_rs::Algorithm::SHA1,
        DIGITS,
        1,
        STEP,
        secret,
        Some(ISSUER.to_owned()),
        account.to_owned(),
    )
}

/// The time step a code belongs to, if `code` is the code of `secret` for the step before,
/// at or after `now`.
fn matching_step(secret: &[u8], code: &str, now: OffsetDateTime) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = u64::try_from(now.unix_timestamp()).ok()?;
    let generator = totp(secret.to_vec(), "");
    let current = now / STEP;
    let mut found = None;
    // Every candidate is computed and compared, in constant time, whichever matches.
    for step in [current.saturating_sub(1), current, current + 1] {
        let expected = generator.generate(step * STEP);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            found = Some(step);
        }
    }
    found
}

fn enrolment(secret: &[u8], account: &str) -> Result<Enrolment, Error> {
    let generator = totp(secret.to_vec(), account);
    let uri = generator.get_url();
    let base32 = generator.get_secret_base32();
    let setup_key = base32
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let code = qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| Error::Internal(anyhow::anyhow!("cannot draw the QR code: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build();
    // Drop the XML declaration; label the image for screen readers.
    let start = svg.find("<svg").unwrap_or(0);
    let qr_svg = svg[start..].replacen(
        "<svg",
        "<svg role=\"img\" aria-label=\"QR code of your setup key\"",
        1,
    );
    Ok(Enrolment {
        setup_key,
        uri,
        qr_svg,
    })
}

/// The stored TOTP columns of a user.
#[derive(Debug, Default)]
struct Stored {
    secret: Option<String>,
    pending: Option<String>,
}

async fn stored(db: &Db, user_id: Uuid) -> Result<Stored, Error> {
    let (secret, pending) = queries::sealed(db, user_id).await?;
    Ok(Stored { secret, pending })
}

/// Starts (or restarts) enrolment: a new secret, kept pending until [`confirm`]. `None` when the
/// user already has MFA.
pub async fn begin(
    db: &Db,
    keys: &Keys,
    user_id: Uuid,
    account: &str,
) -> Result<Option<Enrolment>, Error> {
    let mut secret = vec![0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let sealed = keys.seal(Purpose::Totp, &secret);
    if !queries::set_pending(db, user_id, &sealed).await? {
        return Ok(None);
    }
    enrolment(&secret, account).map(Some)
}

/// The enrolment in progress, to show again after a wrong code.
pub async fn in_progress(
    db: &Db,
    keys: &Keys,
    user_id: Uuid,
    account: &str,
) -> Result<Option<Enrolment>, Error> {
    match stored(db, user_id).await?.pending {
        Some(sealed) => {
            let secret = keys.open(Purpose::Totp, &sealed)?.plaintext;
            enrolment(&secret, account).map(Some)
        }
        None => Ok(None),
    }
}

/// Finishes enrolment when `code` was made from the pending secret: MFA is on, ten recovery
/// codes are issued (returned, to be shown once) and the change is audited. `None` for a wrong
/// code or when nothing is pending.
pub async fn confirm(
    db: &Db,
    keys: &Keys,
    user_id: Uuid,
    code: &str,
    now: OffsetDateTime,
    ctx: &AuditContext,
) -> Result<Option<Vec<String>>, Error> {
    let Some(sealed) = stored(db, user_id).await?.pending else {
        return Ok(None);
    };
    let secret = keys.open(Purpose::Totp, &sealed)?.plaintext;
    let Some(step) = matching_step(&secret, code, now) else {
        return Ok(None);
    };
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    let mut tx = db.begin().await?;
    // Only the pending secret that was checked becomes the secret.
    if !queries::enable(&mut tx, user_id, &sealed, now, step).await? {
        return Ok(None);
    }
    let codes = replace_recovery_codes(&mut tx, keys, user_id, now).await?;
    audit_change(&mut tx, ctx, user_id, "mfa.enable").await?;
    tx.commit().await?;
    Ok(Some(codes))
}

/// Checks a second factor: a six-digit TOTP code or a recovery code (dashes and spaces
/// ignored). A recovery code that works is spent and audited.
pub async fn check(
    db: &Db,
    keys: &Keys,
    user_id: Uuid,
    input: &str,
    now: OffsetDateTime,
    ctx: &AuditContext,
) -> Result<Checked, Error> {
    let digits: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() == DIGITS && digits.bytes().all(|b| b.is_ascii_digit()) {
        return check_totp(db, keys, user_id, &digits, now).await;
    }
    let code = normalize_code(input);
    if code.len() != RECOVERY_CODE_LEN || !code.bytes().all(|b| CROCKFORD.contains(&b)) {
        return Ok(Checked::Rejected);
    }
    let mac = keys.code_mac(&["recovery", &user_id.to_string(), &code]);
    let mut tx = db.begin().await?;
    if !queries::spend_recovery_code(&mut tx, user_id, &mac, now).await? {
        return Ok(Checked::Rejected);
    }
    audit_change(&mut tx, ctx, user_id, "mfa.recovery_code_used").await?;
    tx.commit().await?;
    let remaining = remaining_recovery_codes(db, user_id).await?;
    Ok(Checked::RecoveryCode { remaining })
}

async fn check_totp(
    db: &Db,
    keys: &Keys,
    user_id: Uuid,
    code: &str,
    now: OffsetDateTime,
) -> Result<Checked, Error> {
    let Some(sealed) = stored(db, user_id).await?.secret else {
        return Ok(Checked::Rejected);
    };
    let secret = keys.open(Purpose::Totp, &sealed)?.plaintext;
    let Some(step) = matching_step(&secret, code, now) else {
        return Ok(Checked::Rejected);
    };
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    // Accept only a step later than every step accepted before: no replay, even across
    // instances.
    if queries::advance_step(db, user_id, step).await? {
        return Ok(Checked::Totp);
    }
    // A right code whose step was already used (or an older one after a newer): a replay, which
    // an operator should see apart from a mistyped code.
    tracing::warn!(
        event = "totp_replayed",
        user_id = %user_id,
        "a TOTP code already used was presented again and refused"
    );
    Ok(Checked::Replayed)
}

/// How many unused recovery codes the user has.
pub async fn remaining_recovery_codes(db: &Db, user_id: Uuid) -> Result<usize, Error> {
    let n = queries::count_unused_recovery_codes(db, user_id).await?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Replaces the user's recovery codes with ten new ones (returned, to be shown once); audited.
/// `None` when the user has no MFA.
pub async fn regenerate_recovery_codes(
    db: &Db,
    keys: &Keys,
    user_id: Uuid,
    now: OffsetDateTime,
    ctx: &AuditContext,
) -> Result<Option<Vec<String>>, Error> {
    let mut tx = db.begin().await?;
    let enabled = queries::enabled_for_update(&mut tx, user_id).await?;
    if enabled != Some(true) {
        return Ok(None);
    }
    let codes = replace_recovery_codes(&mut tx, keys, user_id, now).await?;
    audit_change(&mut tx, ctx, user_id, "mfa.recovery_codes_regenerated").await?;
    tx.commit().await?;
    Ok(Some(codes))
}

async fn replace_recovery_codes(
    tx: &mut Tx,
    keys: &Keys,
    user_id: Uuid,
    now: OffsetDateTime,
) -> Result<Vec<String>, Error> {
    delete_recovery_codes(tx, user_id).await?;
    let mut rng = rand::rngs::OsRng;
    let mut shown = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let code: String = (0..RECOVERY_CODE_LEN)
            .map(|_| char::from(CROCKFORD[rng.gen_range(0..CROCKFORD.len())]))
            .collect();
        let mac = keys.code_mac(&["recovery", &user_id.to_string(), &code]);
        queries::insert_recovery_code(tx, user_id, &mac, now).await?;
        shown.push(format!(
            "{}-{}",
            &code[..RECOVERY_CODE_LEN / 2],
            &code[RECOVERY_CODE_LEN / 2..]
        ));
    }
    Ok(shown)
}

async fn delete_recovery_codes(tx: &mut Tx, user_id: Uuid) -> Result<(), Error> {
    queries::delete_recovery_codes(tx, user_id).await
}

/// Turns MFA off (secret, pending enrolment and recovery codes removed), recording `action`
/// (`mfa.disable` by the user, `mfa.reset` by an administrator). `false` when it was off.
pub async fn disable(
    db: &Db,
    user_id: Uuid,
    action: &'static str,
    ctx: &AuditContext,
) -> Result<bool, Error> {
    let mut tx = db.begin().await?;
    if !queries::clear(&mut tx, user_id).await? {
        return Ok(false);
    }
    delete_recovery_codes(&mut tx, user_id).await?;
    audit_change(&mut tx, ctx, user_id, action).await?;
    tx.commit().await?;
    Ok(true)
}

async fn audit_change(
    tx: &mut Tx,
    ctx: &AuditContext,
    user_id: Uuid,
    action: &'static str,
) -> Result<(), Error> {
    audit::record(
        tx,
        ctx,
        AuditEvent {
            action,
            entity_type: "user",
            entity_id: Some(user_id.to_string()),
            changes: serde_json::json!({}),
        },
    )
    .await?;
    Ok(())
}

/// Seals every TOTP secret (confirmed or pending) that the previous secret key opened under the
/// current one. Values neither key opens, or changed meanwhile, are counted as left.
pub async fn reencrypt(db: &Db, keys: &Keys) -> Result<Sweep, Error> {
    let rows = queries::all_sealed(db).await?;
    let mut sweep = Sweep::default();
    for (id, secret, pending) in rows {
        for (column, value) in [(Sealed::Secret, secret), (Sealed::Pending, pending)] {
            let Some(sealed) = value else { continue };
            let standing = keys.classify(Purpose::Totp, &sealed);
            let stored = match &standing {
                Standing::Reseal(fresh) => queries::reseal(db, column, id, &sealed, fresh).await?,
                _ => false,
            };
            sweep.count(&standing, stored);
        }
    }
    Ok(sweep)
}

/// A first factor accepted, the second still due: what the browser holds in the
/// `gatehouse-mfa` cookie until it enters a code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSignIn {
    /// Who.
    #[serde(rename = "u")]
    pub user_id: Uuid,
    /// How the first factor was given (`password`, `magic_link`, `code`).
    #[serde(rename = "m")]
    pub method: String,
    /// Where to go after the second factor.
    #[serde(rename = "n")]
    pub next: Option<String>,
    /// Unix time after which it is worthless.
    #[serde(rename = "e")]
    pub expires_at: i64,
    /// The password given is on the list of common passwords: once signed in, the user is told
    /// to change it.
    #[serde(rename = "c", default, skip_serializing_if = "std::ops::Not::not")]
    pub password_change_advised: bool,
}

impl PendingSignIn {
    /// A pending sign-in that expires [`PENDING_LIFETIME`] after `now`.
    pub fn new(user_id: Uuid, method: &str, next: Option<String>, now: OffsetDateTime) -> Self {
        Self {
            user_id,
            method: method.to_owned(),
            next,
            expires_at: (now + PENDING_LIFETIME).unix_timestamp(),
            password_change_advised: false,
        }
    }

    /// The cookie value: `base64url(json).mac`.
    pub fn encode(&self, keys: &Keys) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let mac = keys.pending_sign_in_mac(&[&payload]);
        format!("{payload}.{mac}")
    }

    /// The pending sign-in a cookie value holds, if its MAC is right and it has not expired.
    pub fn decode(raw: &str, keys: &Keys, now: OffsetDateTime) -> Option<Self> {
        if raw.len() > 1024 {
            return None;
        }
        let (payload, mac) = raw.split_once('.')?;
        let expected = keys.pending_sign_in_mac(&[payload]);
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
            return None;
        }
        let pending: Self = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (now.unix_timestamp() < pending.expires_at).then_some(pending)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn keys(secret: &str) -> Keys {
        Keys::sealing_only(&SecretString::from(secret.repeat(40)), None)
    }

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    #[test]
    fn rfc_6238_vectors_match_one_step_either_side() {
        // RFC 6238 appendix B, SHA-1, last six digits.
        let secret = b"12345678901234567890";
        assert_eq!(matching_step(secret, "287082", at(59)), Some(1));
        assert_eq!(
            matching_step(secret, "081804", at(1_111_111_109)),
            Some(37_037_036)
        );
        assert_eq!(
            matching_step(secret, "081804", at(1_111_111_109 + 30)),
            Some(37_037_036),
            "one step late"
        );
        assert_eq!(
            matching_step(secret, "081804", at(1_111_111_109 - 30)),
            Some(37_037_036),
            "one step early"
        );
        assert_eq!(
            matching_step(secret, "081804", at(1_111_111_109 + 60)),
            None
        );
        assert_eq!(matching_step(secret, "081805", at(1_111_111_109)), None);
        assert_eq!(matching_step(secret, "08180", at(1_111_111_109)), None);
        assert_eq!(matching_step(secret, "0818041", at(1_111_111_109)), None);
        assert_eq!(
            matching_step(secret, "08 18 04", at(1_111_111_109)),
            Some(37_037_036)
        );
    }

    #[test]
    fn enrolment_shows_the_secret_as_qr_and_text() {
        let e = enrolment(b"12345678901234567890", "ada@example.com").unwrap();
        assert_eq!(
            e.setup_key.replace(' ', ""),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
        assert!(
            e.uri
                .starts_with("otpauth://totp/Gatehouse:ada%40example.com?"),
            "{}",
            e.uri
        );
        assert!(e.uri.contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"));
        assert!(e.qr_svg.starts_with("<svg role=\"img\""));
        assert!(!e.qr_svg.contains("<?xml"));
    }

    #[test]
    fn pending_sign_ins_are_tamper_proof_and_expire() {
        let k = keys("a");
        let now = at(1_800_000_000);
        let p = PendingSignIn::new(Uuid::new_v4(), "password", Some("/account".into()), now);
        let raw = p.encode(&k);
        assert_eq!(PendingSignIn::decode(&raw, &k, now), Some(p.clone()));
        assert_eq!(
            PendingSignIn::decode(&raw, &k, now + PENDING_LIFETIME),
            None,
            "expired"
        );
        assert_eq!(
            PendingSignIn::decode(&raw, &keys("b"), now),
            None,
            "other key"
        );
        let other = PendingSignIn::new(Uuid::new_v4(), "password", None, now).encode(&k);
        let (payload, _) = other.split_once('.').unwrap();
        let (_, mac) = raw.split_once('.').unwrap();
        assert_eq!(
            PendingSignIn::decode(&format!("{payload}.{mac}"), &k, now),
            None,
            "another user's payload under this MAC"
        );
        assert_eq!(PendingSignIn::decode("garbage", &k, now), None);
    }
}
