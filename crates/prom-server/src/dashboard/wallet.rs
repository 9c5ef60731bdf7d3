//! The wallet page: the tenant's account on the ledger and its balance, what each service may
//! still spend of it (the allowance API's own view), and the settlements that moved money to the
//! publishers, with their ledger references.
//!
//! On a server started with test funds (`--demo`, embedded ledger), owners and admins can mint
//! tokens into the wallet. Minting has no audit action: the ledger's own history records it. The
//! wallet is then cut into slices again, so paid calls may use the new funds at once.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prom_core::access::Role;
use prom_core::money::Amount;
use prom_core::time::Timestamp;
use serde::Deserialize;

use super::page::{Chrome, Nav, PageError, render_status};
use super::viewer::{Posted, Viewer};
use crate::api::allowance::AllowanceView;
use crate::billing::tenant_wallet;
use crate::error::ApiError;
use crate::state::AppState;

/// Settlements shown (the newest).
const SETTLEMENTS_SHOWN: u32 = 50;
/// The most test funds one form adds (in the token's smallest unit).
const MAX_TEST_FUNDS: u128 = 1_000_000_000_000_000;

pub fn routes() -> Router<AppState> {
    Router::new().route("/wallet", get(wallet_page)).route("/wallet/fund", post(fund_wallet))
}

/// `1234567` as `1,234,567` (a string of digits; anything else is shown as it is).
fn grouped(digits: &str) -> String {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return digits.to_owned();
    }
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn amount(value: Amount) -> String {
    grouped(&value.to_string())
}

/// `2026-11-23 19:08 UTC`.
fn when(at: Timestamp) -> String {
    let time = at.to_datetime();
    format!("{} {:02}:{:02} UTC", at.date_string(), time.hour(), time.minute())
}

/// What one service may spend, as the allowance API reports it.
#[derive(Debug)]
struct AllowanceRow {
    service: String,
    approved: String,
    held: String,
    spent: String,
    unsettled: String,
    available: String,
    expires: Option<String>,
    /// Why paid calls are stopped, in words.
    stopped: Option<&'static str>,
}

impl AllowanceRow {
    fn of(view: &AllowanceView) -> Self {
        let parse = |raw: &str| raw.parse::<Amount>().unwrap_or(Amount::ZERO);
        let spent = parse(&view.settled).checked_add(parse(&view.unsettled));
        Self {
            service: view.service.clone(),
            approved: grouped(&view.approved),
            held: grouped(&view.held),
            spent: spent.map_or_else(|| "—".to_owned(), amount),
            unsettled: grouped(&view.unsettled),
            available: grouped(&view.available),
            expires: view.expires_at.as_deref().and_then(Timestamp::parse_rfc3339).map(when),
            stopped: match view.stopped_by.as_deref() {
                Some("expiry") => Some("stopped: the allowance expires"),
                Some("wallet") => Some("stopped: the wallet cannot pay more"),
                Some("allowance") => Some("stopped: the allowance is used up"),
                _ => None,
            },
        }
    }

    /// A budget whose service is gone (deleted): its own numbers, and nothing more to spend.
    fn of_closed(budget: &prom_core::charge::Budget) -> Self {
        let spent = budget.settled.checked_add(budget.unsettled);
        Self {
            service: budget.service.to_string(),
            approved: amount(budget.approved),
            held: amount(budget.held),
            spent: spent.map_or_else(|| "—".to_owned(), amount),
            unsettled: amount(budget.unsettled),
            available: "0".to_owned(),
            expires: budget.expires_at.map(when),
            stopped: Some("the service was removed"),
        }
    }
}

/// A settlement: one transfer of captured charges to the service's publisher.
#[derive(Debug)]
struct SettlementRow {
    id: String,
    service: String,
    amount: String,
    fee: String,
    state: &'static str,
    state_class: &'static str,
    /// The block index of the ledger transfer, once done.
    ledger_ref: Option<String>,
    created: String,
    completed: Option<String>,
}

/// A settlement's state in words, and its badge.
fn settlement_state(state: &str) -> (&'static str, &'static str) {
    match state {
        "done" => ("done", "ok"),
        "in_doubt" => ("pending: the ledger's answer is awaited", "warn"),
        "pending" => ("pending", "warn"),
        _ => ("unknown", "bad"),
    }
}

#[derive(Template)]
#[template(path = "wallet.html")]
struct WalletPage {
    chrome: Chrome,
    notice: Option<&'static str>,
    error: Option<String>,
    account: String,
    /// `None` when the ledger cannot be read right now.
    balance: Option<String>,
    allowances: Vec<AllowanceRow>,
    settlements: Vec<SettlementRow>,
    test_funds: bool,
    /// The amount as typed in the test funds form.
    amount: String,
}

fn notice(code: Option<&str>) -> Option<&'static str> {
    match code? {
        "funded" => Some("Test funds were added to your wallet."),
        _ => None,
    }
}

async fn wallet_view(state: &AppState, viewer: &Viewer) -> Result<WalletPage, PageError> {
    let tenant = viewer.principal.tenant_id();
    let account = tenant_wallet(tenant);
    let balance = match state.ledger.balance_of(&account).await {
        Ok(balance) => Some(amount(balance)),
        Err(err) => {
            tracing::warn!(error = %err, "cannot read a wallet's balance for the wallet page");
            None
        }
    };
    let mut allowances = Vec::new();
    for budget in state.store.tenant_budgets(tenant).await? {
        let view = crate::api::allowance::get_allowance(
            State(state.clone()),
            viewer.principal.clone(),
            Path(budget.service.to_string()),
        )
        .await;
        match view {
            Ok(Json(view)) => allowances.push(AllowanceRow::of(&view)),
            Err(ApiError::NotFound(_)) => allowances.push(AllowanceRow::of_closed(&budget)),
            Err(err) => return Err(err.into()),
        }
    }
    let settlements = state
        .store
        .list_settlements(tenant, SETTLEMENTS_SHOWN)
        .await?
        .into_iter()
        .map(|settlement| SettlementRow {
            id: settlement.id.to_string(),
            service: settlement.service.to_string(),
            amount: amount(settlement.amount),
            fee: amount(settlement.fee),
            state: settlement_state(&settlement.state).0,
            state_class: settlement_state(&settlement.state).1,
            ledger_ref: settlement.ledger_ref,
            created: when(settlement.created_at),
            completed: settlement.completed_at.map(when),
        })
        .collect();
    Ok(WalletPage {
        chrome: viewer.chrome(Nav::Wallet, "Wallet"),
        notice: None,
        error: None,
        account: account.to_string(),
        balance,
        allowances,
        settlements,
        test_funds: state.config.test_funds,
        amount: String::new(),
    })
}

#[derive(Debug, Default, Deserialize)]
struct WalletQuery {
    notice: Option<String>,
}

async fn wallet_page(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(query): Query<WalletQuery>,
) -> Result<Response, PageError> {
    let mut page = wallet_view(&state, &viewer).await?;
    page.notice = notice(query.notice.as_deref());
    Ok(render_status(StatusCode::OK, &page))
}

#[derive(Debug, Deserialize)]
struct FundForm {
    #[serde(default)]
    amount: String,
}

/// A whole number of units from 1 to 10^15, digits only.
fn parse_test_funds(raw: &str) -> Result<Amount, String> {
    let raw = raw.trim();
    let message =
        || format!("give a whole number of units from 1 to {}, digits only", grouped(&MAX_TEST_FUNDS.to_string()));
    if raw.is_empty() || raw.len() > 16 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(message());
    }
    match raw.parse::<u128>() {
        Ok(units) if (1..=MAX_TEST_FUNDS).contains(&units) => Ok(Amount::new(units)),
        _ => Err(message()),
    }
}

/// The wallet page again, with the test funds form as typed and why it was refused.
async fn refused(
    state: &AppState,
    viewer: &Viewer,
    typed: String,
    status: StatusCode,
    message: String,
) -> Result<Response, PageError> {
    let mut page = wallet_view(state, viewer).await?;
    page.error = Some(message);
    page.amount = typed;
    Ok(render_status(status, &page))
}

/// Mints test funds into the tenant's wallet (test funds on; owners and admins only).
async fn fund_wallet(State(state): State<AppState>, posted: Posted<FundForm>) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    if !state.config.test_funds {
        return Err(PageError::NotFound(
            "adding test funds is off on this server: it is only for a demo on the embedded ledger (prom serve \
             --demo). Fund the tenant's wallet on the ledger instead"
                .into(),
        ));
    }
    viewer.principal.require(Role::Admin)?;
    let units = match parse_test_funds(&form.amount) {
        Ok(units) => units,
        Err(message) => return refused(&state, &viewer, form.amount, StatusCode::BAD_REQUEST, message).await,
    };
    let tenant = viewer.principal.tenant_id().clone();
    if let Err(err) = state.ledger.mint(&tenant_wallet(&tenant), units).await {
        tracing::warn!(error = %err, "minting test funds failed");
        let message = format!("the ledger did not add the funds ({err}); nothing was changed");
        return refused(&state, &viewer, form.amount, StatusCode::BAD_GATEWAY, message).await;
    }
    tracing::info!(tenant = %tenant, amount = %units, "test funds minted into a wallet");
    // Paid calls stop at their slice of the wallet: cut it again so they may use the new funds
    // now. If that fails the settler cuts it on its next round.
    if let Err(err) = state.allowances.slice_wallet(&tenant).await {
        tracing::warn!(error = %err, "cannot cut the wallet after adding test funds; paid calls wait for the settler");
    }
    Ok(Redirect::to("/app/wallet?notice=funded").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(grouped("0"), "0");
        assert_eq!(grouped("999"), "999");
        assert_eq!(grouped("1000"), "1,000");
        assert_eq!(grouped("1234567"), "1,234,567");
        assert_eq!(grouped("n/a"), "n/a");
    }

    #[test]
    fn test_funds_are_whole_units_within_bounds() {
        assert_eq!(parse_test_funds("250"), Ok(Amount::new(250)));
        assert_eq!(parse_test_funds(" 1000000000000000 "), Ok(Amount::new(MAX_TEST_FUNDS)));
        for refused in ["", "0", "1000000000000001", "-5", "1e3", "12.5", "99999999999999999999"] {
            assert!(parse_test_funds(refused).is_err(), "{refused:?} was accepted");
        }
    }
}
