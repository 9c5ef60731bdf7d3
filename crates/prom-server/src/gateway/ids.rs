//! JSON-RPC ids as the gateway handles them: compared the way JSON-RPC peers compare them, and, for
//! paid calls, replaced by ids the gateway makes.
//!
//! A paid call goes upstream under a gateway-made id ([`PAID_ID_PREFIX`] + 32 hex digits) and its
//! response comes back with the agent's own id, exactly as the agent sent it. So the gateway never
//! has to guess whether an upstream's `1` answers an agent's `1.0`, ids cannot collide upstream,
//! and a paid result can be recognised on any stream it turns up on (a resumed GET stream, another
//! request's stream): a response with a gateway-made id is delivered only through the paid call
//! it belongs to, after its capture, and withheld otherwise.

use serde_json::Value;
use serde_json::value::RawValue;

/// Prefix of the ids the gateway gives paid calls upstream. Agents may not use ids that start with
/// it. Never change it while calls may be in flight.
pub const PAID_ID_PREFIX: &str = "prom-call-";

/// A new gateway-made id for a paid call.
pub fn new_paid_id() -> String {
    format!("{PAID_ID_PREFIX}{}", uuid::Uuid::now_v7().simple())
}

/// Whether `id` is a gateway-made paid-call id.
pub fn is_paid_id(id: &Value) -> bool {
    id.as_str().is_some_and(|id| id.starts_with(PAID_ID_PREFIX))
}

/// Whether `message` is (at most) a JSON object: its first byte that is not white space is `{`.
pub fn is_object(message: &[u8]) -> bool {
    message.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'{')
}

/// A request id in the form JSON-RPC peers compare: strings by their text, numbers by their value,
/// so `1`, `1.0`, `1e0` and `10e-1` are one id (SDKs answer `1.0` with `1`), and `-0` is `0`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RpcId(String);

impl RpcId {
    /// The comparable form of a string or number id; `None` for anything else.
    pub fn of(id: &Value) -> Option<Self> {
        match id {
            Value::String(text) => Some(Self(format!("s:{text}"))),
            Value::Number(number) => Some(Self(format!("n:{}", canonical_number(number)))),
            _ => None,
        }
    }
}

fn canonical_number(number: &serde_json::Number) -> String {
    if let Some(int) = number.as_i64() {
        return int.to_string();
    }
    if let Some(int) = number.as_u64() {
        return int.to_string();
    }
    let float = number.as_f64().unwrap_or(f64::NAN);
    // Whole numbers within i64 read as integers, whatever their spelling (and -0 as 0).
    #[expect(clippy::cast_possible_truncation, reason = "checked to be whole and within i64 first")]
    if float.fract() == 0.0 && float.abs() < 9.2e18 {
        return (float as i64).to_string();
    }
    format!("{float:e}")
}

/// Whether two ids are the same id for a JSON-RPC peer.
pub fn same_id(a: &Value, b: &Value) -> bool {
    match (RpcId::of(a), RpcId::of(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// `message` (one JSON-RPC message object) with its `id` replaced, and every other byte as it was
/// written: the old id's bytes are found by one parse that skips everything else, and spliced.
pub fn with_id(message: &[u8], id: &Value) -> Result<Vec<u8>, serde_json::Error> {
    /// Borrows the id's text from the message (a duplicate `id` member is an error).
    #[derive(serde::Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow)]
        id: &'a RawValue,
    }
    // serde reads a struct from an array too; a JSON-RPC message is an object.
    if !is_object(message) {
        return Err(serde::de::Error::custom("a JSON-RPC message is an object"));
    }
    let found: IdOnly<'_> = serde_json::from_slice(message)?;
    let old = found.id.get().as_bytes();
    // The borrowed text lies inside `message`: its place there is the pointers' difference.
    let start = (old.as_ptr() as usize).checked_sub(message.as_ptr() as usize);
    let Some((start, end)) = start.and_then(|start| Some((start, start.checked_add(old.len())?))) else {
        return Err(serde::de::Error::custom("the id is not inside the message"));
    };
    let (Some(before), Some(after)) = (message.get(..start), message.get(end..)) else {
        return Err(serde::de::Error::custom("the id is not inside the message"));
    };
    let id = serde_json::to_vec(id)?;
    let mut out = Vec::with_capacity(before.len() + id.len() + after.len());
    out.extend_from_slice(before);
    out.extend_from_slice(&id);
    out.extend_from_slice(after);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn json_id() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        prop_oneof![
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            ".{0,40}".prop_map(|s| json!(s)),
        ]
    }

    proptest::proptest! {
        /// Splicing a new id into a request keeps every other byte's meaning and reads back the id.
        #[test]
        fn with_id_replaces_only_the_id(old in json_id(), new in json_id(), text in ".{0,200}") {
            let message = json!({"jsonrpc": "2.0", "id": old, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": text, "id": "not the id"}}});
            let bytes = serde_json::to_vec(&message).unwrap();
            let spliced = with_id(&bytes, &new).unwrap();
            let back: Value = serde_json::from_slice(&spliced).unwrap();
            proptest::prop_assert!(same_id(&back["id"], &new));
            let mut expected = message.clone();
            expected["id"] = back["id"].clone();
            proptest::prop_assert_eq!(back, expected);
        }

        /// Arbitrary bytes never panic the splice.
        #[test]
        fn with_id_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = with_id(&bytes, &json!("prom-call-x"));
        }
    }

    #[test]
    fn numbers_compare_by_value() {
        for same in ["1", "1.0", "1e0", "10e-1", "0.1e1"] {
            let value: Value = serde_json::from_str(same).unwrap();
            assert!(same_id(&value, &json!(1)), "{same}");
        }
        let minus_zero: Value = serde_json::from_str("-0").unwrap();
        assert!(same_id(&minus_zero, &json!(0)));
        let minus_zero: Value = serde_json::from_str("-0.0").unwrap();
        assert!(same_id(&minus_zero, &json!(0)));
        assert!(!same_id(&json!(1), &json!("1")), "a string is not a number");
        assert!(!same_id(&json!(1.5), &json!(1)));
        assert!(same_id(&json!(1.5), &serde_json::from_str::<Value>("15e-1").unwrap()));
        assert!(!same_id(&Value::Null, &Value::Null), "null is no request id");
        assert!(!same_id(&json!(true), &json!(true)));
    }

    #[test]
    fn replaces_the_id_and_keeps_the_rest() {
        let message = br#"{"jsonrpc":"2.0","id":1.0,"result":{"big":123456789012345678901234567890,"x":0.1}}"#;
        let rewritten = with_id(message, &json!("prom-call-abc")).unwrap();
        let text = String::from_utf8(rewritten).unwrap();
        assert!(text.contains(r#""id":"prom-call-abc""#), "{text}");
        assert!(text.contains("123456789012345678901234567890"), "big numbers are not re-read: {text}");
        assert!(with_id(b"[1]", &json!(1)).is_err());
        assert!(with_id(br#"{"id":1,"id":2,"result":{}}"#, &json!(3)).is_err(), "a duplicate id is not rewritten");
        let spaced = br#"{ "result" : {"id": 9} , "id" : "x\"y" }"#;
        assert_eq!(with_id(spaced, &json!(1.0)).unwrap(), br#"{ "result" : {"id": 9} , "id" : 1.0 }"#.to_vec());
        let paid = new_paid_id();
        assert!(is_paid_id(&json!(paid)));
        assert_eq!(paid.len(), PAID_ID_PREFIX.len() + 32);
        assert!(!is_paid_id(&json!(7)));
    }
}
