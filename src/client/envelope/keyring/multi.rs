//! The multi-keyring: one generator makes the data key, every child wraps it too, so
//! that any one of them can decrypt the message alone.

use super::Keyring;
use crate::client::envelope::{
    BoxFuture, DecryptionMaterials, EncryptedDataKey, EncryptionMaterials, EnvelopeError,
};

/// A generator keyring (optional) and child keyrings.
pub struct MultiKeyring {
    generator: Option<Box<dyn Keyring>>,
    children: Vec<Box<dyn Keyring>>,
}

impl MultiKeyring {
    /// A multi-keyring. Without a generator it can encrypt only materials that already
    /// carry a data key, and still decrypts with any child.
    pub fn new(generator: Option<Box<dyn Keyring>>, children: Vec<Box<dyn Keyring>>) -> Self {
        Self {
            generator,
            children,
        }
    }
}

impl Keyring for MultiKeyring {
    fn on_encrypt(
        &self,
        mut materials: EncryptionMaterials,
    ) -> BoxFuture<'_, Result<EncryptionMaterials, EnvelopeError>> {
        Box::pin(async move {
            match &self.generator {
                Some(g) => {
                    materials = g.on_encrypt(materials).await?;
                    if materials.data_key.is_none() {
                        return Err(EnvelopeError::BadKeyring(
                            "the generator keyring made no data key",
                        ));
                    }
                }
                None if materials.data_key.is_none() => {
                    return Err(EnvelopeError::BadKeyring(
                        "a multi-keyring without a generator needs a data key",
                    ))
                }
                None => {}
            }
            for child in &self.children {
                materials = child.on_encrypt(materials).await?;
            }
            Ok(materials)
        })
    }

    fn on_decrypt<'a>(
        &'a self,
        materials: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> BoxFuture<'a, Result<DecryptionMaterials, EnvelopeError>> {
        Box::pin(async move {
            if materials.data_key.is_some() {
                return Ok(materials);
            }
            // The first keyring that opens a data key wins; failures of the others are
            // reported only when none succeeds.
            let mut failures = Vec::new();
            for k in self.generator.iter().chain(self.children.iter()) {
                match k.on_decrypt(materials.clone(), edks).await {
                    Ok(m) if m.data_key.is_some() => return Ok(m),
                    Ok(_) => {}
                    Err(e) => failures.push(e.to_string()),
                }
            }
            if failures.is_empty() {
                Ok(materials)
            } else {
                Err(EnvelopeError::KeyringFailed(failures.join("; ")))
            }
        })
    }
}
