//! A wallet request parsed from raw JSON into domain types, naming the field at fault.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::money::Currency;

const MAX_TEXT_CHARS: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionKind {
    Debit,
    Credit,
    /// Cancels a debit (DESIGN §8).
    Rollback,
}

impl TransactionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionKind::Debit => "DEBIT",
            TransactionKind::Credit => "CREDIT",
            TransactionKind::Rollback => "ROLLBACK",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "DEBIT" => Some(TransactionKind::Debit),
            "CREDIT" => Some(TransactionKind::Credit),
            "ROLLBACK" => Some(TransactionKind::Rollback),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletRequest {
    pub player_id: String,
    pub amount_minor: i64,
    pub currency: Currency,
    pub ref_id: String,
    /// The `meta` object as canonical JSON text (keys sorted), if one was sent.
    pub meta: Option<String>,
    pub round: Round,
}

/// The game round a call belongs to (DESIGN §8), if the game server names one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    pub id: Option<String>,
    /// The game server says this call ends the round.
    pub closed: bool,
}

/// `POST /wallet/rollback`: cancel the debit whose refId is `original_ref_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackRequest {
    pub player_id: String,
    /// This rollback's own refId, unique like any other.
    pub ref_id: String,
    pub original_ref_id: String,
    pub round_id: Option<String>,
    pub meta: Option<String>,
}

/// `POST /wallet/balance`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceRequest {
    pub player_id: String,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("currency {given:?} is not supported; use one of {}", allowed.join(", "))]
    UnsupportedCurrency {
        given: String,
        allowed: Vec<&'static str>,
    },
}

fn invalid(field: &'static str, message: impl Into<String>) -> RequestError {
    RequestError::Invalid {
        field,
        message: message.into(),
    }
}

fn object_of(body: &[u8]) -> Result<Fields, RequestError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| invalid("body", format!("body is not valid JSON: {error}")))?;
    match value {
        Value::Object(fields) => Ok(fields),
        _ => Err(invalid("body", "body must be a JSON object")),
    }
}

impl WalletRequest {
    pub fn parse(body: &[u8], supported: &[Currency]) -> Result<Self, RequestError> {
        let fields = object_of(body)?;
        Ok(WalletRequest {
            player_id: text_field(&fields, "playerId")?,
            amount_minor: amount_field(&fields)?,
            currency: currency_field(&fields, supported)?,
            ref_id: ref_field(&fields, "refId")?,
            meta: meta_field(&fields)?,
            round: Round {
                id: optional_text_field(&fields, "roundId")?,
                closed: flag_field(&fields, "roundClosed")?,
            },
        })
    }

    /// What makes two requests "the same" for an Idempotency-Key: the operation and every
    /// field, independent of key order and whitespace.
    pub fn fingerprint(&self, kind: TransactionKind) -> String {
        fingerprint(
            kind.as_str(),
            &self.player_id,
            self.amount_minor,
            self.currency.code(),
            &self.ref_id,
            self.meta.as_deref(),
            &self.round,
        )
    }
}

impl RollbackRequest {
    pub fn parse(body: &[u8]) -> Result<Self, RequestError> {
        let fields = object_of(body)?;
        let request = RollbackRequest {
            player_id: text_field(&fields, "playerId")?,
            ref_id: ref_field(&fields, "refId")?,
            original_ref_id: ref_field(&fields, "originalRefId")?,
            round_id: optional_text_field(&fields, "roundId")?,
            meta: meta_field(&fields)?,
        };
        if request.ref_id == request.original_ref_id {
            return Err(invalid(
                "refId",
                "refId is the rollback's own and must differ from originalRefId",
            ));
        }
        Ok(request)
    }

    pub fn fingerprint(&self) -> String {
        rollback_fingerprint(
            &self.player_id,
            &self.ref_id,
            &self.original_ref_id,
            self.round_id.as_deref(),
            self.meta.as_deref(),
        )
    }
}

impl BalanceRequest {
    pub fn parse(body: &[u8], supported: &[Currency]) -> Result<Self, RequestError> {
        let fields = object_of(body)?;
        Ok(BalanceRequest {
            player_id: text_field(&fields, "playerId")?,
            currency: currency_field(&fields, supported)?,
        })
    }
}

/// What identifies a request for its Idempotency-Key: every field that decides what money
/// moves. Computable from a stored transaction too, whose columns hold exactly these.
pub fn fingerprint(
    kind: &str,
    player_id: &str,
    amount_minor: i64,
    currency: &str,
    ref_id: &str,
    meta: Option<&str>,
    round: &Round,
) -> String {
    let amount = amount_minor.to_string();
    let mut parts = vec![
        kind,
        player_id,
        &amount,
        currency,
        ref_id,
        meta.unwrap_or("null"),
    ];
    // Only a call that names a round hashes one, so keys stored before rounds existed still
    // match their replays.
    if round.id.is_some() || round.closed {
        parts.push(round.id.as_deref().unwrap_or("null"));
        parts.push(if round.closed { "closed" } else { "open" });
    }
    hash_parts(&parts)
}

/// What identifies a rollback request for its Idempotency-Key; computable from its row.
pub fn rollback_fingerprint(
    player_id: &str,
    ref_id: &str,
    original_ref_id: &str,
    round_id: Option<&str>,
    meta: Option<&str>,
) -> String {
    hash_parts(&[
        TransactionKind::Rollback.as_str(),
        player_id,
        ref_id,
        original_ref_id,
        round_id.unwrap_or("null"),
        meta.unwrap_or("null"),
    ])
}

/// Each part length-prefixed, so that no two lists of parts hash the same text.
fn hash_parts(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

type Fields = serde_json::Map<String, Value>;

fn text_field(fields: &Fields, name: &'static str) -> Result<String, RequestError> {
    match fields.get(name) {
        None | Some(Value::Null) => Err(invalid(name, format!("{name} is required"))),
        Some(Value::String(text)) if text.trim().is_empty() => {
            Err(invalid(name, format!("{name} must not be empty")))
        }
        Some(Value::String(text)) if text.chars().count() > MAX_TEXT_CHARS => Err(invalid(
            name,
            format!("{name} must be at most {MAX_TEXT_CHARS} characters"),
        )),
        Some(Value::String(text)) if text.chars().any(char::is_control) => Err(invalid(
            name,
            format!("{name} must not contain control characters"),
        )),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(invalid(name, format!("{name} must be a string"))),
    }
}

/// A client's refId, which may not use the prefix of the hub's own cancellations.
fn ref_field(fields: &Fields, name: &'static str) -> Result<String, RequestError> {
    let ref_id = text_field(fields, name)?;
    if ref_id.starts_with(HUB_CANCEL_PREFIX) {
        return Err(invalid(
            name,
            format!("{name}s starting with {HUB_CANCEL_PREFIX:?} are reserved for the hub"),
        ));
    }
    Ok(ref_id)
}

fn optional_text_field(
    fields: &Fields,
    name: &'static str,
) -> Result<Option<String>, RequestError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => text_field(fields, name).map(Some),
    }
}

fn flag_field(fields: &Fields, name: &'static str) -> Result<bool, RequestError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(flag)) => Ok(*flag),
        Some(_) => Err(invalid(name, format!("{name} must be true or false"))),
    }
}

fn amount_field(fields: &Fields) -> Result<i64, RequestError> {
    const NAME: &str = "amountCents";
    let number = match fields.get(NAME) {
        None | Some(Value::Null) => return Err(invalid(NAME, "amountCents is required")),
        Some(Value::Number(number)) => number,
        Some(_) => {
            return Err(invalid(
                NAME,
                "amountCents must be an integer number of minor units",
            ))
        }
    };
    match (number.as_i64(), number.as_u64()) {
        (Some(amount), _) if amount > 0 => Ok(amount),
        (Some(_), _) => Err(invalid(NAME, "amountCents must be greater than 0")),
        (None, Some(_)) => Err(invalid(
            NAME,
            format!("amountCents must be at most {}", i64::MAX),
        )),
        (None, None)
            if number
                .as_f64()
                .is_some_and(|f| f.fract() == 0.0 && f >= 1.0) =>
        {
            Err(invalid(
                NAME,
                format!("amountCents must be at most {}", i64::MAX),
            ))
        }
        (None, None) => Err(invalid(
            NAME,
            "amountCents must be an integer number of minor units",
        )),
    }
}

fn currency_field(fields: &Fields, supported: &[Currency]) -> Result<Currency, RequestError> {
    const NAME: &str = "currency";
    let code = match fields.get(NAME) {
        None | Some(Value::Null) => return Err(invalid(NAME, "currency is required")),
        Some(Value::String(code)) => code,
        Some(_) => return Err(invalid(NAME, "currency must be a string such as \"USD\"")),
    };
    supported
        .iter()
        .find(|currency| currency.code() == code)
        .copied()
        .ok_or_else(|| RequestError::UnsupportedCurrency {
            given: code.chars().take(16).collect(),
            allowed: supported.iter().map(Currency::code).collect(),
        })
}

fn meta_field(fields: &Fields) -> Result<Option<String>, RequestError> {
    match fields.get("meta") {
        None | Some(Value::Null) => Ok(None),
        Some(meta @ Value::Object(_)) => Ok(Some(canonical_json(meta))),
        Some(_) => Err(invalid("meta", "meta must be a JSON object")),
    }
}

/// JSON text with object keys sorted at every level, whatever map order serde_json uses.
pub fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let body: Vec<String> = entries
                .into_iter()
                .map(|(key, value)| {
                    format!("{}:{}", Value::String(key.clone()), canonical_json(value))
                })
                .collect();
            format!("{{{}}}", body.join(","))
        }
        Value::Array(items) => {
            let body: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", body.join(","))
        }
        scalar => scalar.to_string(),
    }
}

/// The client's `Idempotency-Key`: 1 to 255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyKeyError {
    #[error("the Idempotency-Key header is required")]
    Missing,
    #[error("the Idempotency-Key header must be 1 to 255 printable ASCII characters")]
    Invalid,
    #[error("Idempotency-Keys starting with {HUB_CANCEL_PREFIX:?} are reserved for the hub")]
    Reserved,
}

/// What the keys and refIds of the hub's own cancellations start with; no client may use it,
/// so that nobody can take such a key or refId before the hub needs it.
pub const HUB_CANCEL_PREFIX: &str = "hub-cancel:";

impl IdempotencyKey {
    pub fn parse(header: Option<&[u8]>) -> Result<Self, IdempotencyKeyError> {
        let bytes = header.ok_or(IdempotencyKeyError::Missing)?;
        let printable = bytes.iter().all(|b| (0x20..0x7f).contains(b));
        let text = std::str::from_utf8(bytes).map_err(|_| IdempotencyKeyError::Invalid)?;
        if text.trim().is_empty() || bytes.len() > 255 || !printable {
            return Err(IdempotencyKeyError::Invalid);
        }
        if text.starts_with(HUB_CANCEL_PREFIX) {
            return Err(IdempotencyKeyError::Reserved);
        }
        Ok(IdempotencyKey(text.to_owned()))
    }

    /// The key of the hub's own cancellation of the debit `transaction_id`.
    pub fn for_hub_cancellation(transaction_id: &str) -> Self {
        IdempotencyKey(format!("{HUB_CANCEL_PREFIX}{transaction_id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supported() -> Vec<Currency> {
        ["USD", "EUR", "GBP"]
            .iter()
            .map(|c| Currency::from_iso_code(c).unwrap())
            .collect()
    }

    fn parse(body: &str) -> Result<WalletRequest, RequestError> {
        WalletRequest::parse(body.as_bytes(), &supported())
    }

    fn field_of(body: &str) -> &'static str {
        match parse(body) {
            Err(RequestError::Invalid { field, .. }) => field,
            other => panic!("expected a field error for {body}, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_complete_request() {
        let request = parse(r#"{"playerId":"p1","amountCents":1000,"currency":"USD","refId":"r1","meta":{"b":1,"a":[2]}}"#).unwrap();
        assert_eq!(request.player_id, "p1");
        assert_eq!(request.amount_minor, 1000);
        assert_eq!(request.currency.code(), "USD");
        assert_eq!(request.meta.as_deref(), Some(r#"{"a":[2],"b":1}"#));
    }

    #[test]
    fn names_the_field_at_fault() {
        let cases = [
            ("not json", "body"),
            ("[1]", "body"),
            (
                r#"{"amountCents":1,"currency":"USD","refId":"r"}"#,
                "playerId",
            ),
            (
                r#"{"playerId":"","amountCents":1,"currency":"USD","refId":"r"}"#,
                "playerId",
            ),
            (
                r#"{"playerId":7,"amountCents":1,"currency":"USD","refId":"r"}"#,
                "playerId",
            ),
            (
                r#"{"playerId":"p","amountCents":0,"currency":"USD","refId":"r"}"#,
                "amountCents",
            ),
            (
                r#"{"playerId":"p","amountCents":-5,"currency":"USD","refId":"r"}"#,
                "amountCents",
            ),
            (
                r#"{"playerId":"p","amountCents":1.5,"currency":"USD","refId":"r"}"#,
                "amountCents",
            ),
            (
                r#"{"playerId":"p","amountCents":"100","currency":"USD","refId":"r"}"#,
                "amountCents",
            ),
            (
                r#"{"playerId":"p","amountCents":9223372036854775808,"currency":"USD","refId":"r"}"#,
                "amountCents",
            ),
            (
                r#"{"playerId":"p","amountCents":1e30,"currency":"USD","refId":"r"}"#,
                "amountCents",
            ),
            (
                r#"{"playerId":"p","amountCents":1,"currency":5,"refId":"r"}"#,
                "currency",
            ),
            (
                r#"{"playerId":"p","amountCents":1,"currency":"USD"}"#,
                "refId",
            ),
            (
                r#"{"playerId":"p","amountCents":1,"currency":"USD","refId":"r","meta":"x"}"#,
                "meta",
            ),
            (
                r#"{"playerId":"p","amountCents":1,"currency":"USD","refId":"hub-cancel:x"}"#,
                "refId",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(field_of(body), field, "{body}");
        }
    }

    #[test]
    fn unsupported_currency_lists_the_allowed_ones() {
        let error =
            parse(r#"{"playerId":"p","amountCents":1,"currency":"TRY","refId":"r"}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            "currency \"TRY\" is not supported; use one of USD, EUR, GBP"
        );
    }

    #[test]
    fn fingerprint_ignores_key_order_but_not_values_or_kind() {
        let a = parse(
            r#"{"playerId":"p","amountCents":1,"currency":"USD","refId":"r","meta":{"x":1,"y":2}}"#,
        )
        .unwrap();
        let b = parse(
            r#"{"meta":{"y":2,"x":1},"refId":"r","currency":"USD","amountCents":1,"playerId":"p"}"#,
        )
        .unwrap();
        let c = parse(
            r#"{"playerId":"p","amountCents":2,"currency":"USD","refId":"r","meta":{"x":1,"y":2}}"#,
        )
        .unwrap();
        assert_eq!(
            a.fingerprint(TransactionKind::Debit),
            b.fingerprint(TransactionKind::Debit)
        );
        assert_ne!(
            a.fingerprint(TransactionKind::Debit),
            c.fingerprint(TransactionKind::Debit)
        );
        assert_ne!(
            a.fingerprint(TransactionKind::Debit),
            a.fingerprint(TransactionKind::Credit)
        );
    }

    #[test]
    fn idempotency_keys_are_printable_and_bounded() {
        assert!(IdempotencyKey::parse(Some(b"abc-123")).is_ok());
        assert_eq!(
            IdempotencyKey::parse(None),
            Err(IdempotencyKeyError::Missing)
        );
        assert_eq!(
            IdempotencyKey::parse(Some(b"")),
            Err(IdempotencyKeyError::Invalid)
        );
        assert_eq!(
            IdempotencyKey::parse(Some(b"a\tb")),
            Err(IdempotencyKeyError::Invalid)
        );
        assert_eq!(
            IdempotencyKey::parse(Some(&[b'k'; 256])),
            Err(IdempotencyKeyError::Invalid)
        );
        assert!(IdempotencyKey::parse(Some(&[b'k'; 255])).is_ok());
        assert_eq!(
            IdempotencyKey::parse(Some(b"hub-cancel:0192")),
            Err(IdempotencyKeyError::Reserved)
        );
    }
}
