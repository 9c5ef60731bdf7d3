//! The charge book's writer: every hold, capture and release of every request goes through one
//! task, which applies whatever has queued up together (group commit). A caller gets its result
//! only once it is safe to act on: a hold before the call is forwarded, a capture only once it is
//! durable, so a result is never released uncharged.
//!
//! Two ways to keep the book, chosen by the store:
//!
//! - **In memory** (the embedded database: one server process is the only writer). The task owns
//!   each budget it has loaded and decides holds against it at once, without a write: a hold that
//!   dies with the process needs no repair, since its call never got its result. When a call ends,
//!   its charge is written once, in its final state (captured or released), appended to the
//!   store's charge journal as one line with every other call that ended meanwhile (one `write`,
//!   on this task); the capture's caller waits for that write. The store folds the journal into
//!   the charges and budgets in the background. Whoever else changes a budget's
//!   row (an approval, a cap, a settlement) asks the book to `refresh` it, which reads it again.
//! - **In the database** (PostgreSQL: several nodes share the budgets). Every operation is applied
//!   by `apply_charges` in one transaction per batch, under each budget's row lock, so nodes
//!   together never hold more than was approved.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prom_core::charge::{
    Budget, ChargeOp, ChargeOpResult, ChargeState, ExpiryMargins, HoldEnd, HoldOutcome, MoneyError, NewCharge,
    ResolvedCharge,
};
use prom_core::id::{ChargeId, KeyId, TenantId};
use prom_core::limit::SpendLimit;
use prom_core::money::Amount;
use prom_core::service::ServiceSlug;
use prom_core::store::{Store, StoreError};
use prom_core::time::Timestamp;
use prom_core::wallet::{WalletRead, slice_budgets, unchanged_since};
use tokio::sync::{mpsc, oneshot};

/// Most commands taken into one batch.
const MAX_BATCH: usize = 512;
/// Most turns of the scheduler the book waits for more ends before writing a batch, while paid
/// calls are running and each turn brings more (measured against one turn in docs/BENCHMARKS.md).
const GATHER_TURNS: usize = 8;
/// Commands waiting for the writer before new paid calls are refused as unavailable.
const QUEUE: usize = 8192;

type Reply = oneshot::Sender<Result<ChargeOpResult, Arc<StoreError>>>;
type BudgetReply = oneshot::Sender<Result<Budget, Arc<StoreError>>>;
type SliceReply = oneshot::Sender<Result<bool, Arc<StoreError>>>;

#[derive(Debug)]
enum Command {
    Op(ChargeOp, Reply),
    /// The budget as the book sees it (with holds in flight).
    Budget(TenantId, ServiceSlug, BudgetReply),
    /// Someone else changed the budget's row (an approval, a settlement): read it again.
    Refresh(TenantId, ServiceSlug, BudgetReply),
    /// Cut the tenant's wallet (the budgets as read before it) into slices.
    Slice(TenantId, Vec<Budget>, WalletRead, SliceReply),
}

/// A handle on the book: cloned for every paid call (its watch keeps one), so one reference count.
#[derive(Clone, Debug)]
pub struct ChargeBook(Arc<Handle>);

#[derive(Debug)]
struct Handle {
    tx: mpsc::Sender<Command>,
    store: Arc<dyn Store>,
    margins: ExpiryMargins,
    /// The in-memory book's budgets and holds: a hold on a budget already loaded is decided by
    /// the caller itself, under this lock, without a hand-off to the book's task (which would
    /// wait its turn behind every other ready task: ~90 µs at a third of the gateway's capacity).
    memory: Option<Arc<Mutex<BookState>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChargeError {
    #[error("the charge book is not accepting work (shutting down or overloaded)")]
    Unavailable,
    #[error("the charge book could not be written")]
    Store(#[source] Arc<StoreError>),
    #[error("the charge was no longer held (released by another process), so it cannot be captured")]
    NotHeld,
    #[error("the allowance expires too soon for the charge to be settled, so it was released instead of captured")]
    Expired,
}

impl ChargeBook {
    /// Starts the book; holds and captures stop `margins` before an allowance expires.
    pub fn spawn(store: Arc<dyn Store>, margins: ExpiryMargins) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut memory = None;
        if store.single_process() {
            let state = Arc::new(Mutex::new(BookState::default()));
            memory = Some(state.clone());
            tokio::spawn(MemoryBook { store: store.clone(), margins, state }.run(rx));
        } else {
            tokio::spawn(run_in_database(store.clone(), margins, rx));
        }
        Self(Arc::new(Handle { tx, store, margins, memory }))
    }

    /// How close to an allowance's expiry holds and captures stop.
    pub fn margins(&self) -> ExpiryMargins {
        self.0.margins
    }

    /// Applies one operation and waits until it may be acted on (see the module docs).
    pub async fn apply(&self, op: ChargeOp) -> Result<ChargeOpResult, ChargeError> {
        let op = match (op, &self.0.memory) {
            (ChargeOp::Reserve(charge), Some(state)) => {
                let mut book = lock(state);
                let key = (charge.tenant_id.clone(), charge.service.clone());
                let limit_loaded = charge.cap.is_none() || book.limits.contains_key(&charge.key_id);
                if limit_loaded && book.budgets.contains_key(&key) {
                    return book.reserve(&key, charge, Timestamp::now(), self.0.margins).map_err(ChargeError::Store);
                }
                // Not loaded yet: the task reads it from the store first.
                ChargeOp::Reserve(charge)
            }
            (op, _) => op,
        };
        let (reply, result) = oneshot::channel();
        self.0.tx.try_send(Command::Op(op, reply)).map_err(|_| ChargeError::Unavailable)?;
        match result.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(err)) => Err(ChargeError::Store(err)),
            Err(_) => Err(ChargeError::Unavailable),
        }
    }

    /// Queues an operation without waiting (a release from a destructor); waits for room rather
    /// than dropping it, on a task of its own.
    pub fn apply_later(&self, op: ChargeOp) {
        let tx = self.0.tx.clone();
        tokio::spawn(async move {
            let (reply, result) = oneshot::channel();
            if tx.send(Command::Op(op, reply)).await.is_ok()
                && let Ok(Err(err)) = result.await
            {
                tracing::error!(error = %err, "a charge could not be released; it stays held until repaired");
            }
        });
    }

    /// What calls in flight hold on `service`'s budgets, as far as this process's book knows them
    /// (on PostgreSQL the budgets' rows count every node's holds).
    pub fn held_on(&self, service: &ServiceSlug) -> Amount {
        let Some(state) = &self.0.memory else { return Amount::ZERO };
        lock(state)
            .budgets
            .iter()
            .filter(|((_, slug), _)| slug == service)
            .fold(Amount::ZERO, |sum, (_, budget)| sum.checked_add(budget.held).unwrap_or(Amount::new(u128::MAX)))
    }

    /// Re-reads every loaded budget of `service` (its rows were changed outside the book: the
    /// service was deleted or registered again).
    pub(super) async fn refresh_service(&self, service: &ServiceSlug) -> Result<(), ChargeError> {
        let tenants: Vec<TenantId> = match &self.0.memory {
            Some(state) => {
                lock(state).budgets.keys().filter(|(_, slug)| slug == service).map(|(t, _)| t.clone()).collect()
            }
            None => Vec::new(),
        };
        for tenant in tenants {
            self.refresh(&tenant, service).await?;
        }
        Ok(())
    }

    /// The budget including the holds of calls in flight.
    pub async fn budget(&self, tenant: &TenantId, service: &ServiceSlug) -> Result<Budget, ChargeError> {
        self.ask(|reply| Command::Budget(tenant.clone(), service.clone(), reply)).await
    }

    /// Tells the book that a budget's row was changed outside it; returns the budget after.
    pub(super) async fn refresh(&self, tenant: &TenantId, service: &ServiceSlug) -> Result<Budget, ChargeError> {
        self.ask(|reply| Command::Refresh(tenant.clone(), service.clone(), reply)).await
    }

    /// For tests that set up a budget's row directly (a state no API call reaches): tells the
    /// book, as the money module does after each of its writes.
    #[cfg(feature = "test-hooks")]
    pub async fn reload(&self, tenant: &TenantId, service: &ServiceSlug) -> Result<Budget, ChargeError> {
        self.refresh(tenant, service).await
    }

    /// Cuts the tenant's wallet into slices, one per budget in `seen` (read before `wallet`);
    /// `false` when a settlement or approval since made the read stale (nothing changed then).
    /// On PostgreSQL the budgets' rows count every node's holds, and the store cuts it under their
    /// locks; the in-memory book cuts it from its own holds.
    pub(super) async fn slice_wallet(
        &self,
        tenant: &TenantId,
        seen: Vec<Budget>,
        wallet: WalletRead,
    ) -> Result<bool, ChargeError> {
        if self.0.memory.is_none() {
            return self
                .0
                .store
                .slice_wallet(tenant, &seen, &wallet, Timestamp::now(), self.0.margins)
                .await
                .map_err(|err| ChargeError::Store(Arc::new(err)));
        }
        self.ask(|reply| Command::Slice(tenant.clone(), seen, wallet, reply)).await
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, Arc<StoreError>>>) -> Command,
    ) -> Result<T, ChargeError> {
        let (reply, result) = oneshot::channel();
        self.0.tx.send(command(reply)).await.map_err(|_| ChargeError::Unavailable)?;
        match result.await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(err)) => Err(ChargeError::Store(err)),
            Err(_) => Err(ChargeError::Unavailable),
        }
    }
}

/// Takes the first command, then whatever else is already queued.
async fn next_batch(rx: &mut mpsc::Receiver<Command>, batch: &mut Vec<Command>) -> bool {
    let Some(first) = rx.recv().await else { return false };
    batch.push(first);
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    true
}

async fn run_in_database(store: Arc<dyn Store>, margins: ExpiryMargins, mut rx: mpsc::Receiver<Command>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while next_batch(&mut rx, &mut batch).await {
        let mut ops = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for command in batch.drain(..) {
            match command {
                Command::Op(op, reply) => {
                    ops.push(op);
                    replies.push(reply);
                }
                Command::Budget(tenant, service, reply) | Command::Refresh(tenant, service, reply) => {
                    let _ = reply.send(store.budget(&tenant, &service).await.map_err(Arc::new));
                }
                Command::Slice(tenant, seen, wallet, reply) => {
                    let sliced = store.slice_wallet(&tenant, &seen, &wallet, Timestamp::now(), margins).await;
                    let _ = reply.send(sliced.map_err(Arc::new));
                }
            }
        }
        if ops.is_empty() {
            continue;
        }
        match store.apply_charges(&ops, Timestamp::now(), margins).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, ops = ops.len(), "a charge batch failed");
                let err = Arc::new(err);
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

type BudgetKey = (TenantId, ServiceSlug);

/// The book kept in memory by the only process that writes it.
struct MemoryBook {
    store: Arc<dyn Store>,
    margins: ExpiryMargins,
    /// Shared with every [`ChargeBook`] handle, which decides holds on loaded budgets itself.
    /// Never held across an `await`.
    state: Arc<Mutex<BookState>>,
}

/// The in-memory book's budgets and holds.
#[derive(Debug, Default)]
struct BookState {
    /// Budgets loaded so far; `held` is the sum of the holds below, the rest mirrors the row.
    budgets: HashMap<BudgetKey, Budget>,
    holds: HashMap<ChargeId, NewCharge>,
    /// The spend limits of capped credentials loaded so far (see [`prom_core::limit`]): `held`
    /// is the sum of their holds above, `spent` what their captures came to.
    limits: HashMap<KeyId, SpendLimit>,
}

impl BookState {
    /// Places a hold on a loaded budget if it has room for it.
    fn reserve(
        &mut self,
        key: &BudgetKey,
        charge: NewCharge,
        now: Timestamp,
        margins: ExpiryMargins,
    ) -> Result<ChargeOpResult, Arc<StoreError>> {
        let Some(budget) = self.budgets.get_mut(key) else {
            return Err(Arc::new(StoreError::Corrupt("a hold on a budget that is not loaded".into())));
        };
        let mut charge = charge;
        let Some(price) = budget.price_in_force(&charge.tool, charge.amount) else {
            return Ok(ChargeOpResult::PriceNotApproved);
        };
        charge.amount = price;
        // The cap first: a hold is placed on both, or on neither.
        let mut limit = None;
        if let Some(cap) = charge.cap {
            let Some(found) = self.limits.get_mut(&charge.key_id) else {
                return Err(Arc::new(StoreError::Corrupt("a hold under a spend limit that is not loaded".into())));
            };
            found.cap = cap;
            if !found.fits(price) {
                return Ok(ChargeOpResult::CapReached { cap, available: found.available() });
            }
            limit = Some(found);
        }
        match budget.hold(charge.amount, now, margins).map_err(corrupt)? {
            HoldOutcome::Refused { available, expiring } => Ok(ChargeOpResult::Refused { available, expiring }),
            HoldOutcome::Held => {
                if let Some(limit) = limit {
                    limit.hold(price).map_err(corrupt)?;
                }
                self.holds.insert(charge.id.clone(), charge);
                Ok(ChargeOpResult::Held)
            }
        }
    }

    fn held_of(&self, key: &BudgetKey) -> Amount {
        self.budgets.get(key).map_or(Amount::ZERO, |budget| budget.held)
    }
}

fn lock(state: &Mutex<BookState>) -> std::sync::MutexGuard<'_, BookState> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What writing a batch returns: the budget rows after it, and the batch's charges back.
type Written = (Result<Vec<Budget>, StoreError>, Vec<ResolvedCharge>);

/// The write of one batch of ended charges, in flight while the book goes on deciding holds.
struct InFlight {
    write: futures_util::future::BoxFuture<'static, Written>,
    replies: Vec<Reply>,
}

impl MemoryBook {
    /// Decides holds at once and writes ended charges in batches, one write at a time: while a
    /// batch is being written, holds are still decided and the charges that end meanwhile gather
    /// for the next batch, so a busy book writes bigger batches instead of queueing behind them.
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        // Ended charges not yet being written.
        let mut ended: Vec<(ResolvedCharge, Reply)> = Vec::new();
        // Re-reads of budget rows, which wait while a write is in flight: a row read meanwhile
        // might or might not include the batch.
        let mut refreshes: Vec<(BudgetKey, BudgetReply)> = Vec::new();
        let mut in_flight: Option<InFlight> = None;
        let mut open = true;
        while open || in_flight.is_some() || !ended.is_empty() {
            tokio::select! {
                biased;
                written = async {
                    match in_flight.as_mut() {
                        Some(batch) => (&mut batch.write).await,
                        None => std::future::pending().await,
                    }
                }, if in_flight.is_some() => {
                    let Some(done) = in_flight.take() else { continue };
                    let (result, charges) = written;
                    self.written(result, charges, done.replies, &ended);
                    for (key, reply) in refreshes.drain(..) {
                        let _ = reply.send(self.reload(&key, &ended).await);
                    }
                }
                more = next_batch(&mut rx, &mut batch), if open => {
                    open = more;
                    let now = Timestamp::now();
                    let writing = in_flight.is_some();
                    for command in batch.drain(..) {
                        self.handle(command, now, writing, &mut ended, &mut refreshes).await;
                    }
                }
            }
            if in_flight.is_none() && !ended.is_empty() {
                // Other paid calls are running and may end in a moment: let every task that is ready
                // run, and write their ends with this batch (a bigger batch, for the price of a few
                // turns of the scheduler, not of a timer). A turn that brings no end stops the wait.
                for _ in 0..GATHER_TURNS {
                    if lock(&self.state).holds.is_empty() {
                        break;
                    }
                    let before = ended.len();
                    tokio::task::yield_now().await;
                    let now = Timestamp::now();
                    while let Ok(command) = rx.try_recv() {
                        self.handle(command, now, false, &mut ended, &mut refreshes).await;
                    }
                    if ended.len() == before {
                        break;
                    }
                }
                in_flight = Some(self.write(std::mem::take(&mut ended)));
            }
        }
    }

    /// Applies one command, except the writes of ended charges, which gather in `ended`.
    async fn handle(
        &mut self,
        command: Command,
        now: Timestamp,
        writing: bool,
        ended: &mut Vec<(ResolvedCharge, Reply)>,
        refreshes: &mut Vec<(BudgetKey, BudgetReply)>,
    ) {
        match command {
            Command::Op(ChargeOp::Reserve(charge), reply) => {
                let _ = reply.send(self.reserve(charge, now).await);
            }
            Command::Op(ChargeOp::Capture(id), reply) => self.end(&id, ChargeState::Captured, reply, now, ended),
            Command::Op(ChargeOp::Release(id), reply) => self.end(&id, ChargeState::Released, reply, now, ended),
            Command::Budget(tenant, service, reply) => {
                let key = (tenant, service);
                let loaded = self.load(&key).await;
                let _ = reply.send(loaded.and_then(|()| {
                    lock(&self.state)
                        .budgets
                        .get(&key)
                        .cloned()
                        .ok_or_else(|| Arc::new(StoreError::Corrupt("a loaded budget vanished".into())))
                }));
            }
            Command::Refresh(tenant, service, reply) if writing => refreshes.push(((tenant, service), reply)),
            Command::Refresh(tenant, service, reply) => {
                let _ = reply.send(self.reload(&(tenant, service), ended).await);
            }
            Command::Slice(tenant, seen, wallet, reply) => {
                let _ = reply.send(self.slice(&tenant, &seen, &wallet, now).await);
            }
        }
    }

    /// Cuts the tenant's wallet from the holds in memory. Holds are placed meanwhile by callers
    /// under the lock, so the new slices are set in two steps: at once each slice that shrinks
    /// (under the same lock the slices were cut in, so no hold comes between), then, once the
    /// store has them all, each that grows. In between and after a crash, the slices in force
    /// never add up to more than either cut.
    async fn slice(
        &mut self,
        tenant: &TenantId,
        seen: &[Budget],
        wallet: &WalletRead,
        now: Timestamp,
    ) -> Result<bool, Arc<StoreError>> {
        for budget in seen {
            self.load(&(tenant.clone(), budget.service.clone())).await?;
        }
        let caps: Vec<(ServiceSlug, Amount)> = {
            let mut book = lock(&self.state);
            let mut current = Vec::with_capacity(seen.len());
            for old in seen {
                match book.budgets.get(&(tenant.clone(), old.service.clone())) {
                    Some(budget) if unchanged_since(old, budget) => current.push(budget),
                    _ => return Ok(false),
                }
            }
            let caps = slice_budgets(&current, wallet, now, self.margins).map_err(corrupt)?;
            let caps: Vec<(ServiceSlug, Amount)> = seen.iter().map(|b| b.service.clone()).zip(caps).collect();
            for (service, cap) in &caps {
                if let Some(budget) = book.budgets.get_mut(&(tenant.clone(), service.clone())) {
                    budget.ledger_cap = Some(budget.ledger_cap.map_or(*cap, |old| old.min(*cap)));
                }
            }
            caps
        };
        if !self.store.set_ledger_caps(tenant, seen, &caps).await.map_err(Arc::new)? {
            return Ok(false);
        }
        let mut book = lock(&self.state);
        for (service, cap) in caps {
            if let Some(budget) = book.budgets.get_mut(&(tenant.clone(), service)) {
                budget.ledger_cap = Some(cap);
            }
        }
        Ok(true)
    }

    /// The budget, read from the store the first time. Holds exist only for loaded budgets, so a
    /// budget read now has none (and none of a previous process is alive).
    async fn load(&mut self, key: &BudgetKey) -> Result<(), Arc<StoreError>> {
        if !lock(&self.state).budgets.contains_key(key) {
            let mut budget = self.store.budget(&key.0, &key.1).await.map_err(Arc::new)?;
            budget.held = Amount::ZERO;
            // Only this task loads budgets, and no hold exists for one not loaded.
            lock(&self.state).budgets.entry(key.clone()).or_insert(budget);
        }
        Ok(())
    }

    /// A credential's spend limit, its spending read from the store the first time (journaled
    /// charges included). Only this task loads limits, and no hold exists under one not loaded.
    async fn load_limit(&mut self, key: &KeyId, cap: Amount) -> Result<(), Arc<StoreError>> {
        if !lock(&self.state).limits.contains_key(key) {
            let spent = self.store.spent_by_key(key).await.map_err(Arc::new)?;
            lock(&self.state).limits.entry(key.clone()).or_insert(SpendLimit::new(cap, spent));
        }
        Ok(())
    }

    /// Reads the budget's row again (never while a batch is being written), keeping the holds in
    /// memory and adding the captures not yet written. While the row is read the budget is taken
    /// out of the shared state, so a hold asked for meanwhile queues for this task and is decided
    /// on the new row (as the one who changed the row expects), not on the old one.
    async fn reload(&mut self, key: &BudgetKey, ended: &[(ResolvedCharge, Reply)]) -> Result<Budget, Arc<StoreError>> {
        let old = lock(&self.state).budgets.remove(key);
        let read = self.store.budget(&key.0, &key.1).await;
        let mut state = lock(&self.state);
        let mut budget = match read {
            Ok(budget) => budget,
            Err(err) => {
                if let Some(old) = old {
                    state.budgets.insert(key.clone(), old);
                }
                return Err(Arc::new(err));
            }
        };
        if let Err(err) = captured_of(key, ended).and_then(|captured| budget.add_unsettled(captured)) {
            if let Some(old) = old {
                state.budgets.insert(key.clone(), old);
            }
            return Err(corrupt(err));
        }
        // Holds end only on this task, and none were placed while the budget was out.
        budget.held = old.map_or(Amount::ZERO, |old| old.held);
        state.budgets.insert(key.clone(), budget.clone());
        Ok(budget)
    }

    async fn reserve(&mut self, charge: NewCharge, now: Timestamp) -> Result<ChargeOpResult, Arc<StoreError>> {
        let key = (charge.tenant_id.clone(), charge.service.clone());
        self.load(&key).await?;
        if let Some(cap) = charge.cap {
            self.load_limit(&charge.key_id, cap).await?;
        }
        lock(&self.state).reserve(&key, charge, now, self.margins)
    }

    /// A call ended: its hold ends in memory at once — a capture moves it to `unsettled`, so what
    /// is available never counts it twice or not at all — and its charge is written with the batch
    /// (or it was not held at all). A capture too close to the allowance's expiry to be settled is
    /// a release instead, answered at once: the caller withholds the result, and a release needs
    /// no durability first.
    fn end(
        &mut self,
        id: &ChargeId,
        state: ChargeState,
        reply: Reply,
        now: Timestamp,
        resolved: &mut Vec<(ResolvedCharge, Reply)>,
    ) {
        let mut book = lock(&self.state);
        let Some(charge) = book.holds.remove(id) else {
            drop(book);
            let _ = reply.send(Ok(ChargeOpResult::NotHeld));
            return;
        };
        let key = (charge.tenant_id.clone(), charge.service.clone());
        let mut ended = match book.budgets.get_mut(&key) {
            Some(budget) => budget.end_hold(charge.amount, state == ChargeState::Captured, now, self.margins),
            None => Err(MoneyError("a hold's budget is not loaded")),
        };
        if charge.cap.is_some()
            && let Ok(end) = ended
        {
            let limit_ended = match book.limits.get_mut(&charge.key_id) {
                Some(limit) => limit.end_hold(charge.amount, end == HoldEnd::Captured),
                None => Err(MoneyError("a hold's spend limit is not loaded")),
            };
            ended = limit_ended.map(|()| end);
        }
        drop(book);
        let (state, expired) = match ended {
            Ok(HoldEnd::Captured) => (ChargeState::Captured, false),
            Ok(HoldEnd::Released) => (ChargeState::Released, false),
            Ok(HoldEnd::Expired) => (ChargeState::Released, true),
            Err(err) => {
                tracing::error!(error = %err, "a hold could not be ended; its result is withheld");
                let _ = reply.send(Err(corrupt(err)));
                return;
            }
        };
        let reply = if expired {
            let _ = reply.send(Ok(ChargeOpResult::Expired));
            oneshot::channel().0
        } else {
            reply
        };
        resolved.push((ResolvedCharge { charge, state, resolved_at: now }, reply));
    }

    /// Starts writing a batch of ended charges (which the write hands back when done).
    fn write(&self, ended: Vec<(ResolvedCharge, Reply)>) -> InFlight {
        let (charges, replies): (Vec<ResolvedCharge>, Vec<Reply>) = ended.into_iter().unzip();
        // A batch names a budget or two: each once, with what is held on it.
        let mut held: Vec<(TenantId, ServiceSlug, Amount)> = Vec::new();
        {
            let book = lock(&self.state);
            for charge in &charges {
                let (tenant, service) = (&charge.charge.tenant_id, &charge.charge.service);
                if !held.iter().any(|(t, s, _)| t == tenant && s == service) {
                    let key = (tenant.clone(), service.clone());
                    let amount = book.held_of(&key);
                    held.push((key.0, key.1, amount));
                }
            }
        }
        let store = self.store.clone();
        let write = Box::pin(async move {
            let result = store.record_resolved(&charges, &held, Timestamp::now()).await;
            (result, charges)
        });
        InFlight { write, replies }
    }

    /// A batch was written (or not): takes the budget rows the store returned (none from the
    /// charge journal), plus what ended since (`pending`), then answers the batch's callers.
    fn written(
        &mut self,
        result: Result<Vec<Budget>, StoreError>,
        charges: Vec<ResolvedCharge>,
        replies: Vec<Reply>,
        pending: &[(ResolvedCharge, Reply)],
    ) {
        match result {
            Ok(after) => {
                let mut book = lock(&self.state);
                for mut budget in after {
                    let key = (budget.tenant_id.clone(), budget.service.clone());
                    budget.held = book.held_of(&key);
                    match captured_of(&key, pending).and_then(|captured| budget.add_unsettled(captured)) {
                        Ok(()) => {
                            book.budgets.insert(key, budget);
                        }
                        // The loaded budget stays as it was; the next re-read corrects it.
                        Err(err) => tracing::error!(error = %err, "a written budget does not add up"),
                    }
                }
                drop(book);
                for reply in replies {
                    let _ = reply.send(Ok(ChargeOpResult::Done));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, charges = charges.len(), "ended charges could not be written");
                // Nothing was written: a capture's result is withheld, so it counts as released.
                let mut book = lock(&self.state);
                for ended in &charges {
                    if ended.state == ChargeState::Captured {
                        let key = (ended.charge.tenant_id.clone(), ended.charge.service.clone());
                        if let Some(budget) = book.budgets.get_mut(&key)
                            && let Err(err) = budget.remove_unsettled(ended.charge.amount)
                        {
                            tracing::error!(error = %err, "a capture that was not written cannot be taken back");
                        }
                        if ended.charge.cap.is_some()
                            && let Some(limit) = book.limits.get_mut(&ended.charge.key_id)
                            && let Err(err) = limit.take_back(ended.charge.amount)
                        {
                            tracing::error!(error = %err, "a capture that was not written cannot be taken back");
                        }
                    }
                }
                drop(book);
                let err = Arc::new(err);
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// What the not-yet-written captures among `ended` add to one budget.
fn captured_of(key: &BudgetKey, ended: &[(ResolvedCharge, Reply)]) -> Result<Amount, MoneyError> {
    ended
        .iter()
        .filter(|(c, _)| c.state == ChargeState::Captured && c.charge.tenant_id == key.0 && c.charge.service == key.1)
        .try_fold(Amount::ZERO, |total, (c, _)| {
            total.checked_add(c.charge.amount).ok_or(MoneyError("captures overflow"))
        })
}

/// A budget whose arithmetic does not add up: the book is corrupt.
fn corrupt(err: MoneyError) -> Arc<StoreError> {
    Arc::new(StoreError::Corrupt(err.to_string()))
}

impl std::fmt::Debug for MemoryBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let book = lock(&self.state);
        f.debug_struct("MemoryBook").field("budgets", &book.budgets.len()).field("holds", &book.holds.len()).finish()
    }
}
