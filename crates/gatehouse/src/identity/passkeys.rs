//! Passkeys (WebAuthn, with `webauthn-rs`): registered from the account page, used to sign in
//! with no address typed (a discoverable credential), or as the second factor in place of a
//! TOTP code. The sign-ins themselves go through the one pipeline (`signin`); this module holds
//! the relying party, the ceremonies' starts, the checks of an answer, and the account's list.
//!
//! The relying party is the public URL (`GATEHOUSE_PUBLIC_URL`): its host is the relying-party
//! ID and its origin the only origin accepted. Browsers refuse an IP address as a
//! relying-party ID, so with a public URL whose host is an address passkeys are off (the pages
//! say so) — use a name (`localhost` in development).
//!
//! Two of the library's optional features are on, each for one reason:
//! - `danger-allow-state-serialisation` lets a ceremony's state (challenge, allowed
//!   credentials, user-verification policy) be serialised, so that it is kept server-side in
//!   the session store ([`super::ceremonies`]: the database or Redis) and any instance can
//!   finish a ceremony another began. The state never goes to the browser: only a random token
//!   naming it does.
//! - `conditional-ui` provides the discoverable-credential sign-in (`start_discoverable_
//!   authentication`); the sign-in page asks for a modal prompt from a button, not autofill.
//!
//! # Security
//! - Registration asks for a resident (discoverable) key and user verification; the library
//!   refuses an answer without user verification, for the wrong challenge, origin or
//!   relying-party ID, or with an unsupported algorithm. Attestation is not asked for
//!   (`none`): any authenticator may be used, as for TOTP apps.
//! - Every sign-in checks user verification, so a passkey sign-in is both factors (possession of
//!   the key, and the PIN or biometric that unlocks it): the MFA branch is satisfied.
//! - The library's counter and backup-state checks are kept: a counter that does not grow
//!   (a cloned authenticator) or a backup flag that changes against the stored credential is
//!   refused. The stored credential is updated after every use (counter, backup state) with
//!   the time it was last used.
//! - A credential ID belongs to one account: a unique constraint refuses the same credential
//!   registered twice, by anyone. A discoverable answer must name (`userHandle`) the account
//!   the credential is registered to; a second-factor answer must use one of the pending
//!   user's own credentials.
//! - Adding and removing need a sign-in from the last ten minutes, are audited in the same
//!   transaction as the change, and are mailed to the user as notices.
//! - Stored: public keys, counters, the user's names for their passkeys and when each was made
//!   and last used. No secret: a leaked table lets no one sign in.

use time::OffsetDateTime;
use url::Url;
use uuid::Uuid;
use webauthn_rs::prelude::{
    CreationChallengeResponse, DiscoverableAuthentication, DiscoverableKey, Passkey,
    PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, Webauthn, WebauthnBuilder,
};
use webauthn_rs_proto::ResidentKeyRequirement;

use super::ceremonies::{self, Kind};
use super::notices;
use super::queries::passkeys::{self as queries, StoredPasskey};
use super::service::Identity;
use super::sessions::Session;
use super::signin::Origin;
use super::users;
use super::{User, UserStatus};
use crate::audit::{self, Actor, AuditEvent};
use crate::error::Error;

/// Longest passkey name, in characters.
pub const MAX_NAME_CHARS: usize = 60;

/// The relying party of the public URL `public_url`, or `None` when its host is not a domain
/// name (an IP address), which browsers refuse as a relying-party ID.
pub fn relying_party(public_url: &Url) -> Option<Webauthn> {
    let rp_id = public_url.domain()?;
    WebauthnBuilder::new(rp_id, public_url)
        .ok()?
        .rp_name("Gatehouse")
        .build()
        .ok()
}

/// One of a user's passkeys, as the account page lists it.
#[derive(Debug, Clone)]
pub struct PasskeyInfo {
    /// Its identifier (for removal).
    pub id: Uuid,
    /// The name the user gave it.
    pub name: String,
    /// When it was registered.
    pub created_at: OffsetDateTime,
    /// When it last signed in, if ever.
    pub last_used_at: Option<OffsetDateTime>,
}

impl From<StoredPasskey> for PasskeyInfo {
    fn from(p: StoredPasskey) -> Self {
        Self {
            id: p.id,
            name: p.name,
            created_at: p.created_at,
            last_used_at: p.last_used_at,
        }
    }
}

/// A challenge for the browser: the options for `navigator.credentials`, and the token of the
/// ceremony to send back with the answer.
#[derive(Debug)]
pub struct Challenge<T> {
    /// The ceremony's token.
    pub ceremony: String,
    /// The `publicKey` options.
    pub options: T,
}

/// Why a passkey action was not done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasskeyRefusal {
    /// The public URL's host is an IP address: passkeys are off.
    Unavailable,
    /// The sign-in is too old: sign in again first.
    NotRecent,
    /// The ceremony is unknown, used, expired, or another's: start again.
    Expired,
    /// The authenticator's answer did not verify.
    Rejected,
    /// This passkey is already registered.
    AlreadyRegistered,
    /// The name is empty, too long or has control characters.
    BadName,
    /// No such passkey (of this user), or none at all.
    NotFound,
}

/// A checked passkey name: trimmed, 1 to [`MAX_NAME_CHARS`] characters, no control characters.
fn parse_name(raw: &str) -> Option<String> {
    let name = raw.trim();
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && !name.chars().any(char::is_control);
    ok.then(|| name.to_owned())
}

fn credential_key(id: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

fn decode(p: &StoredPasskey) -> Result<Passkey, Error> {
    serde_json::from_str(&p.credential)
        .map_err(|e| Error::Internal(anyhow::anyhow!("bad passkey in the database: {e}")))
}

fn encode(p: &Passkey) -> Result<String, Error> {
    serde_json::to_string(p).map_err(|e| Error::Internal(e.into()))
}

/// A discoverable answer's claim: the active user it names and their stored passkey.
#[derive(Debug)]
pub(super) struct Claimed {
    pub(super) user: User,
    passkey: StoredPasskey,
}

impl Identity {
    fn relying_party(&self) -> Result<&Webauthn, PasskeyRefusal> {
        self.config
            .relying_party
            .as_ref()
            .ok_or(PasskeyRefusal::Unavailable)
    }

    /// Whether passkeys can be used here (the public URL's host is a name).
    pub fn passkeys_available(&self) -> bool {
        self.config.relying_party.is_some()
    }

    /// The user's passkeys, oldest first.
    pub async fn passkeys(&self, user_id: Uuid) -> Result<Vec<PasskeyInfo>, Error> {
        Ok(queries::list(&self.db, user_id)
            .await?
            .into_iter()
            .map(PasskeyInfo::from)
            .collect())
    }

    /// Starts adding a passkey to `user`'s account.
    pub async fn passkey_registration_start(
        &self,
        user: &User,
        session: &Session,
    ) -> Result<Result<Challenge<CreationChallengeResponse>, PasskeyRefusal>, Error> {
        let rp = match self.relying_party() {
            Ok(rp) => rp,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if !self.recently_signed_in(session) {
            return Ok(Err(PasskeyRefusal::NotRecent));
        }
        let mut exclude = Vec::new();
        for stored in queries::list(&self.db, user.id).await? {
            exclude.push(decode(&stored)?.cred_id().clone());
        }
        let display = if user.display_name.as_str().is_empty() {
            user.email.as_str()
        } else {
            user.display_name.as_str()
        };
        let (mut options, state) = rp
            .start_passkey_registration(user.id, user.email.as_str(), display, Some(exclude))
            .map_err(|e| Error::Internal(anyhow::anyhow!("cannot start a registration: {e}")))?;
        // A passkey signs in with no address typed: the credential must be discoverable.
        if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
            selection.require_resident_key = true;
            selection.resident_key = Some(ResidentKeyRequirement::Required);
        }
        let ceremony =
            ceremonies::put(&self.sessions, Kind::Register, Some(user.id), &state).await?;
        Ok(Ok(Challenge { ceremony, options }))
    }

    /// Finishes adding a passkey named `name` with the browser's answer `credential` to the
    /// ceremony `ceremony`: stored, audited (`passkey.register`) and mailed.
    pub async fn passkey_registration_finish(
        &self,
        user: &User,
        session: &Session,
        ceremony: &str,
        credential: &RegisterPublicKeyCredential,
        name: &str,
        origin: &Origin,
    ) -> Result<Result<PasskeyInfo, PasskeyRefusal>, Error> {
        let rp = match self.relying_party() {
            Ok(rp) => rp,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if !self.recently_signed_in(session) {
            return Ok(Err(PasskeyRefusal::NotRecent));
        }
        let Some(name) = parse_name(name) else {
            return Ok(Err(PasskeyRefusal::BadName));
        };
        let Some(state) = ceremonies::take::<PasskeyRegistration>(
            &self.sessions,
            ceremony,
            Kind::Register,
            Some(user.id),
        )
        .await?
        else {
            return Ok(Err(PasskeyRefusal::Expired));
        };
        let passkey = match rp.finish_passkey_registration(credential, &state) {
            Ok(passkey) => passkey,
            Err(e) => {
                tracing::warn!(event = "passkey_registration_refused", user_id = %user.id, reason = %e, "a passkey registration did not verify");
                return Ok(Err(PasskeyRefusal::Rejected));
            }
        };
        let stored = StoredPasskey {
            id: Uuid::new_v4(),
            user_id: user.id,
            name,
            credential: encode(&passkey)?,
            created_at: self.now(),
            last_used_at: None,
        };
        let mut tx = self.db.begin().await?;
        if !queries::insert(&mut tx, &stored, &credential_key(passkey.cred_id())).await? {
            return Ok(Err(PasskeyRefusal::AlreadyRegistered));
        }
        audit::record(
            &mut tx,
            &origin.audit(Actor::User(user.id)),
            AuditEvent {
                action: "passkey.register",
                entity_type: "passkey",
                entity_id: Some(stored.id.to_string()),
                changes: serde_json::json!({ "name": stored.name }),
            },
        )
        .await?;
        tx.commit().await?;
        tracing::info!(event = "passkey_registered", user_id = %user.id, passkey_id = %stored.id, "passkey added");
        self.notify(&user.email, origin, notices::PASSKEY_ADDED);
        Ok(Ok(stored.into()))
    }

    /// Removes one of `user`'s passkeys: audited (`passkey.remove`) and mailed.
    pub async fn passkey_remove(
        &self,
        user: &User,
        session: &Session,
        id: Uuid,
        origin: &Origin,
    ) -> Result<Result<(), PasskeyRefusal>, Error> {
        if !self.recently_signed_in(session) {
            return Ok(Err(PasskeyRefusal::NotRecent));
        }
        let mut tx = self.db.begin().await?;
        let Some(name) = queries::delete(&mut tx, user.id, id).await? else {
            return Ok(Err(PasskeyRefusal::NotFound));
        };
        audit::record(
            &mut tx,
            &origin.audit(Actor::User(user.id)),
            AuditEvent {
                action: "passkey.remove",
                entity_type: "passkey",
                entity_id: Some(id.to_string()),
                changes: serde_json::json!({ "name": name }),
            },
        )
        .await?;
        tx.commit().await?;
        tracing::info!(event = "passkey_removed", user_id = %user.id, passkey_id = %id, "passkey removed");
        self.notify(&user.email, origin, notices::PASSKEY_REMOVED);
        Ok(Ok(()))
    }

    /// Starts a sign-in with a discoverable passkey (no address typed).
    pub async fn passkey_sign_in_start(
        &self,
    ) -> Result<Result<Challenge<RequestChallengeResponse>, PasskeyRefusal>, Error> {
        let rp = match self.relying_party() {
            Ok(rp) => rp,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let (mut options, state) = rp
            .start_discoverable_authentication()
            .map_err(|e| Error::Internal(anyhow::anyhow!("cannot start a sign-in: {e}")))?;
        // A button starts it: a modal prompt, not the autofill ("conditional") one.
        options.mediation = None;
        let ceremony = ceremonies::put(&self.sessions, Kind::SignIn, None, &state).await?;
        Ok(Ok(Challenge { ceremony, options }))
    }

    /// Starts a passkey as the second factor of the pending sign-in of `user_id`, offering only
    /// their own passkeys.
    pub async fn passkey_second_factor_start(
        &self,
        user_id: Uuid,
    ) -> Result<Result<Challenge<RequestChallengeResponse>, PasskeyRefusal>, Error> {
        let rp = match self.relying_party() {
            Ok(rp) => rp,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let mut keys = Vec::new();
        for stored in queries::list(&self.db, user_id).await? {
            keys.push(decode(&stored)?);
        }
        if keys.is_empty() {
            return Ok(Err(PasskeyRefusal::NotFound));
        }
        let (options, state) = rp
            .start_passkey_authentication(&keys)
            .map_err(|e| Error::Internal(anyhow::anyhow!("cannot start a sign-in: {e}")))?;
        let ceremony =
            ceremonies::put(&self.sessions, Kind::SecondFactor, Some(user_id), &state).await?;
        Ok(Ok(Challenge { ceremony, options }))
    }

    /// Takes the state of a discoverable sign-in ceremony (once).
    pub(super) async fn passkey_sign_in_state(
        &self,
        ceremony: &str,
    ) -> Result<Option<DiscoverableAuthentication>, Error> {
        ceremonies::take(&self.sessions, ceremony, Kind::SignIn, None).await
    }

    /// Who a discoverable answer claims to be: the active user whose passkey it names, when the
    /// answer's user handle is that user. Nothing is verified yet.
    pub(super) async fn passkey_claimed(
        &self,
        credential: &PublicKeyCredential,
    ) -> Result<Option<Claimed>, Error> {
        let Ok(rp) = self.relying_party() else {
            return Ok(None);
        };
        let Ok((handle, credential_id)) = rp.identify_discoverable_authentication(credential)
        else {
            return Ok(None);
        };
        let Some(passkey) =
            queries::by_credential_id(&self.db, &credential_key(credential_id)).await?
        else {
            tracing::info!(
                event = "passkey_unknown",
                "a sign-in answer named an unknown passkey"
            );
            return Ok(None);
        };
        if passkey.user_id != handle {
            tracing::warn!(event = "passkey_handle_mismatch", user_id = %passkey.user_id, "a sign-in answer named another account than its passkey's");
            return Ok(None);
        }
        Ok(match users::find_by_id(&self.db, passkey.user_id).await? {
            Some(user) if user.status == UserStatus::Active => Some(Claimed { user, passkey }),
            _ => None,
        })
    }

    /// Verifies a discoverable answer against the claimed passkey (signature, challenge, origin,
    /// user verification, counter, backup state); a verified use is recorded.
    pub(super) async fn passkey_verify_discoverable(
        &self,
        state: DiscoverableAuthentication,
        credential: &PublicKeyCredential,
        claimed: &Claimed,
    ) -> Result<bool, Error> {
        let Ok(rp) = self.relying_party() else {
            return Ok(false);
        };
        let mut passkey = decode(&claimed.passkey)?;
        let key = DiscoverableKey::from(&passkey);
        match rp.finish_discoverable_authentication(credential, state, &[key]) {
            Ok(result) if result.user_verified() => {
                passkey.update_credential(&result);
                let json = encode(&passkey)?;
                queries::record_use(&self.db, claimed.passkey.id, &json, self.now()).await?;
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(e) => {
                tracing::warn!(event = "passkey_refused", user_id = %claimed.user.id, reason = %e, "a passkey sign-in did not verify");
                Ok(false)
            }
        }
    }

    /// Verifies a second-factor answer for `user_id` to the ceremony `ceremony` (taken, once):
    /// one of the user's own passkeys, user verification, counter, backup state. A verified use
    /// is recorded.
    pub(super) async fn passkey_verify_second_factor(
        &self,
        user_id: Uuid,
        ceremony: &str,
        credential: &PublicKeyCredential,
    ) -> Result<bool, Error> {
        let Ok(rp) = self.relying_party() else {
            return Ok(false);
        };
        let Some(state) = ceremonies::take::<PasskeyAuthentication>(
            &self.sessions,
            ceremony,
            Kind::SecondFactor,
            Some(user_id),
        )
        .await?
        else {
            return Ok(false);
        };
        let result = match rp.finish_passkey_authentication(credential, &state) {
            Ok(result) if result.user_verified() => result,
            Ok(_) => return Ok(false),
            Err(e) => {
                tracing::warn!(event = "passkey_refused", user_id = %user_id, reason = %e, "a passkey second factor did not verify");
                return Ok(false);
            }
        };
        let id = credential_key(result.cred_id());
        let Some(stored) = queries::by_credential_id(&self.db, &id).await? else {
            return Ok(false);
        };
        if stored.user_id != user_id {
            return Ok(false);
        }
        let mut passkey = decode(&stored)?;
        passkey.update_credential(&result);
        queries::record_use(&self.db, stored.id, &encode(&passkey)?, self.now()).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_bounded_and_printable() {
        assert_eq!(parse_name("  Laptop ").as_deref(), Some("Laptop"));
        assert_eq!(parse_name("   "), None);
        assert_eq!(parse_name("a\u{0}b"), None);
        assert_eq!(
            parse_name(&"x".repeat(MAX_NAME_CHARS)).map(|n| n.len()),
            Some(60)
        );
        assert_eq!(parse_name(&"x".repeat(MAX_NAME_CHARS + 1)), None);
    }

    #[test]
    fn challenges_are_256_random_bits_and_only_approved_algorithms_are_offered() {
        use base64::Engine as _;
        let rp = relying_party(&Url::parse("https://auth.example.com/").unwrap()).unwrap();
        let challenge = |options: serde_json::Value| {
            let text = options["publicKey"]["challenge"]
                .as_str()
                .unwrap()
                .to_owned();
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .unwrap()
        };
        let (a, _) = rp
            .start_passkey_registration(Uuid::new_v4(), "ada@example.com", "Ada", None)
            .unwrap();
        let a = serde_json::to_value(&a).unwrap();
        let (b, _) = rp.start_discoverable_authentication().unwrap();
        let b = serde_json::to_value(&b).unwrap();
        assert_eq!(challenge(a.clone()).len(), 32);
        assert_eq!(challenge(b.clone()).len(), 32);
        assert_ne!(challenge(a.clone()), challenge(b));
        // ES256, RS256 and the other COSE algorithms the library deems secure: no SHA-1, no
        // RS1, no "none".
        let algorithms: Vec<i64> = a["publicKey"]["pubKeyCredParams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["alg"].as_i64().unwrap())
            .collect();
        assert!(algorithms.contains(&-7), "{algorithms:?}");
        assert!(
            algorithms
                .iter()
                .all(|alg| [-7, -35, -36, -257, -258, -259, -8].contains(alg)),
            "{algorithms:?}"
        );
        assert_eq!(
            a["publicKey"]["authenticatorSelection"]["userVerification"],
            "required"
        );
    }

    #[test]
    fn the_relying_party_is_the_public_urls_host_and_never_an_address() {
        let url = Url::parse("https://auth.example.com/").unwrap();
        assert!(relying_party(&url).is_some());
        let url = Url::parse("http://localhost:8080/").unwrap();
        assert!(relying_party(&url).is_some());
        let url = Url::parse("http://127.0.0.1:8080/").unwrap();
        assert!(relying_party(&url).is_none());
    }
}
