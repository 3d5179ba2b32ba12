//! First start on an empty database: the default enterprise and its admin.

use dibop_core::{Email, Role};
use rand::Rng;
use rand::distributions::Alphanumeric;
use secrecy::ExposeSecret;

use crate::auth::password;
use crate::config::Config;
use crate::store::{NewEnterprise, NewUser, Store, is_unique_violation};

/// The first admin's email when `DIBOP_ADMIN_EMAIL` is unset.
pub const DEFAULT_ADMIN_EMAIL: &str = "admin@dibop.local";

/// Creates the default enterprise and its admin if there is no enterprise yet. A generated
/// password is printed once to standard output; a configured one never is.
pub async fn bootstrap(store: &Store, config: &Config) -> anyhow::Result<()> {
    if store.count_enterprises().await? > 0 {
        return Ok(());
    }
    let email = Email::parse(config.admin_email.as_deref().unwrap_or(DEFAULT_ADMIN_EMAIL))
        .map_err(|err| anyhow::anyhow!("DIBOP_ADMIN_EMAIL {err}"))?
        .into_string();
    let (password, generated) = match &config.admin_password {
        Some(p) => (p.expose_secret().to_owned(), false),
        None => (rand::thread_rng().sample_iter(&Alphanumeric).take(20).map(char::from).collect(), true),
    };
    let admin = NewUser {
        email: email.clone(),
        name: "Administrator".into(),
        role: Role::EnterpriseAdmin,
        platform_access: true,
        password_hash: password::hash(password.clone()).await?,
    };
    let enterprise = NewEnterprise { name: "Default".into(), slug: "default".into(), timezone: "UTC".into() };
    match store.create_enterprise_with_admin(enterprise, admin).await {
        Ok(_) => {
            tracing::info!(%email, "created the default enterprise and its admin");
            if generated {
                println!(
                    "\nDIBOP first start: log in as {email} with password {password}\n(shown once; set DIBOP_ADMIN_PASSWORD to choose it)\n"
                );
            }
            Ok(())
        }
        // Another node sharing the database bootstrapped first.
        Err(err) if is_unique_violation(&err) => Ok(()),
        Err(err) => Err(err.into()),
    }
}
