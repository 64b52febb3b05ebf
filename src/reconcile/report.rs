//! The report: a detail file (CSV or JSON, one entry per finding, written as findings arrive)
//! and a summary. Both are written under `.partial` names and renamed only once the whole
//! window was compared, so no file ever claims a result that was not checked.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

use super::compare::{
    operator_amount_minor, operator_refunded_minor, sent_to_operator, Category, Finding,
};
use crate::domain::Currency;
use crate::operator::listing::{self, OperatorTransaction};
use crate::store::transactions::{self, TransactionRow};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DetailFormat {
    Csv,
    Json,
}

/// Column order of the CSV, matching [`Finding`]'s fields.
const CSV_HEADER: [&str; 21] = [
    "category",
    "counts_as_failure",
    "transaction_id",
    "ref_id",
    "hub_player_id",
    "operator_player_id",
    "hub_type",
    "operator_type",
    "hub_amount_cents",
    "operator_amount_cents",
    "hub_currency",
    "operator_currency",
    "hub_status",
    "operator_status",
    "hub_created_at",
    "operator_created_at",
    "round_id",
    "hub_original_transaction_id",
    "operator_original_transaction_id",
    "operator_refunded",
    "operator_refunded_amount_cents",
];

pub enum DetailWriter {
    Csv(Box<csv::Writer<BufWriter<File>>>),
    Json { out: BufWriter<File>, first: bool },
}

impl DetailWriter {
    pub fn create(path: &Path, format: DetailFormat) -> std::io::Result<Self> {
        let file = BufWriter::new(File::create(path)?);
        match format {
            DetailFormat::Csv => {
                let mut writer = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(file);
                writer.write_record(CSV_HEADER)?;
                Ok(DetailWriter::Csv(Box::new(writer)))
            }
            DetailFormat::Json => {
                let mut out = file;
                out.write_all(b"[")?;
                Ok(DetailWriter::Json { out, first: true })
            }
        }
    }

    pub fn write(&mut self, finding: &Finding) -> std::io::Result<()> {
        match self {
            DetailWriter::Csv(writer) => writer
                .serialize(spreadsheet_safe(finding))
                .map_err(std::io::Error::other),
            DetailWriter::Json { out, first } => {
                out.write_all(if *first { b"\n  " } else { b",\n  " })?;
                *first = false;
                serde_json::to_writer(&mut *out, finding).map_err(std::io::Error::other)
            }
        }
    }

    pub fn finish(self) -> std::io::Result<()> {
        match self {
            DetailWriter::Csv(mut writer) => writer.flush(),
            DetailWriter::Json { mut out, .. } => {
                out.write_all(b"\n]\n")?;
                out.flush()
            }
        }
    }
}

/// The two report files of one run, first under `.partial` names.
pub struct ReportFiles {
    pub detail: PathBuf,
    pub summary: PathBuf,
}

impl ReportFiles {
    pub fn for_run(dir: &Path, run_at: DateTime<Utc>, format: DetailFormat) -> Self {
        let stem = format!("reconciliation-{}", run_at.format("%Y%m%dT%H%M%S%.3fZ"));
        let extension = match format {
            DetailFormat::Csv => "csv",
            DetailFormat::Json => "json",
        };
        Self {
            detail: dir.join(format!("{stem}.{extension}")),
            summary: dir.join(format!("{stem}-summary.txt")),
        }
    }

    pub fn partial(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".partial");
        PathBuf::from(name)
    }

    /// Gives both files their final names.
    pub fn publish(&self) -> std::io::Result<()> {
        std::fs::rename(Self::partial(&self.detail), &self.detail)?;
        std::fs::rename(Self::partial(&self.summary), &self.summary)
    }

    /// Removes whatever an unfinished run wrote.
    pub fn discard(&self) {
        let _ = std::fs::remove_file(Self::partial(&self.detail));
        let _ = std::fs::remove_file(Self::partial(&self.summary));
    }
}

/// Running counts of one reconciliation.
#[derive(Debug, Default)]
pub struct Tally {
    pub hub_compared: u64,
    pub operator_compared: u64,
    pub matched: u64,
    pub findings: BTreeMap<Category, u64>,
    pub failing: u64,
    pub pending_in_grace: u64,
    /// Rejected by the hub and absent from the operator's listing: no money moved.
    pub rejected_unknown_to_operator: u64,
    /// Debits rolled back by the hub and absent from the operator's listing: never applied.
    pub rolled_back_unknown_to_operator: u64,
    /// Rollbacks the hub recorded without calling the operator (their debit was rejected, or
    /// never seen), absent from the operator's listing as they should be.
    pub rollbacks_not_sent: u64,
    /// (side, currency, DEBIT|CREDIT|ROLLBACK|REFUNDED|OTHER) → (count, sum of minor units),
    /// settled money only.
    totals: BTreeMap<(&'static str, String, &'static str), (u64, i128)>,
}

impl Tally {
    fn add_total(&mut self, key: (&'static str, String, &'static str), minor: i64) {
        let total = self.totals.entry(key).or_default();
        total.0 += 1;
        total.1 += i128::from(minor);
    }

    pub fn count_hub(&mut self, hub: &TransactionRow) {
        self.hub_compared += 1;
        // A rollback recorded without the operator moved nothing (and has no currency).
        if hub.status == transactions::COMPLETED && sent_to_operator(hub) {
            let kind = match hub.kind.as_str() {
                "CREDIT" => "CREDIT",
                "ROLLBACK" => "ROLLBACK",
                _ => "DEBIT",
            };
            self.add_total(("hub", hub.currency.clone(), kind), hub.amount_cents);
        }
    }

    pub fn count_operator(&mut self, operator: &OperatorTransaction) {
        self.operator_compared += 1;
        if operator.status == listing::SUCCESS {
            let kind = match operator.kind.as_str() {
                listing::WITHDRAW => "DEBIT",
                listing::DEPOSIT => "CREDIT",
                listing::ROLLBACK => "ROLLBACK",
                _ => "OTHER",
            };
            let currency = operator.currency.clone();
            let amount = operator_amount_minor(operator).unwrap_or(0);
            self.add_total(("operator", currency.clone(), kind), amount);
            if operator.refund_of().is_some() {
                let refunded = operator_refunded_minor(operator).unwrap_or(0);
                self.add_total(("operator", currency, "REFUNDED"), refunded);
            }
        }
    }

    pub fn count_finding(&mut self, finding: &Finding) {
        *self.findings.entry(finding.category).or_default() += 1;
        if finding.counts_as_failure {
            self.failing += 1;
        } else {
            self.pending_in_grace += 1;
        }
    }

    pub fn passed(&self) -> bool {
        self.failing == 0
    }
}

pub struct SummaryContext<'a> {
    pub from: NaiveDateTime,
    pub to: NaiveDateTime,
    pub run_at: DateTime<Utc>,
    pub took: Duration,
    pub pending_grace: Duration,
    pub detail: &'a Path,
}

fn instant(at: NaiveDateTime) -> String {
    at.and_utc().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn amount(currency: &str, minor: i128) -> String {
    match (Currency::from_iso_code(currency), i64::try_from(minor)) {
        (Some(currency), Ok(minor)) => currency.to_major_text(minor),
        _ => format!("{minor} minor units"),
    }
}

pub fn render(tally: &Tally, context: &SummaryContext) -> String {
    let mut out = String::new();
    let verdict = if tally.passed() {
        "PASS: hub and operator agree"
    } else {
        "FAIL: hub and operator disagree"
    };
    out.push_str(&format!("hub reconcile: {verdict}\n\n"));
    out.push_str(&format!(
        "window     {} .. {} (UTC, inclusive)\n",
        instant(context.from),
        instant(context.to)
    ));
    out.push_str(&format!(
        "ran at     {}, took {:.3} s\n",
        context.run_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        context.took.as_secs_f64()
    ));
    out.push_str(&format!(
        "compared   {} hub and {} operator transactions; {} matched\n",
        tally.hub_compared, tally.operator_compared, tally.matched
    ));
    out.push_str(&format!(
        "detail     {}\n\nfindings\n",
        context.detail.display()
    ));
    for category in Category::ALL {
        let count = tally.findings.get(&category).copied().unwrap_or(0);
        let note = if category == Category::PendingInHub && tally.pending_in_grace > 0 {
            format!(
                "  ({} younger than the {} min grace period, not counted as failures)",
                tally.pending_in_grace,
                context.pending_grace.as_secs() / 60
            )
        } else {
            String::new()
        };
        out.push_str(&format!("  {:<23} {count:>8}{note}\n", category.name()));
    }
    out.push_str(&format!(
        "  rejected by the operator and absent from its listing (no money moved): {}\n",
        tally.rejected_unknown_to_operator
    ));
    out.push_str(&format!(
        "  rolled back before the operator applied them, absent from its listing: {}\n",
        tally.rolled_back_unknown_to_operator
    ));
    out.push_str(&format!(
        "  rollbacks recorded without an operator call (rejected or unknown original): {}\n\n",
        tally.rollbacks_not_sent
    ));
    out.push_str("settled totals (hub COMPLETED, operator SUCCESS)\n");
    out.push_str(&format!(
        "  {:<9} {:<8} {:<8} {:>9} {:>22}\n",
        "side", "currency", "type", "count", "amount"
    ));
    for ((side, currency, kind), (count, sum)) in &tally.totals {
        out.push_str(&format!(
            "  {side:<9} {currency:<8} {kind:<8} {count:>9} {:>22}\n",
            amount(currency, *sum)
        ));
    }
    if tally.totals.keys().any(|(_, _, kind)| *kind == "ROLLBACK") {
        out.push_str(
            "  (a rolled-back debit leaves the hub's DEBIT total; the operator's keeps its \
             withdraw and counts what its rollbacks gave back as REFUNDED)\n",
        );
    }
    out
}

/// The finding with every text cell made inert for spreadsheets: refIds and player ids come
/// from the RGS and the operator, and a cell starting with `=`, `+`, `-`, `@`, a tab or a
/// carriage return would be run as a formula (OWASP, CSV injection). Such a cell gets a
/// leading `'`, which spreadsheets show as text; numbers are written as they are.
fn spreadsheet_safe(finding: &Finding) -> Finding {
    let inert = |cell: &Option<String>| cell.as_deref().map(inert_cell);
    Finding {
        transaction_id: inert_cell(&finding.transaction_id),
        ref_id: inert(&finding.ref_id),
        hub_player_id: inert(&finding.hub_player_id),
        operator_player_id: inert(&finding.operator_player_id),
        hub_type: inert(&finding.hub_type),
        operator_type: inert(&finding.operator_type),
        hub_currency: inert(&finding.hub_currency),
        operator_currency: inert(&finding.operator_currency),
        hub_status: inert(&finding.hub_status),
        operator_status: inert(&finding.operator_status),
        round_id: inert(&finding.round_id),
        hub_original_transaction_id: inert(&finding.hub_original_transaction_id),
        operator_original_transaction_id: inert(&finding.operator_original_transaction_id),
        ..finding.clone()
    }
}

fn inert_cell(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cells_that_a_spreadsheet_would_run_are_made_inert() {
        let mut finding = Finding::new(Category::MissingInHub, None, None);
        finding.transaction_id = "tx-1".into();
        finding.ref_id = Some("=HYPERLINK(\"http://evil\",\"x\")".into());
        finding.hub_player_id = Some("+1+cmd|' /C calc'!A0".into());
        finding.operator_player_id = Some("@SUM(1)".into());
        finding.hub_status = Some("-2+3".into());
        finding.operator_status = Some("\tCOMPLETED".into());
        finding.round_id = Some("=round()".into());
        finding.hub_original_transaction_id = Some("\rhub-original".into());
        finding.operator_original_transaction_id = Some("-1+op-original".into());
        finding.hub_amount_cents = Some(-5);
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.serialize(spreadsheet_safe(&finding)).unwrap();
        let written = String::from_utf8(writer.into_inner().unwrap()).unwrap();
        let row = written.lines().nth(1).unwrap();
        for inert in [
            "'=HYPERLINK",
            "'+1+cmd",
            "'@SUM(1)",
            "'-2+3",
            "'\tCOMPLETED",
            "'=round()",
            "'\rhub-original",
            "'-1+op-original",
        ] {
            assert!(row.contains(inert), "{inert} in {row}");
        }
        assert!(row.contains(",tx-1,"), "plain text stays as it is: {row}");
        assert!(row.contains(",-5,"), "numbers stay numbers: {row}");
    }

    #[test]
    fn the_csv_header_names_every_field_in_order() {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer
            .serialize(Finding::new(Category::MissingInHub, None, None))
            .unwrap();
        let written = String::from_utf8(writer.into_inner().unwrap()).unwrap();
        assert_eq!(written.lines().next().unwrap(), CSV_HEADER.join(","));
    }
}
