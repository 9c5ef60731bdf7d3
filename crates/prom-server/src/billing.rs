//! Who holds what on the ledger. Each tenant has a wallet account; the platform is the ICRC-2
//! spender, with one subaccount per service, so a tenant's allowance for one service can never be
//! spent on another. Names are part of the ledger's history: never change them.

use prom_core::id::TenantId;
use prom_core::ledger::Account;
use prom_core::service::ServiceSlug;
use sha2::{Digest, Sha256};

/// The ledger owner of the platform's spender accounts.
pub const PLATFORM_OWNER: &str = "prometheus-platform";

/// The owner id a tenant signs ledger calls as (on the embedded ledger, the server signs for it).
pub fn tenant_owner(tenant: &TenantId) -> String {
    format!("tenant:{tenant}")
}

/// A tenant's wallet: where its funds stay until a charge is settled, and where a publishing
/// tenant is paid.
pub fn tenant_wallet(tenant: &TenantId) -> Account {
    Account::new(tenant_owner(tenant))
}

/// The platform's spender account for one service.
pub fn platform_spender(service: &ServiceSlug) -> Account {
    let subaccount: [u8; 32] = Sha256::digest(format!("service:{service}").as_bytes()).into();
    Account::with_subaccount(PLATFORM_OWNER, subaccount)
}
