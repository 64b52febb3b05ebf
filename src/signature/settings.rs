//! The signature settings that are not secrets (`HMAC_SECRETS` and
//! `SIGNATURE_TOLERANCE_SECONDS` are read with the rest of the configuration).

use crate::settings::{ConfigError, Env};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureSettings {
    /// `SIGNATURE_V1` (default on): whether requests signed with version 1 are accepted.
    /// Turn it off once every client signs with version 2.
    pub accept_v1: bool,
}

impl Default for SignatureSettings {
    fn default() -> Self {
        Self { accept_v1: true }
    }
}

impl SignatureSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            accept_v1: env.flag("SIGNATURE_V1", true)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_v1_is_on_by_default_and_off_when_asked() {
        let read = |pairs: &[(&str, &str)]| {
            SignatureSettings::from_env(&Env::from_pairs(pairs.iter().copied()))
        };
        assert_eq!(read(&[]), Ok(SignatureSettings { accept_v1: true }));
        assert_eq!(
            read(&[("SIGNATURE_V1", "off")]),
            Ok(SignatureSettings { accept_v1: false })
        );
        assert_eq!(
            read(&[("SIGNATURE_V1", "on")]),
            Ok(SignatureSettings { accept_v1: true })
        );
        let error = read(&[("SIGNATURE_V1", "legacy")]).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("SIGNATURE_V1 must be true or false"),
            "{error}"
        );
    }
}
