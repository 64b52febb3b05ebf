//! What one transaction id says about the two ledgers: the findings, compared field by field.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::Currency;
use crate::operator::listing::OperatorTransaction;
use crate::store::transactions::{self, TransactionRow};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Category {
    MissingInOperator,
    MissingInHub,
    AmountMismatch,
    StatusMismatch,
    CurrencyMismatch,
    TypeMismatch,
    PlayerMismatch,
    /// Not a mismatch: the hub is still waiting for the operator's decision.
    PendingInHub,
}

impl Category {
    pub const ALL: [Category; 8] = [
        Category::MissingInOperator,
        Category::MissingInHub,
        Category::AmountMismatch,
        Category::StatusMismatch,
        Category::CurrencyMismatch,
        Category::TypeMismatch,
        Category::PlayerMismatch,
        Category::PendingInHub,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Category::MissingInOperator => "MISSING_IN_OPERATOR",
            Category::MissingInHub => "MISSING_IN_HUB",
            Category::AmountMismatch => "AMOUNT_MISMATCH",
            Category::StatusMismatch => "STATUS_MISMATCH",
            Category::CurrencyMismatch => "CURRENCY_MISMATCH",
            Category::TypeMismatch => "TYPE_MISMATCH",
            Category::PlayerMismatch => "PLAYER_MISMATCH",
            Category::PendingInHub => "PENDING_IN_HUB",
        }
    }
}

/// One row of the detail report: a category, and both sides as far as they exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Finding {
    pub category: Category,
    /// Whether this finding makes the run fail (a young `PENDING_IN_HUB` does not).
    pub counts_as_failure: bool,
    pub transaction_id: String,
    pub ref_id: Option<String>,
    pub hub_player_id: Option<String>,
    pub operator_player_id: Option<String>,
    pub hub_type: Option<String>,
    pub operator_type: Option<String>,
    pub hub_amount_cents: Option<i64>,
    pub operator_amount_cents: Option<i64>,
    pub hub_currency: Option<String>,
    pub operator_currency: Option<String>,
    pub hub_status: Option<String>,
    pub operator_status: Option<String>,
    pub hub_created_at: Option<DateTime<Utc>>,
    pub operator_created_at: Option<DateTime<Utc>>,
}

impl Finding {
    pub fn new(
        category: Category,
        hub: Option<&TransactionRow>,
        operator: Option<&OperatorTransaction>,
    ) -> Self {
        Finding {
            category,
            counts_as_failure: true,
            transaction_id: hub
                .map(|h| h.id.clone())
                .or_else(|| operator.map(|o| o.transaction_id.clone()))
                .unwrap_or_default(),
            ref_id: hub.map(|h| h.ref_id.clone()),
            hub_player_id: hub.map(|h| h.player_id.clone()),
            operator_player_id: operator.map(|o| o.player_id.clone()),
            hub_type: hub.map(|h| h.kind.clone()),
            operator_type: operator.map(|o| o.kind.clone()),
            hub_amount_cents: hub.map(|h| h.amount_cents),
            operator_amount_cents: operator.and_then(operator_amount_minor),
            hub_currency: hub.map(|h| h.currency.clone()),
            operator_currency: operator.map(|o| o.currency.clone()),
            hub_status: hub.map(|h| h.status.clone()),
            operator_status: operator.map(|o| o.status.clone()),
            hub_created_at: hub.map(|h| h.created_at.and_utc()),
            operator_created_at: operator.map(|o| o.created_at),
        }
    }
}

/// The operator's amount in minor units of its own currency; `None` if it is not exact.
pub fn operator_amount_minor(operator: &OperatorTransaction) -> Option<i64> {
    Currency::from_iso_code(&operator.currency)?
        .from_major_text(&operator.amount)
        .ok()
}

/// Every way the two records of one transaction disagree. A hub transaction still
/// `PENDING` is reported as such instead of as a status mismatch.
pub fn disagreements(hub: &TransactionRow, operator: &OperatorTransaction) -> Vec<Category> {
    let mut found = Vec::new();
    if operator_amount_minor(operator) != Some(hub.amount_cents) {
        found.push(Category::AmountMismatch);
    }
    if hub.currency != operator.currency {
        found.push(Category::CurrencyMismatch);
    }
    let same_type = matches!(
        (hub.kind.as_str(), operator.kind.as_str()),
        ("DEBIT", "WITHDRAW") | ("CREDIT", "DEPOSIT")
    );
    if !same_type {
        found.push(Category::TypeMismatch);
    }
    if hub.player_id != operator.player_id {
        found.push(Category::PlayerMismatch);
    }
    let operator_succeeded = operator.status == "SUCCESS";
    match hub.status.as_str() {
        transactions::PENDING => found.push(Category::PendingInHub),
        transactions::COMPLETED if operator_succeeded => {}
        transactions::REJECTED if !operator_succeeded => {}
        _ => found.push(Category::StatusMismatch),
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(status: &str) -> TransactionRow {
        let at = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap();
        TransactionRow {
            id: "t1".into(),
            idempotency_key: "k".into(),
            ref_id: "r".into(),
            player_id: "player-001".into(),
            kind: "DEBIT".into(),
            amount_cents: 1050,
            currency: "USD".into(),
            status: status.into(),
            reason: None,
            balance_cents: None,
            operator_reference: None,
            meta: None,
            correlation_id: None,
            created_at: at,
            updated_at: at,
            recovery_attempts: 0,
            next_recovery_at: None,
            review_since: None,
            round_id: None,
            round_closed: false,
            original_ref_id: None,
            original_transaction_id: None,
        }
    }

    fn operator(status: &str) -> OperatorTransaction {
        OperatorTransaction {
            transaction_id: "t1".into(),
            player_id: "player-001".into(),
            kind: "WITHDRAW".into(),
            amount: "10.50".into(),
            currency: "USD".into(),
            status: status.into(),
            created_at: Utc::now(),
            original_transaction_id: None,
            refunded: None,
            refunded_amount: None,
        }
    }

    #[test]
    fn agreeing_records_have_no_disagreements() {
        assert!(disagreements(&hub("COMPLETED"), &operator("SUCCESS")).is_empty());
        assert!(disagreements(&hub("REJECTED"), &operator("INSUFFICIENT_FUNDS")).is_empty());
        let mut exact = operator("SUCCESS");
        exact.amount = "10.500".into();
        assert!(
            disagreements(&hub("COMPLETED"), &exact).is_empty(),
            "trailing zeros are the same amount"
        );
    }

    #[test]
    fn each_field_is_its_own_category() {
        type Change = fn(&mut OperatorTransaction);
        let cases: [(Change, Category); 5] = [
            (|o| o.amount = "10.51".into(), Category::AmountMismatch),
            (
                |o| o.player_id = "player-002".into(),
                Category::PlayerMismatch,
            ),
            (|o| o.kind = "DEPOSIT".into(), Category::TypeMismatch),
            (|o| o.status = "FAILED".into(), Category::StatusMismatch),
            (|o| o.amount = "ten".into(), Category::AmountMismatch),
        ];
        for (change, category) in cases {
            let mut drifted = operator("SUCCESS");
            change(&mut drifted);
            assert_eq!(disagreements(&hub("COMPLETED"), &drifted), [category]);
        }
        let mut euros = operator("SUCCESS");
        euros.currency = "EUR".into();
        assert_eq!(
            disagreements(&hub("COMPLETED"), &euros),
            [Category::CurrencyMismatch]
        );
    }

    #[test]
    fn a_pending_hub_transaction_is_not_a_status_mismatch() {
        assert_eq!(
            disagreements(&hub("PENDING"), &operator("SUCCESS")),
            [Category::PendingInHub]
        );
    }
}
