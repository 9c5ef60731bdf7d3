//! Slicing a wallet, example by example and as a property over random claims.

use proptest::prelude::*;

use super::*;

fn claim(open: u128, limit: u128) -> Claim {
    Claim { open: Amount::new(open), limit: Amount::new(limit) }
}

fn units(slices: Vec<Amount>) -> Vec<u128> {
    slices.into_iter().map(Amount::units).collect()
}

#[test]
fn two_services_approved_the_whole_wallet_each_share_it() {
    // 100 in the wallet, a fee of 5 per settlement, 100 approved for each of two services.
    let slices = slice(Amount::new(100), Amount::new(5), &[claim(0, 95), claim(0, 95)]).unwrap();
    assert_eq!(units(slices), vec![45, 45]);
}

#[test]
fn what_is_open_keeps_its_place_and_small_wants_leave_the_rest() {
    // 1000 in the wallet, no fee: one budget already has 300 open; another can use only 50 more.
    let slices = slice(Amount::new(1000), Amount::ZERO, &[claim(300, 2000), claim(0, 50), claim(0, 2000)]).unwrap();
    assert_eq!(units(slices), vec![300 + 325, 50, 325]);
}

#[test]
fn a_funded_wallet_gives_every_budget_its_whole_limit() {
    let slices = slice(Amount::new(10_000), Amount::new(10), &[claim(40, 500), claim(0, 100)]).unwrap();
    assert_eq!(units(slices), vec![500, 100]);
}

#[test]
fn a_drained_wallet_gives_nothing_new() {
    // The tenant spent the wallet elsewhere: what is open stays, nothing more fits.
    let slices = slice(Amount::new(50), Amount::new(5), &[claim(60, 500), claim(0, 100)]).unwrap();
    assert_eq!(units(slices), vec![60, 0]);
}

#[test]
fn idle_budgets_take_no_fee() {
    let slices = slice(Amount::new(100), Amount::new(10), &[claim(0, 0), claim(0, 500)]).unwrap();
    assert_eq!(units(slices), vec![0, 90]);
}

fn claims() -> impl Strategy<Value = Vec<(u128, u128)>> {
    proptest::collection::vec((0u128..2_000, 0u128..3_000), 0..8)
}

proptest! {
    #[test]
    fn slices_never_promise_more_than_the_wallet(balance in 0u128..10_000, fee in 0u128..50, raw in claims()) {
        let claims: Vec<Claim> = raw.iter().map(|&(open, limit)| claim(open, limit)).collect();
        let slices = units(slice(Amount::new(balance), Amount::new(fee), &claims).unwrap());
        let settling = claims.iter().filter(|c| c.open.units() > 0 || c.limit > c.open).count() as u128;
        let open: u128 = claims.iter().map(|c| c.open.units()).sum();
        let total: u128 = slices.iter().sum();
        for (claim, slice) in claims.iter().zip(&slices) {
            prop_assert!(*slice >= claim.open.units(), "a slice below what is open");
            prop_assert!(*slice <= claim.open.units().max(claim.limit.units()), "a slice past its limit");
        }
        if open + fee * settling <= balance {
            prop_assert!(total + fee * settling <= balance, "slices {slices:?} and fees exceed {balance}");
        } else {
            prop_assert_eq!(total, open, "a drained wallet leaves room");
        }
        // Nothing is left idle that a budget wanted: either every want is met, or the balance is used
        // up to a unit per budget (integer shares).
        let wants: u128 = claims.iter().map(|c| c.wants()).sum();
        let free = balance.saturating_sub(fee * settling).saturating_sub(open);
        prop_assert!(total - open == wants.min(free) || free - (total - open) < claims.len() as u128 + 1);
        // Max-min fair: a budget cut short got at least as much as any other, give or take a unit
        // per budget.
        for (i, a) in claims.iter().enumerate() {
            if slices[i] < a.limit.units() {
                let share = slices[i] - a.open.units();
                for (j, b) in claims.iter().enumerate() {
                    prop_assert!(slices[j] - b.open.units() <= share + claims.len() as u128);
                }
            }
        }
    }
}
