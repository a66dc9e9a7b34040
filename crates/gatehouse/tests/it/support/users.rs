//! Test users: the one fixture that creates them, and their credentials (API tokens, TOTP
//! codes).
//!
//! Users are created through the identity service, as the CLI's `user add` does, with the
//! CLI's audit context; tests of `user add` itself run the binary instead.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use gatehouse::audit::AuditContext;
use gatehouse::clock::{Clock as _, ManualClock};
use gatehouse::identity::passwords::{HashParams, HashingPool, PasswordHasher, Pepper};
use gatehouse::identity::users::{self, NewUser};
use gatehouse::identity::{DisplayName, Email, Role, mfa};
use gatehouse::keys::Keys;
use gatehouse::store::Db;
use secrecy::SecretString;
use uuid::Uuid;

use super::GOOD_KEY;
use super::app::TestApp;

/// Starts creating the user `email` in `app`: a `user` with no name, no password and no second
/// factor unless the builder says otherwise. Await it to create the user.
///
/// ```ignore
/// let ada = add_user(&app, "ada@example.com").role("admin").password(PASSWORD).mfa().await;
/// ```
pub(crate) fn add_user(app: &TestApp, email: &str) -> AddUser {
    AddUser {
        db: app.db.clone(),
        clock: app.clock.clone(),
        email: email.to_owned(),
        role: Role::User,
        name: String::new(),
        password: None,
        mfa: false,
    }
}

/// A user about to be created; see [`add_user`]. Owns what it needs, so it can be awaited in a
/// spawned task.
#[must_use = "a user is created only when this is awaited"]
pub(crate) struct AddUser {
    db: Db,
    clock: ManualClock,
    email: String,
    role: Role,
    name: String,
    password: Option<String>,
    mfa: bool,
}

impl AddUser {
    /// The role: `admin`, `manager` or `user` (the default).
    pub(crate) fn role(mut self, role: &str) -> Self {
        self.role = role.parse().expect("a role");
        self
    }

    /// The display name (none by default).
    pub(crate) fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// A password, hashed as the app hashes them (none by default: magic links only). The
    /// password policy is not applied: tests of the policy run `user add`.
    pub(crate) fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// Two-step sign-in turned on, enrolled at the app's clock; the setup key is in
    /// [`TestUser::setup_key`].
    pub(crate) fn mfa(mut self) -> Self {
        self.mfa = true;
        self
    }

    async fn create(self) -> TestUser {
        let new = NewUser {
            email: Email::parse(&self.email).expect("a valid email"),
            display_name: DisplayName::parse(&self.name).expect("a valid display name"),
            role: self.role,
        };
        let ctx = AuditContext::cli();
        let user = match &self.password {
            Some(password) => {
                let hash = hasher_over(&self.db, &self.clock)
                    .await
                    .hash(&SecretString::from(password.as_str()))
                    .await
                    .expect("the password hashes");
                users::create_with_password_hash(&self.db, new, &hash, &ctx).await
            }
            None => users::create(&self.db, new, &ctx).await,
        }
        .unwrap_or_else(|e| panic!("creating {}: {e}", self.email));
        let setup_key = if self.mfa {
            let keys = Keys::load(
                &self.db,
                &SecretString::from(GOOD_KEY),
                None,
                self.clock.now(),
            )
            .await
            .expect("the keys open");
            let enrolment = mfa::begin(&self.db, &keys, user.id, &self.email)
                .await
                .expect("MFA enrolment starts")
                .expect("MFA was off");
            let code = totp_code_at(&self.clock, &enrolment.setup_key, 0);
            mfa::confirm(&self.db, &keys, user.id, &code, self.clock.now(), &ctx)
                .await
                .expect("MFA enrolment confirms")
                .expect("the code matches");
            Some(enrolment.setup_key)
        } else {
            None
        };
        TestUser {
            id: user.id,
            setup_key,
        }
    }
}

impl IntoFuture for AddUser {
    type Output = TestUser;
    type IntoFuture = Pin<Box<dyn Future<Output = TestUser> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.create())
    }
}

/// A password hasher as the app's: the default cost and the app's pepper.
pub(crate) async fn app_hasher(app: &TestApp) -> PasswordHasher {
    hasher_over(&app.db, &app.clock).await
}

async fn hasher_over(db: &Db, clock: &ManualClock) -> PasswordHasher {
    let keys = Keys::load(db, &SecretString::from(GOOD_KEY), None, clock.now())
        .await
        .expect("the keys open");
    PasswordHasher::new(
        HashParams::default(),
        HashingPool::with_threads(1),
        Pepper::new(keys.password_pepper()),
    )
    .expect("a password hasher")
}

/// A user [`add_user`] created.
#[derive(Clone, Debug)]
pub(crate) struct TestUser {
    /// The user's ID.
    pub(crate) id: Uuid,
    /// The TOTP setup key, when two-step sign-in is on.
    pub(crate) setup_key: Option<String>,
}

/// The TOTP code of `setup_key` (as the page shows it) at the app's clock, `steps` 30-second
/// steps away.
pub(crate) fn totp_code(app: &TestApp, setup_key: &str, steps: i64) -> String {
    totp_code_at(&app.clock, setup_key, steps)
}

fn totp_code_at(clock: &ManualClock, setup_key: &str, steps: i64) -> String {
    let secret = totp_rs::Secret::Encoded(setup_key.replace(' ', ""))
        .to_bytes()
        .expect("a base32 setup key");
    let totp = totp_rs::TOTP::new_unchecked(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        secret,
        None,
        String::new(),
    );
    let at = clock.now().unix_timestamp() + steps * 30;
    totp.generate(u64::try_from(at).expect("a time after 1970"))
}

/// An access token for `email` from the API's password grant.
pub(crate) async fn api_token(app: &TestApp, email: &str, password: &str) -> String {
    let res = app
        .request(reqwest::Method::POST, "/api/v1/auth/token")
        .json(&serde_json::json!({"grant_type": "password", "email": email, "password": password}))
        .send()
        .await
        .expect("request failed");
    assert_eq!(res.status(), 200, "the password grant refused {email}");
    let body: serde_json::Value = res.json().await.expect("a JSON body");
    body["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}
