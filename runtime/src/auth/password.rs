//! Argon2id password hashing: bounded, and with the same work for every login.
//!
//! One Argon2id run takes about 19 MiB and tens of milliseconds of a core, so every run goes
//! through one gate, a semaphore of `login_concurrency` permits ([`Passwords`]). A login asks
//! with [`Passwords::try_enter`] and is answered 503 at once when the gate is full, so a burst of
//! logins can neither queue without bound nor take memory without bound; hashing for an
//! administrator's request (creating a user, setting a password) waits for a permit instead.
//!
//! E-mail addresses are unique per enterprise, not platform-wide (creating a user must not tell
//! one enterprise that another has an account with that address), yet a login names only the
//! address. So the accounts that share an address also share one salt and one set of Argon2
//! parameters: a new account or a new password is hashed with the salt of the address's oldest
//! account ([`Passwords::hash`]). A login then computes Argon2 once, with that salt, and compares
//! the result with every account of the address in constant time ([`Passwords::check`]); an
//! unknown address is checked against a dummy hash computed once at start. Every login costs
//! one Argon2 run whatever the number of accounts behind the address, including none, so
//! neither the answer nor its timing tells an enterprise about another's accounts. The price: a
//! database reader sees when two accounts of one address have the same password (their hashes
//! are equal), and the salt is per address rather than per account, which still defeats
//! precomputed tables. Accounts of one address hashed with different salts (two enterprises
//! creating the address at the same instant, or older parameters) are still checked correctly,
//! one Argon2 run per extra salt, and a successful login rehashes such an account with the
//! address's salt.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The gate and the dummy hash of a server.
pub struct Passwords {
    gate: Arc<Semaphore>,
    /// `false` when configured with no permits: logins are then always answered 503.
    logins_enabled: bool,
    /// What an unknown address is checked against, so it takes the time of a known one.
    dummy: String,
}

/// The outcome of checking a password against the accounts of one address.
#[derive(Debug)]
pub struct Check {
    /// Positions (in the given order) of the accounts whose hash the password matches.
    pub matches: Vec<usize>,
    /// For each match hashed with another salt than the address's: the position and the new
    /// hash (the password under the address's salt), to store.
    pub rehash: Vec<(usize, String)>,
}

impl Passwords {
    /// A gate of `permits` concurrent Argon2 runs (0: password login off, hashing one at a time).
    pub async fn new(permits: usize) -> anyhow::Result<Self> {
        let dummy = tokio::task::spawn_blocking(|| hash_blocking("not a password", None)).await??;
        Ok(Self { gate: Arc::new(Semaphore::new(permits.max(1))), logins_enabled: permits > 0, dummy })
    }

    /// A permit for one login's check, or `None` at once when all are taken.
    pub fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        if !self.logins_enabled {
            return None;
        }
        self.gate.clone().try_acquire_owned().ok()
    }

    /// Hashes `password` for an account of an address whose oldest account has the hash
    /// `address_hash` (`None`: the first account of the address, a fresh salt). Waits for a permit.
    pub async fn hash(&self, password: String, address_hash: Option<String>) -> anyhow::Result<String> {
        let permit = self.gate.clone().acquire_owned().await?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hash_blocking(&password, address_hash.as_deref())
        })
        .await?
    }

    /// Checks `password` against `hashes`, the accounts of one address, oldest first, holding
    /// `permit` (from [`Self::try_enter`]) while Argon2 runs.
    pub async fn check(
        &self,
        permit: OwnedSemaphorePermit,
        password: String,
        hashes: Vec<String>,
    ) -> anyhow::Result<Check> {
        let dummy = self.dummy.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            check_blocking(&password, &hashes, &dummy)
        })
        .await?
    }
}

/// Hashes `password` with the salt and parameters of `like` when it is a readable PHC string,
/// else with a fresh salt and the default parameters.
fn hash_blocking(password: &str, like: Option<&str>) -> anyhow::Result<String> {
    let err = |e| anyhow::anyhow!("hashing password: {e}");
    if let Some(like) = like.and_then(|phc| PasswordHash::new(phc).ok())
        && let Some(salt) = like.salt
    {
        let params = argon2::Params::try_from(&like).map_err(err)?;
        let hashed = Argon2::default()
            .hash_password_customized(password.as_bytes(), Some(like.algorithm), like.version, params, salt)
            .map_err(err)?;
        return Ok(hashed.to_string());
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(err)
}

fn same_salt_and_params(a: &PasswordHash<'_>, b: &PasswordHash<'_>) -> bool {
    a.algorithm == b.algorithm && a.version == b.version && a.params == b.params && a.salt == b.salt
}

/// One Argon2 run with the first hash's salt and parameters (the dummy's when there is none),
/// compared with every hash in constant time; hashes with another salt get their own run.
fn check_blocking(password: &str, hashes: &[String], dummy: &str) -> anyhow::Result<Check> {
    let unreadable = |e| anyhow::anyhow!("stored password hash unreadable: {e}");
    let parsed = hashes.iter().map(|h| PasswordHash::new(h).map_err(unreadable)).collect::<Result<Vec<_>, _>>()?;
    let reference = match parsed.first() {
        Some(first) => first.clone(),
        None => PasswordHash::new(dummy).map_err(unreadable)?,
    };
    let salt = reference.salt.ok_or_else(|| anyhow::anyhow!("stored password hash has no salt"))?;
    let params = argon2::Params::try_from(&reference).map_err(unreadable)?;
    let computed = Argon2::default()
        .hash_password_customized(password.as_bytes(), Some(reference.algorithm), reference.version, params, salt)
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))?;
    let mut check = Check { matches: Vec::new(), rehash: Vec::new() };
    for (position, stored) in parsed.iter().enumerate() {
        if same_salt_and_params(stored, &reference) {
            // `Output`'s equality is constant-time.
            if stored.hash.is_some() && stored.hash == computed.hash {
                check.matches.push(position);
            }
        } else if Argon2::default().verify_password(password.as_bytes(), stored).is_ok() {
            check.matches.push(position);
            check.rehash.push((position, computed.to_string()));
        }
    }
    Ok(check)
}

/// Hashes `password` outside any gate (the bootstrap admin, before the server serves).
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(&password, None)).await?
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn check(passwords: &Passwords, password: &str, hashes: &[&str]) -> Check {
        let permit = passwords.try_enter().expect("permit");
        passwords.check(permit, password.into(), hashes.iter().map(|h| (*h).to_owned()).collect()).await.expect("check")
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let passwords = Passwords::new(2).await.expect("passwords");
        let phc = passwords.hash("correct horse".into(), None).await.expect("hash");
        assert!(phc.starts_with("$argon2id$"));
        assert_eq!(check(&passwords, "correct horse", &[&phc]).await.matches, [0]);
        assert!(check(&passwords, "wrong horse", &[&phc]).await.matches.is_empty());
        assert!(check(&passwords, "anything", &[]).await.matches.is_empty());
    }

    #[tokio::test]
    async fn accounts_of_one_address_share_the_salt_and_are_told_apart_by_password() {
        let passwords = Passwords::new(2).await.expect("passwords");
        let first = passwords.hash("first password".into(), None).await.expect("hash");
        let second = passwords.hash("second password".into(), Some(first.clone())).await.expect("hash");
        let salt = |phc: &str| PasswordHash::new(phc).expect("phc").salt.expect("salt").as_str().to_owned();
        assert_eq!(salt(&first), salt(&second));
        assert_eq!(check(&passwords, "second password", &[&first, &second]).await.matches, [1]);
        assert_eq!(check(&passwords, "first password", &[&first, &second]).await.matches, [0]);
        assert!(check(&passwords, "neither", &[&first, &second]).await.matches.is_empty());
    }

    #[tokio::test]
    async fn an_account_with_its_own_salt_still_logs_in_and_is_rehashed() {
        let passwords = Passwords::new(2).await.expect("passwords");
        let first = passwords.hash("first password".into(), None).await.expect("hash");
        let stray = passwords.hash("stray password".into(), None).await.expect("hash");
        let outcome = check(&passwords, "stray password", &[&first, &stray]).await;
        assert_eq!(outcome.matches, [1]);
        let (position, rehashed) = &outcome.rehash[0];
        assert_eq!(*position, 1);
        assert_eq!(check(&passwords, "stray password", &[&first, rehashed]).await.matches, [1]);
        assert!(check(&passwords, "stray password", &[&first, rehashed]).await.rehash.is_empty());
    }

    #[tokio::test]
    async fn a_full_gate_refuses_at_once_and_no_permits_means_no_logins() {
        let passwords = Passwords::new(1).await.expect("passwords");
        let held = passwords.try_enter().expect("the one permit");
        assert!(passwords.try_enter().is_none());
        drop(held);
        assert!(passwords.try_enter().is_some());
        let off = Passwords::new(0).await.expect("passwords");
        assert!(off.try_enter().is_none());
        assert!(off.hash("still hashes".into(), None).await.is_ok());
    }
}
