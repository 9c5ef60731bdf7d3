//! The budget's rules, example by example and as a property over random sequences of operations.

use proptest::prelude::*;

use super::*;

#[test]
fn available_never_goes_negative_and_stops_at_expiry() {
    let mut budget = Budget::empty(TenantId::new(), ServiceSlug::from_trusted("demo".into()));
    budget.approved = Amount::new(1000);
    budget.held = Amount::new(250);
    budget.unsettled = Amount::new(500);
    let now = Timestamp::from_millis(10_000);
    let none = ExpiryMargins::NONE;
    assert_eq!(budget.available(now, none).unwrap(), Amount::new(250));
    budget.unsettled = Amount::new(750);
    assert_eq!(budget.available(now, none).unwrap(), Amount::ZERO);
    budget.unsettled = Amount::new(900);
    assert!(budget.available(now, none).is_err(), "more committed than approved is corruption, not zero");
    budget.unsettled = Amount::new(100);
    budget.settled = Amount::new(600);
    assert_eq!(budget.available(now, none).unwrap(), Amount::new(50));
    budget.settled = Amount::ZERO;
    budget.unsettled = Amount::ZERO;
    budget.expires_at = Some(now);
    assert_eq!(budget.available(now, none).unwrap(), Amount::ZERO);
    assert!(!budget.may_capture(now, none));
}

#[test]
fn a_ceiling_bounds_what_is_held_and_unsettled_below_the_approval() {
    let mut budget = Budget::empty(TenantId::new(), ServiceSlug::from_trusted("demo".into()));
    budget.approved = Amount::new(1000);
    budget.held = Amount::new(100);
    budget.unsettled = Amount::new(200);
    budget.settled = Amount::new(300);
    let now = Timestamp::from_millis(10_000);
    let none = ExpiryMargins::NONE;
    assert_eq!(budget.available(now, none).unwrap(), Amount::new(400));
    // Lowering to 350: settled charges are paid and do not count against the new amount.
    budget.ceiling = Some(Amount::new(350));
    assert_eq!(budget.available(now, none).unwrap(), Amount::new(50));
    // A ceiling above what the approval leaves changes nothing.
    budget.ceiling = Some(Amount::new(5000));
    assert_eq!(budget.available(now, none).unwrap(), Amount::new(400));
    // Already past it: nothing more.
    budget.ceiling = Some(Amount::new(250));
    assert_eq!(budget.available(now, none).unwrap(), Amount::ZERO);
}

#[test]
fn holds_and_captures_stop_before_the_expiry_by_their_margins() {
    let margins = ExpiryMargins::for_settlement(std::time::Duration::from_secs(10));
    assert_eq!(margins, ExpiryMargins { hold_ms: 80_000, capture_ms: 20_000 });
    // Quick settlement still leaves 10 s to settle in.
    assert_eq!(ExpiryMargins::for_settlement(std::time::Duration::from_secs(1)).capture_ms, 10_000);

    let mut budget = Budget::empty(TenantId::new(), ServiceSlug::from_trusted("demo".into()));
    budget.approved = Amount::new(1000);
    let expiry = Timestamp::from_millis(1_000_000);
    budget.expires_at = Some(expiry);
    // More than the hold margin ahead: holds and captures go on.
    let early = Timestamp::from_millis(expiry.as_millis() - 80_001);
    assert_eq!(budget.available(early, margins).unwrap(), Amount::new(1000));
    assert!(!budget.expiring(early, margins));
    assert!(budget.may_capture(early, margins));
    // Within the hold margin: no new hold, but a call held earlier may still be captured.
    let late = Timestamp::from_millis(expiry.as_millis() - 80_000);
    assert_eq!(budget.available(late, margins).unwrap(), Amount::ZERO);
    assert!(budget.expiring(late, margins));
    assert!(budget.may_capture(late, margins));
    // Within the capture margin: no capture either.
    assert!(budget.may_capture(Timestamp::from_millis(expiry.as_millis() - 20_001), margins));
    assert!(!budget.may_capture(Timestamp::from_millis(expiry.as_millis() - 20_000), margins));
    // An allowance without expiry never stops.
    budget.expires_at = None;
    assert_eq!(budget.available(Timestamp::from_millis(i64::MAX), margins).unwrap(), Amount::new(1000));
    assert!(budget.may_capture(Timestamp::from_millis(i64::MAX), margins));
}

#[test]
fn overflow_and_underflow_are_errors_not_saturated_values() {
    let mut budget = Budget::empty(TenantId::new(), ServiceSlug::from_trusted("demo".into()));
    budget.approved = Amount::new(u128::MAX);
    budget.held = Amount::new(u128::MAX);
    budget.unsettled = Amount::new(1);
    assert!(budget.available(Timestamp::from_millis(0), ExpiryMargins::NONE).is_err());
    let mut budget = Budget::empty(TenantId::new(), ServiceSlug::from_trusted("demo".into()));
    budget.approved = Amount::new(10);
    let now = Timestamp::from_millis(0);
    assert!(budget.end_hold(Amount::new(1), true, now, ExpiryMargins::NONE).is_err(), "nothing was held");
    assert!(budget.settle(Amount::new(1), Amount::ZERO).is_err(), "nothing was unsettled");
    budget.settled = Amount::new(11);
    assert!(budget.check().is_err());
    assert!(budget.available(now, ExpiryMargins::NONE).is_err(), "a broken invariant is not hidden");
}

#[test]
fn the_ledger_cap_bounds_holds_without_touching_the_approval() {
    let mut budget = Budget::empty(TenantId::new(), ServiceSlug::from_trusted("demo".into()));
    let now = Timestamp::from_millis(0);
    let none = ExpiryMargins::NONE;
    assert_eq!(budget.approve(Amount::new(1_000_000), None).unwrap(), Ok(()));
    // A wallet of 0: the approval stands (ICRC-2 allows it) but no hold fits.
    budget.cap_to_ledger(Amount::ZERO, Amount::new(10));
    assert_eq!(
        budget.hold(Amount::new(1), now, none).unwrap(),
        HoldOutcome::Refused { available: Amount::ZERO, expiring: false }
    );
    // Funded with 510, fee 10: 500 of holds and captures fit.
    budget.cap_to_ledger(Amount::new(510), Amount::new(10));
    assert_eq!(budget.hold(Amount::new(300), now, none).unwrap(), HoldOutcome::Held);
    assert_eq!(budget.end_hold(Amount::new(300), true, now, none).unwrap(), HoldEnd::Captured);
    assert_eq!(budget.hold(Amount::new(200), now, none).unwrap(), HoldOutcome::Held);
    assert!(matches!(budget.hold(Amount::new(1), now, none).unwrap(), HoldOutcome::Refused { .. }));
    assert_eq!(budget.approved, Amount::new(1_000_000), "the approval is what the person approved");
    // The wallet is emptied elsewhere: what is open is owed, nothing new is held.
    budget.cap_to_ledger(Amount::ZERO, Amount::new(10));
    assert_eq!(budget.available(now, none).unwrap(), Amount::ZERO);
    // A re-approval keeps what is owed.
    assert_eq!(budget.approve(Amount::new(400), None).unwrap(), Err(Amount::new(500)));
    assert_eq!(budget.approve(Amount::new(2_000), None).unwrap(), Ok(()));
    assert_eq!((budget.held, budget.unsettled), (Amount::new(200), Amount::new(300)));
    assert_eq!(budget.available(now, none).unwrap(), Amount::ZERO, "still no funds behind new holds");
    budget.check().unwrap();
    // Funded again (slice 600 for the 500 open), then 300 settled with a fee of 10: the wallet
    // paid 310, so the 100 of room left shrinks to 90.
    budget.ledger_cap = Some(Amount::new(600));
    assert_eq!(budget.end_hold(Amount::new(200), true, now, none).unwrap(), HoldEnd::Captured);
    budget.settle(Amount::new(300), Amount::new(10)).unwrap();
    assert_eq!(budget.ledger_cap, Some(Amount::new(290)));
    assert_eq!(budget.available(now, none).unwrap(), Amount::new(90));
}

/// One operation of the property test.
#[derive(Clone, Debug)]
enum Op {
    Approve(u128, Option<i64>),
    Hold(u128),
    Capture(usize),
    Release(usize),
    Cap(u128, u128),
    Ceiling(Option<u128>),
    Settle(u128, u128),
    Tick(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u128..2_000, proptest::option::of(0i64..400)).prop_map(|(a, e)| Op::Approve(a, e)),
        3 => (0u128..300).prop_map(Op::Hold),
        2 => (0usize..8).prop_map(Op::Capture),
        1 => (0usize..8).prop_map(Op::Release),
        1 => (0u128..3_000, 0u128..20).prop_map(|(room, fee)| Op::Cap(room, fee)),
        1 => proptest::option::of(0u128..2_000).prop_map(Op::Ceiling),
        1 => (0u128..500, 0u128..20).prop_map(|(amount, fee)| Op::Settle(amount, fee)),
        1 => (0i64..60).prop_map(Op::Tick),
    ]
}

proptest! {
    /// Random approve / hold / capture / release / cap / settle / fee / expiry sequences: after
    /// every step, what is committed stays within the approval, the holds add up, every hold fits
    /// the ledger's cap and the ceiling when placed, and nothing is captured past the margin.
    #[test]
    fn the_invariants_hold_after_every_step(ops in proptest::collection::vec(op(), 1..80)) {
        let margins = ExpiryMargins { hold_ms: 30, capture_ms: 10 };
        let mut budget = Budget::empty(TenantId::new(), ServiceSlug::from_trusted("demo".into()));
        let mut holds: Vec<Amount> = Vec::new();
        let mut now = 0i64;
        for op in ops {
            let at = Timestamp::from_millis(now);
            match op {
                Op::Approve(amount, expiry) => {
                    let open = budget.open().unwrap();
                    let result = budget.approve(Amount::new(amount), expiry.map(|e| Timestamp::from_millis(now + e))).unwrap();
                    prop_assert_eq!(result.is_ok(), Amount::new(amount) >= open, "an approval must cover what is open");
                }
                Op::Hold(amount) => {
                    let available = budget.available(at, margins).unwrap();
                    let open = budget.open().unwrap();
                    match budget.hold(Amount::new(amount), at, margins).unwrap() {
                        HoldOutcome::Held => {
                            prop_assert!(Amount::new(amount) <= available);
                            if amount > 0 {
                            let after = open.checked_add(Amount::new(amount)).unwrap();
                            for limit in [budget.ceiling, budget.ledger_cap].into_iter().flatten() {
                                prop_assert!(after <= limit, "a hold went past a limit");
                            }
                            }
                            prop_assert!(!budget.expiring(at, margins));
                            holds.push(Amount::new(amount));
                        }
                        HoldOutcome::Refused { available: told, expiring } => {
                            prop_assert_eq!(told, available);
                            prop_assert!(Amount::new(amount) > available || expiring);
                        }
                    }
                }
                Op::Capture(i) | Op::Release(i) if i < holds.len() => {
                    let amount = holds.remove(i);
                    let capture = matches!(op, Op::Capture(_));
                    let before = budget.unsettled;
                    let end = budget.end_hold(amount, capture, at, margins).unwrap();
                    match end {
                        HoldEnd::Captured => {
                            prop_assert!(capture && budget.may_capture(at, margins));
                            prop_assert_eq!(budget.unsettled, before.checked_add(amount).unwrap());
                        }
                        HoldEnd::Expired => prop_assert!(capture && !budget.may_capture(at, margins)),
                        HoldEnd::Released => prop_assert!(!capture),
                    }
                }
                Op::Capture(_) | Op::Release(_) => {}
                Op::Cap(room, fee) => budget.cap_to_ledger(Amount::new(room), Amount::new(fee)),
                Op::Ceiling(ceiling) => budget.ceiling = ceiling.map(Amount::new),
                Op::Settle(amount, fee) => {
                    let amount = Amount::new(amount).min(budget.unsettled);
                    let (cap, open) = (budget.ledger_cap, budget.open().unwrap());
                    budget.settle(amount, Amount::new(fee)).unwrap();
                    // The wallet paid the amount and the fee: the slice shrinks by both, so what
                    // new holds may take shrinks by the fee (or to nothing).
                    if let Some(cap) = cap {
                        let room_before = cap.units().saturating_sub(open.units());
                        let room_after = budget.ledger_cap.unwrap().units().saturating_sub(budget.open().unwrap().units());
                        prop_assert_eq!(room_after, room_before.saturating_sub(fee).min(cap.units().saturating_sub(amount.units() + fee)));
                    }
                }
                Op::Tick(ms) => now += ms,
            }
            budget.check().unwrap();
            let held = holds.iter().fold(Amount::ZERO, |sum, h| sum.checked_add(*h).unwrap());
            prop_assert_eq!(budget.held, held, "the holds add up");
        }
    }
}
