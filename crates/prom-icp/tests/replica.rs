//! `IcLedger`'s queries through a real `ic-agent` over HTTP, against a fake replica on loopback:
//! the request names the right method and carries our candid argument; the answer is decoded, a
//! `nat` beyond `u128` or an answer of the wrong type is `Unrepresentable`, a reject is `Rejected`
//! (or `Transport` when transient), an HTTP error is `Transport`.
//!
//! The fake speaks just enough of the interface spec for an agent that does not verify query
//! signatures: `POST /api/v3/canister/<id>/query`, CBOR in and out. Updates need certificates
//! signed under the root key, which a fake cannot make; they are covered by the live test.

#![cfg(feature = "icp")]

use std::sync::{Arc, Mutex};

use candid::{Decode, Encode, Nat, Principal};
use prom_core::ledger::{Account, Allowance, AllowanceArgs, Ledger, LedgerError};
use prom_core::money::Amount;
use prom_icp::ic_agent::Agent;
use prom_icp::{CallFailed, IcLedger, wire};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LEDGER: &str = "ryjl3-tyaaa-aaaaa-aaaba-cai";

/// What the fake replica answers.
#[derive(Clone, Debug)]
enum Answer {
    Reply(Vec<u8>),
    Reject { code: u64, message: &'static str },
    Http(u16),
}

/// The last query the fake saw: its path, method name and candid argument.
#[derive(Clone, Debug, Default)]
struct Seen {
    path: String,
    method: String,
    arg: Vec<u8>,
}

struct FakeReplica {
    url: String,
    answer: Arc<Mutex<Answer>>,
    seen: Arc<Mutex<Seen>>,
}

impl FakeReplica {
    async fn spawn() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let answer = Arc::new(Mutex::new(Answer::Http(500)));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (answer_for_task, seen_for_task) = (answer.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let Some((path, body)) = read_request(&mut stream).await else { continue };
                let method = String::from_utf8(cbor_field(&body, "method_name").unwrap_or_default()).unwrap();
                let arg = cbor_field(&body, "arg").unwrap_or_default();
                *seen_for_task.lock().unwrap() = Seen { path, method, arg };
                let answer = answer_for_task.lock().unwrap().clone();
                let (status, body) = match answer {
                    Answer::Reply(arg) => (200, replied(&arg)),
                    Answer::Reject { code, message } => (200, rejected(code, message)),
                    Answer::Http(status) => (status, b"the replica is down".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/cbor\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
            }
        });
        Self { url, answer, seen }
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }

    fn ledger(&self) -> IcLedger {
        let agent = Agent::builder().with_url(&self.url).with_verify_query_signatures(false).build().unwrap();
        IcLedger::new(agent, Principal::from_text(LEDGER).unwrap())
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let path = head.split_whitespace().nth(1)?.to_owned();
    let length: usize = head
        .lines()
        .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))?
        .parse()
        .ok()?;
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Some((path, buffer[head_end..head_end + length].to_vec()))
}

/// A CBOR head: major type and argument.
fn cbor_head(major: u8, value: u64) -> Vec<u8> {
    let major = major << 5;
    match value {
        0..=23 => vec![major | value as u8],
        24..=0xff => vec![major | 24, value as u8],
        0x100..=0xffff => [vec![major | 25], (value as u16).to_be_bytes().to_vec()].concat(),
        0x1_0000..=0xffff_ffff => [vec![major | 26], (value as u32).to_be_bytes().to_vec()].concat(),
        _ => [vec![major | 27], value.to_be_bytes().to_vec()].concat(),
    }
}

fn cbor_text(text: &str) -> Vec<u8> {
    [cbor_head(3, text.len() as u64), text.as_bytes().to_vec()].concat()
}

fn cbor_bytes(bytes: &[u8]) -> Vec<u8> {
    [cbor_head(2, bytes.len() as u64), bytes.to_vec()].concat()
}

fn replied(arg: &[u8]) -> Vec<u8> {
    let reply = [cbor_head(5, 1), cbor_text("arg"), cbor_bytes(arg)].concat();
    [cbor_head(5, 2), cbor_text("status"), cbor_text("replied"), cbor_text("reply"), reply].concat()
}

fn rejected(code: u64, message: &str) -> Vec<u8> {
    [
        cbor_head(5, 4),
        cbor_text("status"),
        cbor_text("rejected"),
        cbor_text("reject_code"),
        cbor_head(0, code),
        cbor_text("reject_message"),
        cbor_text(message),
        cbor_text("error_code"),
        cbor_text("IC0302"),
    ]
    .concat()
}

/// The value (a text or byte string) that follows the map key `key` in a CBOR envelope.
fn cbor_field(body: &[u8], key: &str) -> Option<Vec<u8>> {
    let needle = cbor_text(key);
    let at = body.windows(needle.len()).position(|w| w == needle.as_slice())? + needle.len();
    let (initial, rest) = body[at..].split_first()?;
    let (length, rest) = match initial & 0x1f {
        n @ 0..=23 => (usize::from(n), rest),
        24 => (usize::from(*rest.first()?), &rest[1..]),
        25 => (usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)), &rest[2..]),
        _ => return None,
    };
    rest.get(..length).map(<[u8]>::to_vec)
}

#[tokio::test]
async fn queries_send_our_arguments_and_decode_the_answers() {
    let replica = FakeReplica::spawn().await;
    let ledger = replica.ledger();

    replica.answer(Answer::Reply(Encode!(&Nat::from(10_000u32)).unwrap()));
    assert_eq!(ledger.fee().await.unwrap(), Amount::new(10_000));
    let seen = replica.seen();
    assert_eq!(seen.path, format!("/api/v3/canister/{LEDGER}/query"));
    assert_eq!(seen.method, "icrc1_fee");
    assert_eq!(seen.arg, Encode!().unwrap());

    replica.answer(Answer::Reply(Encode!(&8u8).unwrap()));
    assert_eq!(ledger.decimals().await.unwrap(), 8);
    assert_eq!(replica.seen().method, "icrc1_decimals");

    let owner = Principal::from_slice(&[0xa1; 29]);
    replica.answer(Answer::Reply(Encode!(&Nat::from(u128::MAX)).unwrap()));
    let account = Account::with_subaccount(owner.to_text(), [3; 32]);
    assert_eq!(ledger.balance_of(&account).await.unwrap(), Amount::new(u128::MAX));
    let seen = replica.seen();
    assert_eq!(seen.method, "icrc1_balance_of");
    let sent = Decode!(&seen.arg, wire::Account).unwrap();
    assert_eq!(sent, wire::Account { owner, subaccount: Some([3; 32]) });

    let answer = wire::Allowance { allowance: Nat::from(250u16), expires_at: Some(42) };
    replica.answer(Answer::Reply(Encode!(&answer).unwrap()));
    let args = AllowanceArgs { account: Account::new(owner.to_text()), spender: Account::new(LEDGER) };
    let allowance = ledger.allowance(args).await.unwrap();
    assert_eq!(allowance, Allowance { allowance: Amount::new(250), expires_at: Some(42) });
    let seen = replica.seen();
    assert_eq!(seen.method, "icrc2_allowance");
    let sent = Decode!(&seen.arg, wire::AllowanceArgs).unwrap();
    let spender = wire::Account { owner: Principal::from_text(LEDGER).unwrap(), subaccount: None };
    assert_eq!(sent, wire::AllowanceArgs { account: wire::Account { owner, subaccount: None }, spender });
}

#[tokio::test]
async fn answers_this_version_cannot_hold_are_unrepresentable() {
    let replica = FakeReplica::spawn().await;
    let ledger = replica.ledger();

    replica.answer(Answer::Reply(Encode!(&(Nat::from(u128::MAX) + 1u8)).unwrap()));
    let fee = ledger.fee().await;
    assert!(
        matches!(fee, Err(LedgerError::Unrepresentable(ref m)) if m.contains("fee = 340282366920938463463374607431768211456")),
        "{fee:?}"
    );

    replica.answer(Answer::Reply(Encode!(&"not a nat").unwrap()));
    let fee = ledger.fee().await;
    assert!(
        matches!(fee, Err(LedgerError::Unrepresentable(ref m)) if m.contains("icrc1_fee") && m.contains("ICRC-2 ledger")),
        "{fee:?}"
    );
}

#[tokio::test]
async fn rejects_and_http_errors_say_what_failed() {
    let replica = FakeReplica::spawn().await;
    let ledger = replica.ledger();

    replica.answer(Answer::Reject { code: 3, message: "canister not found" });
    let fee = ledger.fee().await;
    let expected = ["canister not found", "IC0302", "check the ledger canister id"];
    assert!(matches!(fee, Err(LedgerError::Rejected(ref m)) if expected.iter().all(|e| m.contains(e))), "{fee:?}");

    replica.answer(Answer::Reject { code: 5, message: "method not found" });
    let fee = ledger.fee().await;
    assert!(matches!(fee, Err(LedgerError::Rejected(ref m)) if m.contains("is an ICRC-2 ledger")), "{fee:?}");

    for answer in [Answer::Reject { code: 2, message: "queue full" }, Answer::Http(503)] {
        replica.answer(answer.clone());
        match ledger.decimals().await {
            Err(LedgerError::Transport(cause)) => {
                assert_eq!(cause.downcast_ref::<CallFailed>().unwrap().method, "icrc1_decimals", "{answer:?}");
            }
            other => panic!("{answer:?} should be a transport error, got {other:?}"),
        }
    }
}
