//! The DB worker's work: password hashing and checking, tokens, and every job run against the
//! [`Storage`]. The queues it is fed from, and their order, are the parent module's.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;

use super::{report_error, token_hash, AuthFailure, Authenticated, DbEvent, DbJob};
use crate::storage::{Storage, StorageError};

/// Password hashing and token settings.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// argon2id memory in KiB.
    pub argon2_memory_kib: u32,
    /// argon2id iterations.
    pub argon2_iterations: u32,
    /// argon2id lanes.
    pub argon2_parallelism: u32,
    /// How long a token is valid, in microseconds.
    pub token_ttl_us: u64,
    /// How long session records are kept, in microseconds; `None` forever.
    pub session_log_us: Option<u64>,
    /// Session records kept at most.
    pub session_log_max_rows: u64,
}

impl From<&config::ServerConfig> for AuthSettings {
    fn from(c: &config::ServerConfig) -> Self {
        AuthSettings {
            argon2_memory_kib: c.auth.argon2_memory_kib,
            argon2_iterations: c.auth.argon2_iterations,
            argon2_parallelism: c.auth.argon2_parallelism,
            token_ttl_us: c.auth.token_ttl_secs.saturating_mul(1_000_000),
            session_log_us: (c.storage.session_log_days > 0)
                .then(|| c.storage.session_log_days.saturating_mul(86_400_000_000)),
            session_log_max_rows: c.storage.session_log_max_rows,
        }
    }
}

/// Does the work of each job; runs on the worker thread (or inline in tests).
pub struct DbWorker {
    storage: Box<dyn Storage>,
    argon2: Argon2<'static>,
    /// A hash of a random password, verified against when the username is unknown, so that
    /// an unknown name costs as much time as a wrong password.
    decoy_hash: String,
    settings: AuthSettings,
    /// Whether the storage answered its last job: false from a job that met
    /// [`StorageError::Unavailable`] until [`DbWorker::check`] succeeds. Shared with the
    /// driver, for `/readyz` and the metrics.
    available: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DbWorker {
    /// A worker over `storage`. Fails when the argon2 parameters are out of range.
    pub fn new(storage: Box<dyn Storage>, settings: AuthSettings) -> Result<Self, String> {
        let params = argon2::Params::new(
            settings.argon2_memory_kib,
            settings.argon2_iterations,
            settings.argon2_parallelism,
            None,
        )
        .map_err(|e| format!("argon2 parameters: {e}"))?;
        let argon2 = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut worker = DbWorker {
            storage,
            argon2,
            decoy_hash: String::new(),
            settings,
            available: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
        };
        worker.decoy_hash = worker.hash_password(&random_token())?;
        Ok(worker)
    }

    fn hash_password(&self, password: &str) -> Result<String, String> {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
        self.argon2
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| format!("argon2: {e}"))
    }

    fn verify_password(&self, password: &str, hash: &str) -> bool {
        PasswordHash::new(hash)
            .map(|parsed| {
                self.argon2
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    }

    /// The storage the jobs run against.
    pub fn storage_mut(&mut self) -> &mut dyn Storage {
        self.storage.as_mut()
    }

    /// Whether the storage answers (see [`DbWorker::is_available`]), shared with the driver.
    pub fn availability(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.available.clone()
    }

    /// Whether the last job met an unavailable storage, and [`DbWorker::check`] has not
    /// succeeded since.
    pub fn is_available(&self) -> bool {
        self.available.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Asks the storage whether it answers again; true when it does.
    pub fn check(&mut self) -> bool {
        let ok = self.storage.check().is_ok();
        if ok && !self.is_available() {
            spdlog::info!("storage: available again");
        }
        self.set_available(ok);
        ok
    }

    fn set_available(&self, available: bool) {
        self.available
            .store(available, std::sync::atomic::Ordering::Relaxed);
    }

    /// Runs one job; returns the answer for the tick loop, if the job has one. A write the
    /// storage could not take because it is unavailable is given up, and said so in the log
    /// (the worker's thread uses [`DbWorker::try_execute`], which hands it back instead).
    pub fn execute(&mut self, job: DbJob) -> Option<DbEvent> {
        match self.try_execute(job) {
            Ok(answer) => answer,
            Err(_) => {
                spdlog::error!("storage: unavailable; a write was given up");
                None
            }
        }
    }

    /// [`DbWorker::execute`], except that a write whose storage is unavailable
    /// ([`StorageError::Unavailable`]) is handed back, to be run again once it is back:
    /// writes of the session log, token revocations and modules' writes.
    pub fn try_execute(&mut self, job: DbJob) -> Result<Option<DbEvent>, DbJob> {
        let outcome = self.run(job);
        let unavailable = match &outcome {
            Err(_) => true,
            Ok(Some(DbEvent::Auth {
                outcome: Err(AuthFailure::Unavailable(_)),
                ..
            })) => true,
            Ok(_) => false,
        };
        if unavailable && self.is_available() {
            spdlog::warn!("storage: unavailable; connecting again, and requests are answered UNAVAILABLE meanwhile");
        }
        if unavailable {
            self.set_available(false);
        }
        outcome
    }

    fn run(&mut self, job: DbJob) -> Result<Option<DbEvent>, DbJob> {
        let now_us = protocol::now_us();
        Ok(match job {
            DbJob::Register {
                session,
                username,
                password,
            } => Some(DbEvent::Auth {
                session,
                outcome: self.register(&username, &password, now_us),
            }),
            DbJob::Login {
                session,
                username,
                password,
            } => Some(DbEvent::Auth {
                session,
                outcome: self.login(&username, &password, now_us),
            }),
            DbJob::Resume { session, token } => Some(DbEvent::Auth {
                session,
                outcome: self.resume(&token, now_us),
            }),
            DbJob::Guest { session, username } => Some(DbEvent::Auth {
                session,
                outcome: match self.storage.account(&username) {
                    Ok(Some(_)) => Err(AuthFailure::InvalidCredentials),
                    Ok(None) => Ok(Authenticated {
                        user_id: 0,
                        username,
                        token: String::new(),
                        guest: true,
                    }),
                    Err(e) => Err(internal(e)),
                },
            }),
            DbJob::Revoke(hash) => {
                match self.storage.revoke_token(&hash, now_us) {
                    Err(StorageError::Unavailable(_)) => return Err(DbJob::Revoke(hash)),
                    Err(e) => report_error("cannot revoke a token", &e),
                    Ok(_) => {}
                }
                None
            }
            DbJob::Prune => {
                match self.storage.prune_tokens(now_us) {
                    Ok(0) => {}
                    Ok(n) => spdlog::info!("storage: deleted {n} expired or revoked tokens"),
                    Err(e) => report_error("cannot prune tokens", &e),
                }
                if let Some(keep_us) = self.settings.session_log_us {
                    match self.storage.prune_sessions(now_us.saturating_sub(keep_us)) {
                        Ok(0) => {}
                        Ok(n) => spdlog::info!("storage: deleted {n} old session records"),
                        Err(e) => report_error("cannot prune the session log", &e),
                    }
                }
                None
            }
            DbJob::RecordSessions(entries) => {
                let max_rows = self.settings.session_log_max_rows;
                match self.storage.record_sessions(&entries, max_rows) {
                    Err(StorageError::Unavailable(_)) => {
                        return Err(DbJob::RecordSessions(entries))
                    }
                    Err(e) => {
                        report_error(&format!("lost {} session log entries", entries.len()), &e)
                    }
                    Ok(()) => {}
                }
                None
            }
            DbJob::Module(mut job) => {
                let module = job.module;
                match (job.run)(self.storage.as_mut()) {
                    Ok(answer) => answer.map(|answer| DbEvent::Module { module, answer }),
                    Err(StorageError::Unavailable(_)) if job.write => {
                        return Err(DbJob::Module(job))
                    }
                    Err(e) => {
                        report_error(&format!("a job of the {module} module failed"), &e);
                        None
                    }
                }
            }
        })
    }

    fn register(
        &mut self,
        username: &str,
        password: &str,
        now_us: u64,
    ) -> Result<Authenticated, AuthFailure> {
        if self.storage.account(username).map_err(internal)?.is_some() {
            return Err(AuthFailure::UsernameTaken);
        }
        let hash = self
            .hash_password(password)
            .map_err(AuthFailure::Internal)?;
        let account = self
            .storage
            .create_account(username, &hash, now_us)
            .map_err(internal)?
            .ok_or(AuthFailure::UsernameTaken)?;
        self.issue(account.id, account.username, now_us)
    }

    fn login(
        &mut self,
        username: &str,
        password: &str,
        now_us: u64,
    ) -> Result<Authenticated, AuthFailure> {
        let account = self.storage.account(username).map_err(internal)?;
        let hash = account
            .as_ref()
            .map_or(self.decoy_hash.as_str(), |a| a.password_hash.as_str());
        let valid = self.verify_password(password, hash);
        match account {
            Some(account) if valid => self.issue(account.id, account.username, now_us),
            _ => Err(AuthFailure::InvalidCredentials),
        }
    }

    fn resume(&mut self, token: &str, now_us: u64) -> Result<Authenticated, AuthFailure> {
        let account = self
            .storage
            .token_account(&token_hash(token), now_us)
            .map_err(internal)?
            .ok_or(AuthFailure::InvalidToken)?;
        Ok(Authenticated {
            user_id: account.id,
            username: account.username,
            token: token.to_string(),
            guest: false,
        })
    }

    fn issue(
        &mut self,
        user_id: u64,
        username: String,
        now_us: u64,
    ) -> Result<Authenticated, AuthFailure> {
        let token = random_token();
        self.storage
            .insert_token(
                &token_hash(&token),
                user_id,
                now_us,
                now_us.saturating_add(self.settings.token_ttl_us),
            )
            .map_err(internal)?;
        Ok(Authenticated {
            user_id,
            username,
            token,
            guest: false,
        })
    }
}

fn internal(e: StorageError) -> AuthFailure {
    if let StorageError::Unavailable(why) = e {
        return AuthFailure::Unavailable(why);
    }
    report_error("a login failed", &e);
    AuthFailure::Internal(e.to_string())
}

/// 256 random bits, hex-encoded.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
