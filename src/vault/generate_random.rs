//! GenerateRandom: bytes from the HSM's random number generator.

use super::authorize::Authz;
use super::{validate, Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::Plaintext;

impl Vault {
    /// GenerateRandom; NumberOfBytes 1..1024.
    pub async fn generate_random(
        &self,
        caller: &Caller,
        number_of_bytes: Option<i32>,
    ) -> Result<Plaintext, KmsError> {
        let n = number_of_bytes.ok_or_else(|| KmsError::validation("NumberOfBytes is required"))?;
        let len = validate::count("NumberOfBytes", n, 1, 1024)?;
        self.authorize(caller, Authz::account(Action::GENERATE_RANDOM))
            .await?;
        Ok(self.hsm.generate_random(len).await?)
    }
}
