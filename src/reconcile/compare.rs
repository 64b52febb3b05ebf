//! What one transaction id says about the two ledgers: the findings, compared field by field,
//! and the rules that tie a rollback to the debit it cancels.
//!
//! Rollbacks (DESIGN §8) are matched like any transaction, by their own id, and also checked
//! against the debit they name:
//!
//! - a hub `ROLLBACK` that called the operator agrees with the operator's `ROLLBACK` of the
//!   same id when that one is `SUCCESS` and names the same original, player, currency and
//!   amount (the debit's);
//! - a hub `ROLLBACK` recorded without an operator call (reason `ORIGINAL_REJECTED` or
//!   `ORIGINAL_UNKNOWN`) is not expected at the operator, and is no finding by itself;
//! - a debit `ROLLED_BACK` agrees with the operator's withdraw when that is absent, not
//!   `SUCCESS` (`CANCELLED`, a refusal), or `SUCCESS` and refunded by an operator rollback;
//!   charged and never refunded, it is [`Category::ChargedButRolledBack`];
//! - an operator rollback that refunded a debit the hub holds as `COMPLETED` (with no
//!   rollback of its own under way) is [`Category::RefundedButCompleted`].

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::Currency;
use crate::operator::listing::{self, OperatorTransaction};
use crate::store::transactions::{self, TransactionRow};
use crate::wallet::rollback::{ORIGINAL_REJECTED, ORIGINAL_UNKNOWN};

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
    /// A rollback that names another original transaction on each side.
    OriginalMismatch,
    /// The hub rolled the debit back, but the operator charged it and never refunded it:
    /// the player lost the stake.
    ChargedButRolledBack,
    /// The operator refunded a debit on its own (a rollback the hub never sent), while the
    /// hub still holds it as completed: the player got the stake back, the hub counts it won.
    RefundedButCompleted,
    /// Not a mismatch: the hub is still waiting for the operator's decision.
    PendingInHub,
}

impl Category {
    pub const ALL: [Category; 11] = [
        Category::MissingInOperator,
        Category::MissingInHub,
        Category::AmountMismatch,
        Category::StatusMismatch,
        Category::CurrencyMismatch,
        Category::TypeMismatch,
        Category::PlayerMismatch,
        Category::OriginalMismatch,
        Category::ChargedButRolledBack,
        Category::RefundedButCompleted,
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
            Category::OriginalMismatch => "ORIGINAL_MISMATCH",
            Category::ChargedButRolledBack => "CHARGED_BUT_ROLLED_BACK",
            Category::RefundedButCompleted => "REFUNDED_BUT_COMPLETED",
            Category::PendingInHub => "PENDING_IN_HUB",
        }
    }
}

/// One row of the detail report: a category, and both sides as far as they exist. For
/// `REFUNDED_BUT_COMPLETED` the hub side is the debit and the operator side the rollback
/// that refunded it; for `CHARGED_BUT_ROLLED_BACK`, the debit and its withdraw.
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
    // Added with rollbacks; after the others, so that earlier columns keep their places.
    /// The hub's round, if the game server named one.
    pub round_id: Option<String>,
    /// A rollback's: the debit it cancels, as the hub and as the operator record it.
    pub hub_original_transaction_id: Option<String>,
    pub operator_original_transaction_id: Option<String>,
    /// An operator rollback's: whether it gave money back, and how much.
    pub operator_refunded: Option<bool>,
    pub operator_refunded_amount_cents: Option<i64>,
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
            round_id: hub.and_then(|h| h.round_id.clone()),
            hub_original_transaction_id: hub.and_then(|h| h.original_transaction_id.clone()),
            operator_original_transaction_id: operator
                .and_then(|o| o.original_transaction_id.clone()),
            operator_refunded: operator.and_then(|o| o.refunded),
            operator_refunded_amount_cents: operator.and_then(operator_refunded_minor),
        }
    }
}

/// `text`, an amount in `currency`, as minor units; `None` if it is not exact.
fn minor_units(currency: &str, text: &str) -> Option<i64> {
    Currency::from_iso_code(currency)?
        .from_major_text(text)
        .ok()
}

/// The operator's amount in minor units of its own currency; `None` if it is not exact.
pub fn operator_amount_minor(operator: &OperatorTransaction) -> Option<i64> {
    minor_units(&operator.currency, &operator.amount)
}

/// What an operator rollback gave back, in minor units; `None` if absent or not exact.
pub fn operator_refunded_minor(operator: &OperatorTransaction) -> Option<i64> {
    minor_units(&operator.currency, operator.refunded_amount.as_deref()?)
}

/// False for a rollback the hub recorded without calling the operator, because nothing had
/// moved (its debit was rejected) or the debit was never seen (a tombstone): the operator
/// has no record of it, and that is correct.
pub fn sent_to_operator(hub: &TransactionRow) -> bool {
    let recorded_only = matches!(
        hub.reason.as_deref(),
        Some(ORIGINAL_REJECTED | ORIGINAL_UNKNOWN)
    );
    !(hub.kind == ROLLBACK && recorded_only)
}

const ROLLBACK: &str = "ROLLBACK";

/// What a hub transaction absent from the operator's listing means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubAlone {
    /// A finding (`MISSING_IN_OPERATOR`, or `PENDING_IN_HUB`).
    Finding(Category),
    /// Rejected: no money moved, and the operator may never have recorded the refusal.
    Rejected,
    /// A debit rolled back before its withdraw reached the operator: never applied.
    RolledBack,
    /// A rollback recorded without an operator call.
    NotSent,
}

pub fn hub_alone(hub: &TransactionRow) -> HubAlone {
    if !sent_to_operator(hub) {
        return HubAlone::NotSent;
    }
    match hub.status.as_str() {
        transactions::PENDING => HubAlone::Finding(Category::PendingInHub),
        transactions::REJECTED => HubAlone::Rejected,
        transactions::ROLLED_BACK => HubAlone::RolledBack,
        _ => HubAlone::Finding(Category::MissingInOperator),
    }
}

/// Every way the two records of one transaction id disagree. A hub transaction still
/// `PENDING` is reported as such instead of as a status mismatch. `refunded`: whether an
/// operator rollback is known to have refunded this transaction; without it a `ROLLED_BACK`
/// debit the operator charged is `CHARGED_BUT_ROLLED_BACK`.
pub fn disagreements(
    hub: &TransactionRow,
    operator: &OperatorTransaction,
    refunded: bool,
) -> Vec<Category> {
    if !sent_to_operator(hub) {
        // The hub never sent it, yet the operator holds this id: nothing here is expected.
        return vec![Category::StatusMismatch];
    }
    let mut found = Vec::new();
    if operator_amount_minor(operator) != Some(hub.amount_cents) {
        found.push(Category::AmountMismatch);
    }
    if hub.currency != operator.currency {
        found.push(Category::CurrencyMismatch);
    }
    let same_type = matches!(
        (hub.kind.as_str(), operator.kind.as_str()),
        ("DEBIT", listing::WITHDRAW) | ("CREDIT", listing::DEPOSIT) | (ROLLBACK, listing::ROLLBACK)
    );
    if !same_type {
        found.push(Category::TypeMismatch);
    }
    if hub.player_id != operator.player_id {
        found.push(Category::PlayerMismatch);
    }
    let names_an_original = hub.kind == ROLLBACK || operator.original_transaction_id.is_some();
    if names_an_original && hub.original_transaction_id != operator.original_transaction_id {
        found.push(Category::OriginalMismatch);
    }
    let operator_succeeded = operator.status == listing::SUCCESS;
    match hub.status.as_str() {
        transactions::PENDING => found.push(Category::PendingInHub),
        transactions::COMPLETED if operator_succeeded => {}
        transactions::REJECTED if !operator_succeeded => {}
        // Cancelled before it was charged (CANCELLED, a refusal), or charged and refunded.
        transactions::ROLLED_BACK if !operator_succeeded || refunded => {}
        transactions::ROLLED_BACK => found.push(Category::ChargedButRolledBack),
        _ => found.push(Category::StatusMismatch),
    }
    found
}

/// What an operator rollback that refunded `original` (looked up in the hub by id) says
/// about the hub's record of it. `hub_rollback_pending`: the hub's own rollback of that debit
/// is still waiting for the operator, and will mark it `ROLLED_BACK` when it settles.
pub fn refund_against_hub(
    original: Option<&TransactionRow>,
    hub_rollback_pending: bool,
) -> Option<Category> {
    let original = original?;
    let completed_debit = original.kind == "DEBIT" && original.status == transactions::COMPLETED;
    (completed_debit && !hub_rollback_pending).then_some(Category::RefundedButCompleted)
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

    /// The hub's rollback of debit `t1`, as recorded when it called the operator.
    fn hub_rollback(status: &str) -> TransactionRow {
        TransactionRow {
            id: "r1".into(),
            ref_id: "rollback-r".into(),
            kind: "ROLLBACK".into(),
            original_ref_id: Some("r".into()),
            original_transaction_id: Some("t1".into()),
            ..hub(status)
        }
    }

    /// The operator's record of that rollback.
    fn operator_rollback(refunded: bool) -> OperatorTransaction {
        OperatorTransaction {
            transaction_id: "r1".into(),
            kind: "ROLLBACK".into(),
            original_transaction_id: Some("t1".into()),
            refunded: Some(refunded),
            refunded_amount: Some(if refunded { "10.50" } else { "0" }.into()),
            ..operator("SUCCESS")
        }
    }

    fn rolled_back_debit() -> TransactionRow {
        hub("ROLLED_BACK")
    }

    #[test]
    fn agreeing_records_have_no_disagreements() {
        assert!(disagreements(&hub("COMPLETED"), &operator("SUCCESS"), false).is_empty());
        assert!(disagreements(&hub("REJECTED"), &operator("INSUFFICIENT_FUNDS"), false).is_empty());
        let mut exact = operator("SUCCESS");
        exact.amount = "10.500".into();
        assert!(
            disagreements(&hub("COMPLETED"), &exact, false).is_empty(),
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
            assert_eq!(
                disagreements(&hub("COMPLETED"), &drifted, false),
                [category]
            );
        }
        let mut euros = operator("SUCCESS");
        euros.currency = "EUR".into();
        assert_eq!(
            disagreements(&hub("COMPLETED"), &euros, false),
            [Category::CurrencyMismatch]
        );
    }

    #[test]
    fn a_pending_hub_transaction_is_not_a_status_mismatch() {
        assert_eq!(
            disagreements(&hub("PENDING"), &operator("SUCCESS"), false),
            [Category::PendingInHub]
        );
        assert_eq!(
            disagreements(&hub_rollback("PENDING"), &operator_rollback(true), false),
            [Category::PendingInHub]
        );
        assert_eq!(
            hub_alone(&hub_rollback("PENDING")),
            HubAlone::Finding(Category::PendingInHub)
        );
    }

    #[test]
    fn a_withdraw_cancelled_by_a_rollback_agrees_with_a_rejected_debit() {
        assert!(disagreements(&hub("REJECTED"), &operator("CANCELLED"), false).is_empty());
        assert_eq!(
            disagreements(&hub("COMPLETED"), &operator("CANCELLED"), false),
            [Category::StatusMismatch]
        );
    }

    #[test]
    fn a_rollback_agrees_when_the_operator_settled_the_same_one() {
        for refunded in [true, false] {
            assert!(
                disagreements(
                    &hub_rollback("COMPLETED"),
                    &operator_rollback(refunded),
                    false
                )
                .is_empty(),
                "refunded or not, the operator settled it"
            );
        }
        assert_eq!(
            hub_alone(&hub_rollback("COMPLETED")),
            HubAlone::Finding(Category::MissingInOperator)
        );
    }

    #[test]
    fn each_field_of_a_rollback_is_its_own_category() {
        type Change = fn(&mut OperatorTransaction);
        let cases: [(Change, Category); 6] = [
            (
                |o| o.original_transaction_id = Some("t2".into()),
                Category::OriginalMismatch,
            ),
            (
                |o| o.original_transaction_id = None,
                Category::OriginalMismatch,
            ),
            (|o| o.amount = "1.00".into(), Category::AmountMismatch),
            (
                |o| o.player_id = "player-002".into(),
                Category::PlayerMismatch,
            ),
            (|o| o.status = "FAILED".into(), Category::StatusMismatch),
            (|o| o.kind = "WITHDRAW".into(), Category::TypeMismatch),
        ];
        for (change, category) in cases {
            let mut drifted = operator_rollback(true);
            change(&mut drifted);
            assert_eq!(
                disagreements(&hub_rollback("COMPLETED"), &drifted, false),
                [category],
                "{drifted:?}"
            );
        }
    }

    #[test]
    fn a_rollback_recorded_without_the_operator_is_expected_only_at_the_hub() {
        for reason in [ORIGINAL_REJECTED, ORIGINAL_UNKNOWN] {
            let recorded = TransactionRow {
                reason: Some(reason.into()),
                ..hub_rollback("COMPLETED")
            };
            assert!(!sent_to_operator(&recorded));
            assert_eq!(hub_alone(&recorded), HubAlone::NotSent);
            assert_eq!(
                disagreements(&recorded, &operator_rollback(false), false),
                [Category::StatusMismatch],
                "the operator holds an id the hub never sent"
            );
        }
        let tombstone = TransactionRow {
            reason: Some(ORIGINAL_UNKNOWN.into()),
            amount_cents: 0,
            currency: String::new(),
            original_transaction_id: None,
            ..hub_rollback("COMPLETED")
        };
        assert_eq!(hub_alone(&tombstone), HubAlone::NotSent);
        assert!(
            sent_to_operator(&hub("REJECTED")),
            "only rollbacks are recorded only"
        );
    }

    #[test]
    fn a_rolled_back_debit_agrees_unless_it_was_charged_and_never_refunded() {
        let debit = rolled_back_debit();
        assert_eq!(
            hub_alone(&debit),
            HubAlone::RolledBack,
            "never reached the operator"
        );
        for status in ["CANCELLED", "INSUFFICIENT_FUNDS", "FAILED"] {
            assert!(
                disagreements(&debit, &operator(status), false).is_empty(),
                "{status}: nothing was charged"
            );
        }
        assert!(disagreements(&debit, &operator("SUCCESS"), true).is_empty());
        assert_eq!(
            disagreements(&debit, &operator("SUCCESS"), false),
            [Category::ChargedButRolledBack]
        );
        let mut drifted = operator("SUCCESS");
        drifted.amount = "10.51".into();
        assert_eq!(
            disagreements(&debit, &drifted, true),
            [Category::AmountMismatch],
            "fields are compared as for any debit"
        );
    }

    #[test]
    fn a_refund_the_hub_never_asked_for_contradicts_only_a_completed_debit() {
        let completed = hub("COMPLETED");
        assert_eq!(
            refund_against_hub(Some(&completed), false),
            Some(Category::RefundedButCompleted)
        );
        assert_eq!(
            refund_against_hub(Some(&completed), true),
            None,
            "the hub's own rollback is under way"
        );
        for agreeing in [rolled_back_debit(), hub("PENDING"), hub("REJECTED")] {
            assert_eq!(
                refund_against_hub(Some(&agreeing), false),
                None,
                "{}",
                agreeing.status
            );
        }
        assert_eq!(
            refund_against_hub(None, false),
            None,
            "unknown: MISSING_IN_HUB says it"
        );
    }

    #[test]
    fn refunded_amounts_are_exact_minor_units() {
        let mut refund = operator_rollback(true);
        assert_eq!(operator_refunded_minor(&refund), Some(1050));
        refund.refunded_amount = Some("10.505".into());
        assert_eq!(operator_refunded_minor(&refund), None, "not exact in USD");
        refund.refunded_amount = None;
        assert_eq!(operator_refunded_minor(&refund), None);
        let finding = Finding::new(Category::MissingInHub, None, Some(&operator_rollback(true)));
        assert_eq!(
            finding.operator_original_transaction_id.as_deref(),
            Some("t1")
        );
        assert_eq!(finding.operator_refunded, Some(true));
        assert_eq!(finding.operator_refunded_amount_cents, Some(1050));
    }
}
