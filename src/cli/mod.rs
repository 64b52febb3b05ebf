//! Admin subcommands that work on the database directly, without a running hub.

pub mod outbox;
pub mod reconcile;
pub mod transactions;

use crate::domain::instant::window_bounds;

/// `--from`/`--to` as a window, or the one-line reason they are not one.
pub fn cli_bounds(
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(Option<chrono::NaiveDateTime>, Option<chrono::NaiveDateTime>), String> {
    window_bounds(from, to).map_err(|error| format!("--{error}"))
}
