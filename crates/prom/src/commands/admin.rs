//! `prom admin …`: direct database operations for the machine's operator: members, and tokens
//! for the embedded ledger.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use prom_core::access::Role;
use prom_core::audit::AuditContext;
use prom_core::ledger::Ledger;
use prom_core::money::Amount;
use prom_core::store::{ProvisionMember, UserStore};
use prom_core::user::{Email, Password, PasswordHasherArgon2, TenantSlug};
use prom_server::billing::tenant_wallet;
use prom_store::SqlStore;

use crate::cli::{AdminCommand, CreateUserArgs, MintArgs};
use crate::config::Config;

pub async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::CreateUser(args) => create_user(args).await,
        AdminCommand::Mint(args) => mint(args).await,
    }
}

/// Funds a tenant's wallet on the embedded ledger: how dev deployments and demos get tokens to
/// approve allowances with. The ledger's mint block is the record of it.
async fn mint(args: MintArgs) -> anyhow::Result<()> {
    let slug = TenantSlug::parse(&args.tenant)?;
    if args.amount == Amount::ZERO {
        bail!("--amount 0 mints nothing: give the amount in the token's smallest unit, e.g. --amount 100000");
    }
    let config = Config::load(&args.storage, |figment| figment)?;
    let database = config.database()?;
    let store = SqlStore::open(&database).await.with_context(|| format!("cannot open {}", database.describe()))?;
    let Some(tenant) = store.find_tenant_by_slug(&slug).await? else {
        store.close().await;
        bail!(
            "there is no tenant {slug} in {}: check the name, or create it with \
             `prom admin create-user --tenant {slug} --email … --role owner`",
            database.describe()
        );
    };
    let ledger = embedded_ledger(&store);
    let wallet = tenant_wallet(&tenant.id);
    let block = ledger.mint(&wallet, args.amount).await.context("the embedded ledger refused to mint")?;
    let balance = ledger.balance_of(&wallet).await.context("cannot read the wallet's balance")?;
    store.close().await;
    println!(
        "Minted {} into the wallet of tenant {} (block {block}); its balance is now {balance}",
        args.amount, tenant.slug
    );
    Ok(())
}

async fn create_user(args: CreateUserArgs) -> anyhow::Result<()> {
    let email = Email::parse(&args.email)?;
    let tenant = TenantSlug::parse(&args.tenant)?;
    let role: Role = args.role.parse()?;
    let config = Config::load(&args.storage, |figment| figment)?;
    let database = config.database()?;
    let store = SqlStore::open(&database).await.with_context(|| format!("cannot open {}", database.describe()))?;

    let exists = store.find_user_by_email(&email).await?.is_some();
    let password = if args.password_stdin {
        Some(read_password_line()?)
    } else if exists {
        None
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {email}: "))?;
        let again = rpassword::prompt_password("Repeat the password: ")?;
        if first != again {
            bail!("the passwords differ; nothing was changed");
        }
        Some(first)
    } else {
        bail!("{email} is a new user and needs a password: pass --password-stdin and write it to standard input");
    };
    let password_hash = match password {
        Some(raw) => {
            let password = Password::new(raw)?;
            let hasher = PasswordHasherArgon2::new(config.server.password_kdf)?;
            Some(tokio::task::spawn_blocking(move || hasher.hash(&password)).await??)
        }
        None => None,
    };
    let outcome = store
        .provision_member(ProvisionMember { email, password_hash, tenant, role }, &AuditContext::admin_cli())
        .await?;
    store.close().await;
    println!(
        "{} {} — {} of tenant {}{}",
        if outcome.user_created { "Created user" } else { "Updated user" },
        outcome.user.email,
        role,
        outcome.tenant.slug,
        if outcome.tenant_created { " (new tenant)" } else { "" },
    );
    Ok(())
}

fn read_password_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("standard input was empty: write the password to it");
    }
    Ok(password)
}

/// The embedded ledger (the default; tables in the same database).
pub fn embedded_ledger(store: &SqlStore) -> std::sync::Arc<prom_store::EmbeddedLedger> {
    std::sync::Arc::new(prom_store::EmbeddedLedger::new(
        store.clone(),
        prom_store::EmbeddedLedgerConfig::default(),
        std::sync::Arc::new(prom_core::ledger::SystemClock),
    ))
}
