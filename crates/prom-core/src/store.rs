//! The storage traits. `prom-store` implements them on SQLite and PostgreSQL; the server only
//! ever sees `dyn Store`. Every method that changes something a user cares about takes the
//! [`AuditContext`] and writes its audit row in the same transaction as the change.

use async_trait::async_trait;
use thiserror::Error;

use crate::access::{Role, Scope};
use crate::audit::{AuditContext, AuditEvent, AuditFilter, NewAuditEvent};
use crate::charge::{Budget, ChargeOp, ChargeOpResult};
use crate::id::{KeyId, ServiceId, SessionId, TenantId, UserId};
use crate::kdf::KeyDigest;
use crate::key::{Environment, display_form};
use crate::service::{Prices, ServiceRecord, ServiceSlug, Upstream};
use crate::session::SessionDigest;
use crate::time::Timestamp;
use crate::usage::UsageEvent;
use crate::user::{Email, Label, TenantSlug};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("stored data is not what this version expects: {0}")]
    Corrupt(String),
    #[error("database error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: TenantSlug,
    pub name: String,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct UserRecord {
    pub id: UserId,
    pub email: Email,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub tenant: Tenant,
    pub role: Role,
}

/// `prom admin create-user`: make sure the tenant, the user and the membership exist.
#[derive(Debug)]
pub struct ProvisionMember {
    pub email: Email,
    /// Required when the user does not exist yet; replaces the password when given for one who does.
    pub password_hash: Option<String>,
    pub tenant: TenantSlug,
    pub role: Role,
}

/// A member of a tenant, as the members page lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    pub user_id: UserId,
    pub email: Email,
    pub role: Role,
    /// When the membership was made.
    pub added_at: Timestamp,
    /// False for a user added by e-mail who has not set a password yet (and cannot sign in).
    pub has_password: bool,
}

/// A one-time link to set a password: for a member added by e-mail, or a reset. Only the digest
/// of the link's secret is stored.
#[derive(Clone, Debug)]
pub struct NewPasswordLink {
    pub digest: Vec<u8>,
    pub user_id: UserId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

#[derive(Debug)]
pub struct ProvisionOutcome {
    pub user: UserRecord,
    pub tenant: Tenant,
    pub user_created: bool,
    pub tenant_created: bool,
}

#[derive(Debug)]
pub struct NewSession {
    pub id: SessionId,
    pub digest: SessionDigest,
    pub user_id: UserId,
    pub tenant_id: TenantId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A live session with the signed-in user's current role (read at every request, so a role change
/// or a removed membership takes effect at once).
#[derive(Clone, Debug)]
pub struct SessionRecord {
    pub id: SessionId,
    pub user_id: UserId,
    pub email: Email,
    pub tenant: Tenant,
    pub role: Role,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// When the session was last used (its creation, until [`SessionStore::touch_session`]).
    pub last_seen_at: Timestamp,
}

#[derive(Debug)]
pub struct NewKey {
    pub id: KeyId,
    pub tenant_id: TenantId,
    pub label: Label,
    pub environment: Environment,
    pub digest: KeyDigest,
    pub last4: String,
    pub scopes: Vec<Scope>,
    pub created_by: Option<UserId>,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: KeyId,
    pub tenant_id: TenantId,
    pub label: Label,
    pub environment: Environment,
    pub last4: String,
    pub scopes: Vec<Scope>,
    pub created_by: Option<UserId>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// Set when the key was rotated with a grace period: it stops working at this instant.
    pub expires_at: Option<Timestamp>,
    pub deleted_at: Option<Timestamp>,
    pub rotated_from: Option<KeyId>,
}

/// Whether a key authenticates right now, and if not, why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Revoked,
    Expired,
    Deleted,
}

impl KeyRecord {
    pub fn display(&self) -> String {
        display_form(self.environment, &self.last4)
    }

    pub fn status(&self, now: Timestamp) -> KeyStatus {
        if self.deleted_at.is_some() {
            KeyStatus::Deleted
        } else if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }
}

/// Deployment-wide settings that must be the same on every node (the key salt, KDF parameters).
#[async_trait]
pub trait SettingsStore: Send + Sync {
    /// Checks that the database answers (for `/healthz`).
    async fn ping(&self) -> StoreResult<()>;

    /// Stores `value` under `name` unless a value is already there; returns the stored value.
    /// Safe when several nodes start at once: exactly one value wins.
    async fn init_setting(&self, name: &str, value: &[u8]) -> StoreResult<Vec<u8>>;
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn provision_member(&self, request: ProvisionMember, ctx: &AuditContext) -> StoreResult<ProvisionOutcome>;
    async fn find_user_by_email(&self, email: &Email) -> StoreResult<Option<UserRecord>>;
    async fn memberships(&self, user_id: &UserId) -> StoreResult<Vec<Membership>>;
    async fn get_tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>>;
    async fn find_tenant_by_slug(&self, slug: &TenantSlug) -> StoreResult<Option<Tenant>>;
    /// Whether any user exists (first-run setup is offered until one does).
    async fn has_users(&self) -> StoreResult<bool>;
    /// First-run setup, in one transaction: creates the tenant (slug `request.tenant`, name
    /// `tenant_name`), the user (`request.password_hash` is required) and the membership with
    /// `request.role`, and writes `member.add`. `Conflict` once any user exists, so of concurrent
    /// calls at most one succeeds.
    async fn create_first_owner(
        &self,
        request: ProvisionMember,
        tenant_name: &str,
        ctx: &AuditContext,
    ) -> StoreResult<ProvisionOutcome>;
    /// The members of a tenant, by e-mail address.
    async fn list_members(&self, tenant: &TenantId) -> StoreResult<Vec<MemberRecord>>;
    /// Adds `email` to the tenant with `role` and writes `member.add`; a user who does not exist
    /// yet is created without a password (they set one with a password link). Returns the user
    /// and whether it was created. `NotFound` if the tenant does not exist, `Conflict` if the user
    /// is a member already.
    async fn add_member(
        &self,
        tenant: &TenantId,
        email: &Email,
        role: Role,
        ctx: &AuditContext,
    ) -> StoreResult<(UserRecord, bool)>;
    /// Changes a member's role and writes `member.role_change` (nothing when the role is the
    /// same). `NotFound` if the user is not a member; `Conflict` if the tenant would be left
    /// without an owner.
    async fn set_member_role(
        &self,
        tenant: &TenantId,
        user: &UserId,
        role: Role,
        ctx: &AuditContext,
    ) -> StoreResult<()>;
    /// Removes a member, ends their sessions in the tenant and writes `member.remove`.
    /// `NotFound` if the user is not a member; `Conflict` if they are the tenant's last owner.
    async fn remove_member(&self, tenant: &TenantId, user: &UserId, ctx: &AuditContext) -> StoreResult<()>;
    /// Stores a password link. `NotFound` if the user does not exist.
    async fn create_password_link(&self, link: NewPasswordLink) -> StoreResult<()>;
    /// Uses a password link, once: sets the user's password hash, ends the user's other unused
    /// links and writes `user.password_set` in each tenant the user belongs to, in one
    /// transaction. `NotFound` if the link is unknown, used or expired at `now` (of concurrent
    /// redemptions at most one succeeds).
    async fn redeem_password_link(
        &self,
        digest: &[u8],
        password_hash: &str,
        now: Timestamp,
        ctx: &AuditContext,
    ) -> StoreResult<UserRecord>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Creates a session and writes the `user.login` event in the same transaction.
    async fn create_session(&self, session: NewSession, ctx: &AuditContext) -> StoreResult<()>;
    /// The session with this digest, if it exists and its user is still a member of its tenant.
    async fn find_session(&self, digest: &SessionDigest) -> StoreResult<Option<SessionRecord>>;
    /// Ends a session and writes `user.logout`.
    async fn revoke_session(&self, session: &SessionRecord, at: Timestamp, ctx: &AuditContext) -> StoreResult<()>;
    /// Records that a session was used at `at` (only ever moves forward; an unknown session
    /// changes nothing). Not audited.
    async fn touch_session(&self, id: &SessionId, at: Timestamp) -> StoreResult<()>;
    /// Ends every live session of `user` in `tenant` (when the member is removed); returns how
    /// many. Not audited: the change that causes it is.
    async fn revoke_user_sessions(&self, user: &UserId, tenant: &TenantId, at: Timestamp) -> StoreResult<u64>;
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores a new key and its `api_key.create` event.
    async fn insert_key(&self, key: NewKey, ctx: &AuditContext) -> StoreResult<KeyRecord>;
    /// Replaces `old` with `new`: `old` stops working at `old_expires_at` (now, or after a grace
    /// period). Writes `api_key.create` for the new key and `api_key.rotate` for the old one.
    /// `NotFound` if `old` is not a live key of `tenant`; `Conflict` if it is revoked or expired.
    async fn rotate_key(
        &self,
        tenant: &TenantId,
        old: &KeyId,
        new: NewKey,
        old_expires_at: Timestamp,
        ctx: &AuditContext,
    ) -> StoreResult<(KeyRecord, KeyRecord)>;
    /// Revokes a key (idempotent: revoking a revoked key changes nothing and writes nothing).
    async fn revoke_key(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        at: Timestamp,
        ctx: &AuditContext,
    ) -> StoreResult<KeyRecord>;
    /// Deletes a key: it disappears from listings and stops working; its audit history stays.
    async fn delete_key(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        at: Timestamp,
        ctx: &AuditContext,
    ) -> StoreResult<KeyRecord>;
    async fn get_key(&self, tenant: &TenantId, id: &KeyId) -> StoreResult<Option<KeyRecord>>;
    /// Keys of a tenant that are not deleted, newest first.
    async fn list_keys(&self, tenant: &TenantId) -> StoreResult<Vec<KeyRecord>>;
    /// One page of those keys (`limit` of them after skipping `offset`, in the same order), and
    /// how many there are in all.
    async fn list_keys_page(&self, tenant: &TenantId, offset: u32, limit: u32) -> StoreResult<(Vec<KeyRecord>, u64)>;
    /// Any key with this digest, whatever its state, so the caller can say why it is refused.
    async fn find_key_by_digest(&self, digest: &KeyDigest) -> StoreResult<Option<KeyRecord>>;
    /// Records when keys were last used (batched by the caller; only ever moves forward).
    async fn touch_keys(&self, uses: &[(KeyId, Timestamp)]) -> StoreResult<()>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn record_audit(&self, event: NewAuditEvent) -> StoreResult<()>;
    /// Events of one tenant that match `filter`, newest first (see [`AuditFilter`]).
    async fn list_audit(&self, tenant: &TenantId, filter: &AuditFilter) -> StoreResult<Vec<AuditEvent>>;
}

#[derive(Debug)]
pub struct NewService {
    pub id: ServiceId,
    /// The publishing tenant.
    pub tenant_id: TenantId,
    pub slug: ServiceSlug,
    pub name: String,
    pub description: String,
    pub upstream: Upstream,
    pub prices: Prices,
    /// Whether paid calls whose result has `isError: true` are charged (see
    /// [`ServiceRecord::charge_tool_errors`]).
    pub charge_tool_errors: bool,
    pub created_at: Timestamp,
}

/// A partial update: `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct ServicePatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub upstream: Option<Upstream>,
    pub prices: Option<Prices>,
    pub charge_tool_errors: Option<bool>,
}

#[async_trait]
pub trait ServiceStore: Send + Sync {
    /// Registers a service and writes `service.create`. `Conflict` if the slug is taken, or if a
    /// deleted service of that slug is still owed money (held, unsettled or pending charges);
    /// otherwise allowances left from such a service end (the new one inherits none).
    async fn create_service(&self, service: NewService, ctx: &AuditContext) -> StoreResult<ServiceRecord>;
    /// The live (not deleted) service with this slug, whoever published it.
    async fn get_service(&self, slug: &ServiceSlug) -> StoreResult<Option<ServiceRecord>>;
    /// Who is paid for the slug's charges: the publisher of its latest service, deleted or not
    /// (a slug is not given to another publisher while its deleted service is owed money).
    async fn service_publisher(&self, slug: &ServiceSlug) -> StoreResult<Option<TenantId>>;
    /// All live services, by slug.
    async fn list_services(&self) -> StoreResult<Vec<ServiceRecord>>;
    /// Changes a service of `tenant` and writes `service.update`. `NotFound` if `tenant` did not
    /// publish it. A patch that changes nothing writes nothing and returns the service as it is.
    async fn update_service(
        &self,
        tenant: &TenantId,
        slug: &ServiceSlug,
        patch: ServicePatch,
        at: Timestamp,
        ctx: &AuditContext,
    ) -> StoreResult<ServiceRecord>;
    /// Removes a service of `tenant` and writes `service.delete`; nothing new may be held on its
    /// allowances, and what is owed stays, settled to `tenant`. `NotFound` if `tenant` did not
    /// publish it.
    async fn delete_service(
        &self,
        tenant: &TenantId,
        slug: &ServiceSlug,
        at: Timestamp,
        ctx: &AuditContext,
    ) -> StoreResult<ServiceRecord>;
}

#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Stores a batch of usage events and the audit rows derived from them (`api_key.use`), in
    /// one transaction.
    async fn record_usage(&self, events: &[UsageEvent], audit: &[NewAuditEvent]) -> StoreResult<()>;
    /// Counts the tenant's gateway requests and sums their captured and settled charges, in total
    /// and grouped as the query asks. Only ever reads `query.tenant_id`'s rows.
    async fn usage_report(&self, query: &crate::usage::UsageQuery) -> StoreResult<crate::usage::UsageReport>;
}

/// Budgets: what each tenant approved for each service, and its slice of the wallet.
#[async_trait]
pub trait BudgetStore: Send + Sync {
    /// The tenant's budget for a service (an empty one when nothing was ever approved).
    async fn budget(&self, tenant: &TenantId, service: &ServiceSlug) -> StoreResult<Budget>;
    /// Every budget of the tenant, in service order.
    async fn tenant_budgets(&self, tenant: &TenantId) -> StoreResult<Vec<Budget>>;
    /// Records the allowance the tenant approved on the ledger (what new holds may draw on), with
    /// the prices the approval covers (`None`: whatever is current) and `audit` (the
    /// `allowance.approve` row) in the same transaction. `ledger_cap` is the budget's slice of
    /// the wallet (see [`Budget::ledger_cap`]) when it has none yet; a budget already sliced
    /// keeps its slice until the wallet is cut again. What is held and unsettled stays: it is
    /// owed, whatever the new amount.
    ///
    /// [`Budget::ledger_cap`]: crate::charge::Budget::ledger_cap
    #[expect(clippy::too_many_arguments, reason = "one approval: its amount, expiry, cap, prices and audit row")]
    async fn set_approved(
        &self,
        tenant: &TenantId,
        service: &ServiceSlug,
        approved: crate::money::Amount,
        expires_at: Option<Timestamp>,
        ledger_cap: Option<crate::money::Amount>,
        prices: Option<&crate::service::Prices>,
        audit: Option<&NewAuditEvent>,
    ) -> StoreResult<Budget>;
    /// Sets (or, with `None`, clears) the budget's ceiling: new holds keep held + unsettled within
    /// it (see [`Budget::ceiling`]). Nothing to do for a budget never approved. Recording an
    /// approval clears it.
    ///
    /// [`Budget::ceiling`]: crate::charge::Budget::ceiling
    async fn set_ceiling(
        &self,
        tenant: &TenantId,
        service: &ServiceSlug,
        ceiling: Option<crate::money::Amount>,
    ) -> StoreResult<()>;
    /// Cuts the tenant's wallet into slices, one per budget (its [`Budget::ledger_cap`], see
    /// [`crate::wallet`]), from the budgets' rows under their locks (on PostgreSQL the rows count
    /// every node's holds) — unless the budgets are no longer as in `seen`, read before the
    /// wallet was: a settlement or an approval since makes the read stale, and nothing is written
    /// (`false`).
    ///
    /// [`Budget::ledger_cap`]: crate::charge::Budget::ledger_cap
    async fn slice_wallet(
        &self,
        tenant: &TenantId,
        seen: &[Budget],
        wallet: &crate::wallet::WalletRead,
        now: Timestamp,
        margins: crate::charge::ExpiryMargins,
    ) -> StoreResult<bool>;
    /// Writes slices the in-memory book cut from its own holds, in one transaction — unless the
    /// budgets' rows are no longer as in `seen` (`false`, as for [`BudgetStore::slice_wallet`]).
    async fn set_ledger_caps(
        &self,
        tenant: &TenantId,
        seen: &[Budget],
        caps: &[(ServiceSlug, crate::money::Amount)],
    ) -> StoreResult<bool>;
}

/// Charges: holds, captures and releases of paid calls, applied (PostgreSQL) or written once ended
/// (the embedded database's in-memory book).
#[async_trait]
pub trait ChargeStore: Send + Sync {
    /// Whether this store is only ever written by one server process (the embedded database), so
    /// that process may keep budgets' holds in memory instead of writing each hold.
    fn single_process(&self) -> bool;
    /// Applies the operations in order, in one transaction, and returns one result per operation.
    /// Each budget touched is locked for the transaction, so concurrent batches (on any node)
    /// cannot together hold more than was approved.
    /// Holds and captures stop `margins` before a budget's allowance expires (a capture refused
    /// so is applied as a release, and answered [`ChargeOpResult::Expired`]).
    async fn apply_charges(
        &self,
        ops: &[ChargeOp],
        at: Timestamp,
        margins: crate::charge::ExpiryMargins,
    ) -> StoreResult<Vec<ChargeOpResult>>;
    /// Writes charges resolved in memory (held, then captured or released, by a process that is the
    /// only one placing holds on these budgets), all or none, each charge id once. On PostgreSQL,
    /// in one transaction: each budget touched is locked and read, what was captured is added to
    /// its `unsettled`, its `held` becomes the given in-memory total, the charges are inserted in
    /// their final state, and the budgets are returned as they stand after. The embedded database
    /// appends the charges to its charge journal (a file beside it) with one `write` and returns
    /// no budget: the journal is folded into the charges and budgets in the background, and
    /// before any budget, settlement or usage report is read; a charge id journaled twice counts
    /// once.
    async fn record_resolved(
        &self,
        charges: &[crate::charge::ResolvedCharge],
        held: &[(TenantId, ServiceSlug, crate::money::Amount)],
        at: Timestamp,
    ) -> StoreResult<Vec<Budget>>;
    /// Releases holds placed before `before` that were never captured or released: their requests
    /// died with a previous process. Returns how many were released.
    async fn release_stale_holds(&self, before: Timestamp) -> StoreResult<u64>;
    /// What `payee` earned from `from` (inclusive) to `to` (exclusive): the charges captured or
    /// settled for its services, whichever tenant paid them, by service and UTC day of the call,
    /// newest day first, then by service. A charge counts for the service its slug named when
    /// the call was made, so a slug that changed publisher does not move earnings.
    async fn publisher_earnings(
        &self,
        payee: &TenantId,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<EarningRow>>;
}

/// A settlement batch as the paying tenant's wallet page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettlementView {
    pub id: String,
    pub service: ServiceSlug,
    pub amount: crate::money::Amount,
    /// The ledger's fee for the transfer; zero until the batch is done, and for batches completed
    /// before the fee was recorded.
    pub fee: crate::money::Amount,
    /// `pending`, `in_doubt` (pending, and the last call to the ledger got no definite answer) or
    /// `done`.
    pub state: String,
    /// The ledger's block index of the transfer, once done.
    pub ledger_ref: Option<String>,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

/// What a publisher earned from one service on one UTC day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EarningRow {
    pub service: ServiceSlug,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    /// Paid calls charged (captured or settled).
    pub calls: u64,
    /// The sum of those charges.
    pub charged: crate::money::Amount,
    /// The part of `charged` already transferred to the publisher.
    pub settled: crate::money::Amount,
}

/// Settlement: captured charges gathered into batches, each one `transfer_from` on the ledger.
#[async_trait]
pub trait SettlementStore: Send + Sync {
    /// Budgets that have captured charges to settle or approval left to spend (each round
    /// re-checks the latter against the ledger).
    async fn budgets_to_settle(&self) -> StoreResult<Vec<Budget>>;
    /// The pending settlement of a budget, or a new one made of its captured charges (recorded
    /// before the ledger is called), of at most `max_amount` (what the ledger can pay: a batch
    /// it cannot is refused whole); `None` when there is nothing to settle within it.
    async fn open_settlement(
        &self,
        tenant: &TenantId,
        service: &ServiceSlug,
        created_at_time: u64,
        at: Timestamp,
        max_amount: crate::money::Amount,
    ) -> StoreResult<Option<crate::charge::Settlement>>;
    /// Settlements recorded but not confirmed by the ledger (after a crash, these are re-submitted).
    async fn pending_settlements(&self) -> StoreResult<Vec<crate::charge::Settlement>>;
    /// Marks a pending batch in doubt before each call to the ledger (should no definite answer
    /// come back, the ledger may have carried it out), and clears the mark after a definite
    /// refusal (within the deduplication window the ledger answers a batch it carried out before
    /// with `Duplicate`, never with another refusal).
    async fn set_settlement_in_doubt(&self, id: &crate::id::SettlementId, in_doubt: bool) -> StoreResult<()>;
    /// Gives a pending batch a new `created_at_time` (and clears its doubt), when it still has
    /// `settlement.created_at_time`: for a batch past the ledger's deduplication window that the
    /// ledger certainly never carried out. False when it was re-dated or completed meanwhile.
    async fn redate_settlement(
        &self,
        settlement: &crate::charge::Settlement,
        created_at_time: u64,
    ) -> StoreResult<bool>;
    /// The ledger accepted the transfer (or reported it a duplicate): the charges are settled, and
    /// the budget's slice of the wallet shrinks by the amount and the ledger's `fee`.
    async fn complete_settlement(
        &self,
        settlement: &crate::charge::Settlement,
        block: u64,
        at: Timestamp,
        fee: crate::money::Amount,
    ) -> StoreResult<()>;
    /// The tenant's latest `limit` settlement batches, newest first.
    async fn list_settlements(&self, tenant: &TenantId, limit: u32) -> StoreResult<Vec<SettlementView>>;
}

/// Everything the server needs from storage.
pub trait Store:
    SettingsStore
    + UserStore
    + SessionStore
    + KeyStore
    + AuditStore
    + ServiceStore
    + UsageStore
    + BudgetStore
    + ChargeStore
    + SettlementStore
    + crate::oauth::OAuthStore
    + std::fmt::Debug
    + 'static
{
}

impl<T> Store for T where
    T: SettingsStore
        + UserStore
        + SessionStore
        + KeyStore
        + AuditStore
        + ServiceStore
        + UsageStore
        + BudgetStore
        + ChargeStore
        + SettlementStore
        + crate::oauth::OAuthStore
        + std::fmt::Debug
        + 'static
{
}
