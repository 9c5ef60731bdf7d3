//! The fortunes the `fortune` tool hands out, and how one is picked.

use std::hash::{BuildHasher, RandomState};

/// Every fortune starts with this, so a test can recognise one without knowing which it got.
pub const FORTUNE_PREFIX: &str = "🥠 ";

/// The fortunes the `fortune` tool picks from (without [`FORTUNE_PREFIX`]).
pub const FORTUNES: &[&str] = &[
    "A paid tool call is a promise kept.",
    "The bug you seek is in the code you trust.",
    "Your next build will be faster than your last.",
    "A small test today saves a long night tomorrow.",
    "Fortune favours the well-typed.",
    "What is measured is settled.",
    "You will meet an unexpected progress notification.",
    "Every gateway needs a good upstream.",
];

/// Picks one fortune at random and formats it as the tool's answer.
///
/// `RandomState` is seeded from the OS per process and differs per instance, which is all the
/// randomness a demo needs without pulling in an RNG crate.
pub(crate) fn pick_fortune() -> String {
    // `FORTUNES` is a non-empty constant, so the modulo never divides by zero.
    let index = RandomState::new().hash_one(0_u8) as usize % FORTUNES.len();
    let fortune = FORTUNES.get(index).copied().unwrap_or_default();
    format!("{FORTUNE_PREFIX}{fortune}")
}
