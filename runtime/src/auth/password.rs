//! Argon2id password hashing: bounded, and with the same work for every login.
//!
//! One Argon2id run takes about 19 MiB and tens of milliseconds of a core, so every run goes
//! through one gate, a semaphore of `login_concurrency` permits ([`Passwords`]). A login asks
//! with [`Passwords::try_enter`] and is answered 503 at once when the gate is full, so a burst of
//! logins can neither queue without bound nor take memory without bound; hashing for an
//! administrator's request (creating a user, setting a password) waits for a permit instead.
//! The runs happen on as many dedicated threads as there are permits, not on tokio's blocking
//! pool: the allocator keeps a freed 19 MiB block in the arena of the thread that used it, so
//! a few threads keep the retained memory at about `permits` x 19 MiB, where hundreds of pool
//! threads would each keep their own.
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

use std::sync::{Arc, Mutex, mpsc};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Decimal, Ident, Output, ParamsString, PasswordHash, PasswordHasher, Salt, SaltString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The gate, its threads and the dummy hash of a server.
pub struct Passwords {
    gate: Arc<Semaphore>,
    /// Jobs for the Argon2 threads; they end when this is dropped.
    jobs: mpsc::Sender<Job>,
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
        let threads = permits.max(1);
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..threads {
            let receiver = receiver.clone();
            std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
                loop {
                    // The lock is held only while waiting for the next job, not while it runs.
                    let job = match receiver.lock() {
                        Ok(receiver) => receiver.recv(),
                        Err(_) => return,
                    };
                    match job {
                        // A panicking job drops its reply (the caller gets an error); the thread stays.
                        Ok(job) => drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))),
                        Err(_) => return,
                    }
                }
            })?;
        }
        let mut passwords = Self {
            gate: Arc::new(Semaphore::new(threads)),
            jobs: sender,
            logins_enabled: permits > 0,
            dummy: String::new(),
        };
        passwords.dummy = passwords.run(|| hash_blocking("not a password", None)).await?;
        Ok(passwords)
    }

    /// Runs `work` on an Argon2 thread (the caller holds a permit, so one is free).
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(work());
        });
        self.jobs.send(job).map_err(|_| anyhow::anyhow!("the Argon2 threads stopped"))?;
        answer.await?
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
        let _permit = self.gate.acquire().await?;
        self.run(move || hash_blocking(&password, address_hash.as_deref())).await
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
        let outcome = self.run(move || check_blocking(&password, &hashes, &dummy)).await;
        drop(permit);
        outcome
    }
}

type Job = Box<dyn FnOnce() + Send>;

thread_local! {
    /// The Argon2 working memory of this thread, allocated by its first run and reused after.
    static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Argon2 with the given algorithm, version, parameters and salt, computed in this thread's
/// reused working memory (`Argon2::hash_password` would allocate 19 MiB per run, and the
/// allocator keeps up to a few such blocks per thread once they are freed).
fn argon2<'a>(
    password: &str,
    algorithm: Ident<'a>,
    version: Option<Decimal>,
    params: &argon2::Params,
    salt: Salt<'a>,
) -> anyhow::Result<PasswordHash<'a>> {
    fn err(e: impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!("hashing password: {e}")
    }
    let hasher = Argon2::new(
        argon2::Algorithm::try_from(algorithm).map_err(err)?,
        version.map(argon2::Version::try_from).transpose().map_err(err)?.unwrap_or_default(),
        params.clone(),
    );
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(err)?;
    let output = Output::init_with(params.output_len().unwrap_or(argon2::Params::DEFAULT_OUTPUT_LEN), |out| {
        BLOCKS.with_borrow_mut(|blocks| {
            if blocks.len() < params.block_count() {
                blocks.resize(params.block_count(), argon2::Block::default());
            }
            hasher.hash_password_into_with_memory(password.as_bytes(), salt_bytes, out, &mut blocks[..])
        })?;
        Ok(())
    })
    .map_err(err)?;
    Ok(PasswordHash {
        algorithm,
        version: Some(version.unwrap_or_else(|| argon2::Version::default().into())),
        params: ParamsString::try_from(params).map_err(err)?,
        salt: Some(salt),
        hash: Some(output),
    })
}

/// `password` under the salt and parameters of `reference`.
fn argon2_like<'a>(password: &str, reference: &PasswordHash<'a>) -> anyhow::Result<PasswordHash<'a>> {
    let salt = reference.salt.ok_or_else(|| anyhow::anyhow!("stored password hash has no salt"))?;
    let params =
        argon2::Params::try_from(reference).map_err(|e| anyhow::anyhow!("stored password hash unreadable: {e}"))?;
    argon2(password, reference.algorithm, reference.version, &params, salt)
}

/// Hashes `password` with the salt and parameters of `like` when it is a readable PHC string,
/// else with a fresh salt and the default parameters.
fn hash_blocking(password: &str, like: Option<&str>) -> anyhow::Result<String> {
    if let Some(like) = like.and_then(|phc| PasswordHash::new(phc).ok())
        && like.salt.is_some()
    {
        return Ok(argon2_like(password, &like)?.to_string());
    }
    let salt = SaltString::generate(&mut OsRng);
    let hashed = argon2(password, argon2::ARGON2ID_IDENT, None, &argon2::Params::default(), salt.as_salt())?;
    Ok(hashed.to_string())
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
    let computed = argon2_like(password, &reference)?;
    let mut check = Check { matches: Vec::new(), rehash: Vec::new() };
    for (position, stored) in parsed.iter().enumerate() {
        if same_salt_and_params(stored, &reference) {
            // `Output`'s equality is constant-time.
            if stored.hash.is_some() && stored.hash == computed.hash {
                check.matches.push(position);
            }
        } else if stored.hash.is_some() && argon2_like(password, stored)?.hash == stored.hash {
            check.matches.push(position);
            check.rehash.push((position, computed.to_string()));
        }
    }
    Ok(check)
}

/// Hashes `password` outside any gate (the bootstrap admin, before the server serves).
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await?
    .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
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
