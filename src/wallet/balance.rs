//! `POST /wallet/balance`: the player's balance, read live from the operator.

use crate::domain::BalanceRequest;
use crate::operator::BalanceAnswer;

use super::{WalletError, WalletService};

/// A balance in the currency the game server asked about.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    pub player_id: String,
    pub currency: &'static str,
    pub balance_cents: i64,
}

impl WalletService {
    /// Reads the balance through the breaker and the operator's rate limit like any call;
    /// nothing is recorded, so a failure is simply asked again by the client.
    #[tracing::instrument(skip_all)]
    pub async fn balance(&self, request: BalanceRequest) -> Result<Balance, WalletError> {
        let permit = self
            .breaker
            .admit()
            .map_err(|retry_after| WalletError::CircuitOpen { retry_after })?;
        let answered = self.operator.balance(&request.player_id).await;
        if let Some(open_for) = permit.record(answered.is_ok()) {
            self.governor.open_circuit(open_for).await;
        }
        match answered {
            Ok(BalanceAnswer::Balance { minor, currency }) if currency == request.currency => {
                Ok(Balance {
                    player_id: request.player_id,
                    currency: currency.code(),
                    balance_cents: minor,
                })
            }
            Ok(BalanceAnswer::Balance { .. }) => Err(WalletError::CurrencyMismatch),
            Ok(BalanceAnswer::PlayerNotFound) => Err(WalletError::PlayerNotFound),
            Err(error) => Err(WalletError::OperatorUnavailable {
                retry_after: error.retry_after(),
            }),
        }
    }
}
