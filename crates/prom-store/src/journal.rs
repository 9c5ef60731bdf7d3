//! The embedded database's charge journal: where the charges of ended paid calls are made durable
//! before their results leave, in a file beside the database.
//!
//! A batch of ended charges is one line of JSON appended with one `write` by the calling task
//! itself: no hand-off to SQLite's connection thread and no SQLite commit (WAL frames, header,
//! file locks) on a paid call's path. A `write` that returned is in the kernel, so the charge
//! survives the process being killed, as a commit of SQLite's WAL with `synchronous = NORMAL`
//! does; neither is synced to disk before the answer leaves.
//!
//! The journal is folded into `charges` and the budgets' `unsettled` in the background and before
//! any read of a budget or of the charges (`SqlStore::fold_journal`), hundreds of charges per
//! transaction. A fold is idempotent: a charge already in `charges` is skipped (`ON CONFLICT DO
//! NOTHING`) and adds nothing to its budget, so folding a line twice — after a crash between the
//! commit and forgetting the line — changes nothing. Hence no offset needs to be kept in the
//! database.
//!
//! - **One writer.** The process that holds the journal's lock file (`flock`, released by the OS
//!   when the process dies, even by SIGKILL) owns it: only it appends and folds. A process takes
//!   it for good with its first append (the server's first ended paid call). Opening the
//!   database takes it only for a moment, when nobody holds it, to fold what a dead process left;
//!   a process opening it while the server runs (`prom admin …`) neither appends nor folds.
//! - **Torn batches.** A batch is one line, and its last byte is its newline: a process killed in
//!   the middle of a `write` leaves a line without one, which the next owner cuts off before
//!   appending (its callers never got an answer). A failed `write` is cut off at once.
//! - **Bounded.** Once folded past `ROTATE_AT` bytes, the file is renamed aside, a new one is
//!   started, and the old one is deleted after the fold that read it commits. A fold that failed
//!   reads the old file again, whole, next time.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use prom_core::charge::{ChargeState, ResolvedCharge};
use prom_core::store::{StoreError, StoreResult};
use prom_core::time::Timestamp;
use serde::{Deserialize, Serialize};

use crate::charges::{add_captured_to_budgets, captured_by_budget};
use crate::db_err;

/// How long a write waits for another process to let the journal go before it is refused.
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// Size past which a folded journal is renamed aside and a new one started.
const ROTATE_AT: u64 = 8 << 20;
/// Rows in one insert of a fold (9 bound values each). A full chunk's statement is prepared once
/// and kept by the connection; bigger chunks would save round trips to its thread, not work.
const ROWS_PER_STATEMENT: usize = 64;

/// One ended charge as the journal writes it.
#[derive(Serialize)]
struct EntryRef<'a> {
    id: &'a str,
    tenant: &'a str,
    service: &'a str,
    key: &'a str,
    tool: &'a str,
    amount: String,
    state: &'static str,
    at: i64,
    resolved_at: i64,
}

/// One ended charge as a fold reads it, borrowing from the bytes read (a string with an escape
/// in it is the only one copied).
#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    tenant: Cow<'a, str>,
    #[serde(borrow)]
    service: Cow<'a, str>,
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(borrow)]
    tool: Cow<'a, str>,
    #[serde(borrow)]
    amount: Cow<'a, str>,
    #[serde(borrow)]
    state: Cow<'a, str>,
    at: i64,
    resolved_at: i64,
}

#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    old_path: PathBuf,
    lock_path: PathBuf,
    owner: Mutex<Option<Owner>>,
    /// Size past which a folded journal is rotated (`ROTATE_AT`; smaller in tests).
    rotate_at: AtomicU64,
    /// One fold at a time (the background one and those before reads).
    folding: tokio::sync::Mutex<()>,
    /// Budgets known to exist: a charge of any other is refused before it is written, as the fold
    /// could not place it (budgets are never deleted).
    budgets: Mutex<HashSet<(String, String)>>,
}

#[derive(Debug)]
struct Owner {
    _lock: File,
    file: File,
    /// Bytes in `file`, every one of them part of a complete line.
    len: u64,
    /// Bytes of `file` folded so far.
    folded: u64,
    /// A renamed-aside journal is still to be folded (and then deleted).
    old: bool,
    /// A failed write could not be cut off: nothing more is appended until a restart repairs it.
    broken: bool,
}

/// What a fold took from the files, with where it stopped.
struct Taken {
    bytes: Vec<u8>,
    end: u64,
    old: bool,
}

fn io_err(what: &str, path: &Path, err: std::io::Error) -> StoreError {
    StoreError::Backend(Box::new(std::io::Error::new(err.kind(), format!("{what} {}: {err}", path.display()))))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Journal {
    /// The journal of the database at `database` (no file is touched until it is claimed).
    pub(crate) fn new(database: &Path) -> Self {
        let name = |suffix: &str| {
            let mut name = database.file_name().map(|n| n.to_os_string()).unwrap_or_default();
            name.push(suffix);
            database.with_file_name(name)
        };
        Self {
            path: name("-charges"),
            old_path: name("-charges.old"),
            lock_path: name("-charges.lock"),
            owner: Mutex::new(None),
            rotate_at: AtomicU64::new(ROTATE_AT),
            folding: tokio::sync::Mutex::new(()),
            budgets: Mutex::new(HashSet::new()),
        }
    }

    /// Rotates the journal past `bytes` instead of `ROTATE_AT` (tests).
    pub(crate) fn rotate_at(&self, bytes: u64) {
        self.rotate_at.store(bytes, Ordering::Relaxed);
    }

    /// Gives the journal up (closing the store): another process may take it at once.
    pub(crate) fn release(&self) {
        *lock(&self.owner) = None;
    }

    /// Takes the journal if no other process holds it; true when this process owns it.
    fn claim(&self, owner: &mut Option<Owner>) -> StoreResult<bool> {
        if owner.is_some() {
            return Ok(true);
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(|err| io_err("cannot open the charge journal's lock", &self.lock_path, err))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
            Err(std::fs::TryLockError::Error(err)) => {
                return Err(io_err("cannot lock the charge journal", &self.lock_path, err));
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(|err| io_err("cannot open the charge journal", &self.path, err))?;
        let len = complete_length(&file).map_err(|err| io_err("cannot read the charge journal", &self.path, err))?;
        let on_disk = file.metadata().map_err(|err| io_err("cannot read the charge journal", &self.path, err))?.len();
        if len < on_disk {
            // The last batch of a process killed while writing it: never answered, so dropped.
            tracing::warn!(bytes = on_disk - len, "cutting a torn last batch off the charge journal");
            file.set_len(len).map_err(|err| io_err("cannot repair the charge journal", &self.path, err))?;
        }
        let old = self.old_path.exists();
        *owner = Some(Owner { _lock: lock, file, len, folded: 0, old, broken: false });
        Ok(true)
    }

    /// Appends a batch of ended charges; they are durable (against a crash of the process) when
    /// this returns. Refused as a whole when one names a budget that does not exist.
    pub(crate) async fn record(&self, read: &sqlx::SqlitePool, charges: &[ResolvedCharge]) -> StoreResult<()> {
        if charges.is_empty() {
            return Ok(());
        }
        self.check_budgets(read, charges).await?;
        let entries: Vec<EntryRef<'_>> = charges
            .iter()
            .map(|resolved| {
                let charge = &resolved.charge;
                EntryRef {
                    id: charge.id.as_str(),
                    tenant: charge.tenant_id.as_str(),
                    service: charge.service.as_str(),
                    key: charge.key_id.as_str(),
                    tool: &charge.tool,
                    amount: charge.amount.to_string(),
                    state: resolved.state.as_str(),
                    at: charge.at.as_millis(),
                    resolved_at: resolved.resolved_at.as_millis(),
                }
            })
            .collect();
        let mut line = serde_json::to_vec(&entries)
            .map_err(|err| StoreError::Corrupt(format!("a charge batch could not be encoded: {err}")))?;
        line.push(b'\n');

        // Another process may hold the journal for a moment (`prom admin …` folding what a dead
        // server left, as it opens the database): wait for it, a little.
        let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
        loop {
            {
                let mut guard = lock(&self.owner);
                if self.claim(&mut guard)? {
                    let Some(owner) = guard.as_mut() else {
                        return Err(StoreError::Corrupt("the claimed journal vanished".into()));
                    };
                    return self.append(owner, &line);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Conflict(format!(
                    "another process holds the charge journal {}: only one server may charge paid calls on this database",
                    self.path.display()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    fn append(&self, owner: &mut Owner, line: &[u8]) -> StoreResult<()> {
        if owner.broken {
            return Err(StoreError::Corrupt(format!(
                "the charge journal {} could not be repaired after a failed write; restart the server",
                self.path.display()
            )));
        }
        if let Err(err) = owner.file.write_all(line) {
            // Cut the partial line off, so the next batch starts on a line of its own.
            if owner.file.set_len(owner.len).is_err() {
                owner.broken = true;
            }
            return Err(io_err("cannot append to the charge journal", &self.path, err));
        }
        owner.len += line.len() as u64;
        Ok(())
    }

    async fn check_budgets(&self, read: &sqlx::SqlitePool, charges: &[ResolvedCharge]) -> StoreResult<()> {
        // A batch names a budget or two: look each up once, allocating only for one not yet known.
        let mut named: Vec<(&str, &str)> =
            charges.iter().map(|c| (c.charge.tenant_id.as_str(), c.charge.service.as_str())).collect();
        named.sort_unstable();
        named.dedup();
        let unknown: Vec<(String, String)> = {
            let known = lock(&self.budgets);
            named
                .into_iter()
                .map(|(tenant, service)| (tenant.to_owned(), service.to_owned()))
                .filter(|key| !known.contains(key))
                .collect()
        };
        for (tenant, service) in unknown {
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM budgets WHERE tenant_id = $1 AND service = $2)")
                    .bind(&tenant)
                    .bind(&service)
                    .fetch_one(read)
                    .await
                    .map_err(db_err)?;
            if !exists {
                return Err(StoreError::Corrupt(format!(
                    "charges resolved for {tenant}/{service}, which has no budget"
                )));
            }
            lock(&self.budgets).insert((tenant, service));
        }
        Ok(())
    }

    /// Opening the database: folds what a process that is gone left in the journal, if no live
    /// process owns it, and lets it go again (it is taken for good by the first `record`).
    pub(crate) async fn recover(&self, write: &sqlx::SqlitePool) -> StoreResult<usize> {
        let claimed = {
            let mut guard = lock(&self.owner);
            let owned = guard.is_some();
            !owned && self.claim(&mut guard)?
        };
        let folded = self.fold(write).await;
        if claimed {
            self.release();
        }
        folded
    }

    /// Folds what was appended since the last fold into `charges` and the budgets, in one
    /// transaction; returns how many charges were new. Nothing to do in a process that does not
    /// own the journal.
    pub(crate) async fn fold(&self, write: &sqlx::SqlitePool) -> StoreResult<usize> {
        let _one = self.folding.lock().await;
        let Some(taken) = self.take()? else { return Ok(0) };
        let entries = parse(&taken.bytes, &self.path)?;
        let folded = if entries.is_empty() { 0 } else { insert(write, entries).await? };
        let mut guard = lock(&self.owner);
        if let Some(owner) = guard.as_mut() {
            owner.folded = owner.folded.max(taken.end);
            if owner.folded == owner.len && owner.len > 0 && owner.file.set_len(0).is_ok() {
                // Everything in it is in the database, and nothing was appended meanwhile.
                (owner.len, owner.folded) = (0, 0);
            }
            if taken.old {
                match std::fs::remove_file(&self.old_path) {
                    Ok(()) => owner.old = false,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => owner.old = false,
                    Err(err) => tracing::warn!(error = %err, "a folded charge journal could not be deleted; retrying"),
                }
            }
        }
        Ok(folded)
    }

    /// The bytes to fold: the renamed-aside journal (whole) if there is one, then the current
    /// one from where the last fold stopped. Renames a large, fully taken journal aside.
    fn take(&self) -> StoreResult<Option<Taken>> {
        let mut guard = lock(&self.owner);
        let Some(owner) = guard.as_mut() else { return Ok(None) };
        if owner.folded >= owner.len && !owner.old {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        if owner.old {
            bytes = std::fs::read(&self.old_path)
                .or_else(|err| if err.kind() == std::io::ErrorKind::NotFound { Ok(Vec::new()) } else { Err(err) })
                .map_err(|err| io_err("cannot read the charge journal", &self.old_path, err))?;
        }
        let start = bytes.len();
        let size = usize::try_from(owner.len - owner.folded)
            .map_err(|_| StoreError::Corrupt("the charge journal is too large to fold".into()))?;
        bytes.resize(start + size, 0);
        owner
            .file
            .read_exact_at(&mut bytes[start..], owner.folded)
            .map_err(|err| io_err("cannot read the charge journal", &self.path, err))?;
        let mut taken = Taken { bytes, end: owner.len, old: owner.old };
        if owner.len >= self.rotate_at.load(Ordering::Relaxed) && !owner.old {
            std::fs::rename(&self.path, &self.old_path)
                .map_err(|err| io_err("cannot rotate the charge journal", &self.path, err))?;
            owner.file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&self.path)
                .map_err(|err| io_err("cannot start a new charge journal", &self.path, err))?;
            (owner.len, owner.folded, owner.old) = (0, 0, true);
            (taken.end, taken.old) = (0, true);
        }
        Ok(Some(taken))
    }
}

/// The length of the file up to and including its last newline (what follows it is torn).
fn complete_length(file: &File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        file.read_exact_at(part, start)?;
        if let Some(at) = part.iter().rposition(|&b| b == b'\n') {
            return Ok(start + at as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

fn parse<'a>(bytes: &'a [u8], path: &Path) -> StoreResult<Vec<Entry<'a>>> {
    let mut entries = Vec::new();
    for line in bytes.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
        let batch: Vec<Entry<'a>> = serde_json::from_slice(line).map_err(|err| {
            StoreError::Corrupt(format!("the charge journal {} has an unreadable batch: {err}", path.display()))
        })?;
        entries.extend(batch);
    }
    Ok(entries)
}

/// Inserts the entries not yet in `charges` and adds their captures to the budgets, in one
/// transaction that takes the write lock first. Returns how many were new. Which ones were folded
/// before is asked once, with their ids as one JSON parameter (`json_each`): normally no row comes
/// back. The new ones are inserted with bound values, 64 rows per statement (measured cheaper
/// than unpacking them from JSON in SQLite, which re-parses each row once per column).
async fn insert(write: &sqlx::SqlitePool, mut entries: Vec<Entry<'_>>) -> StoreResult<usize> {
    let mut seen = HashSet::with_capacity(entries.len());
    entries.retain(|entry| seen.insert(entry.id.clone()));
    for entry in &entries {
        if entry.state != ChargeState::Captured.as_str() && entry.state != ChargeState::Released.as_str() {
            return Err(StoreError::Corrupt(format!("the charge journal holds a charge in state {:?}", entry.state)));
        }
    }
    let mut tx = write.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let ids: Vec<&str> = entries.iter().map(|entry| entry.id.as_ref()).collect();
    let folded: HashSet<String> =
        sqlx::query_scalar("SELECT id FROM charges WHERE id IN (SELECT value FROM json_each($1))")
            .bind(encode(&ids)?)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?
            .into_iter()
            .collect();
    entries.retain(|entry| !folded.contains(entry.id.as_ref()));
    if entries.is_empty() {
        tx.commit().await.map_err(db_err)?;
        return Ok(0);
    }
    for chunk in entries.chunks(ROWS_PER_STATEMENT) {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO charges (id, tenant_id, service, key_id, tool, amount, state, created_at, resolved_at) ",
        );
        insert.push_values(chunk, |mut row, entry: &Entry<'_>| {
            row.push_bind(entry.id.as_ref())
                .push_bind(entry.tenant.as_ref())
                .push_bind(entry.service.as_ref())
                .push_bind(entry.key.as_ref())
                .push_bind(entry.tool.as_ref())
                .push_bind(entry.amount.as_ref())
                .push_bind(entry.state.as_ref())
                .push_bind(entry.at)
                .push_bind(entry.resolved_at);
        });
        insert.build().persistent(chunk.len() == ROWS_PER_STATEMENT).execute(&mut *tx).await.map_err(db_err)?;
    }
    let captured = captured_by_budget(
        entries.iter().map(|e| (e.tenant.as_ref(), e.service.as_ref(), e.state.as_ref(), e.amount.as_ref())),
    )?;
    add_captured_to_budgets(&mut tx, &captured, Timestamp::now()).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(entries.len())
}

fn encode<T: Serialize + ?Sized>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|err| StoreError::Corrupt(format!("a fold could not be encoded: {err}")))
}
