//! The AES-GCM IV budget of each material version (docs/DESIGN.md, "IV budget"): every
//! encryption takes one invocation from a reservation committed in the store first, and
//! a version that has had its maximum is replaced by new material (HSM object first,
//! then metadata).

use std::time::SystemTime;

use tracing::info;

use super::{KeyCache, KeyEntry};
use crate::domain::{MaterialVersion, RotationType};
use crate::store::MaterialRecord;
use crate::vault::{KmsError, Vault};

/// GCM invocations reserved in the store at a time: one store write per 65,536
/// encryptions, and at most that many IVs skipped by a crash.
const RESERVATION_BLOCK: u64 = 1 << 16;

impl KeyEntry {
    /// Fast path: one invocation from the current reservation.
    fn try_take(&self) -> Option<MaterialVersion> {
        let mut s = self.lock();
        if s.used < s.reserved {
            s.used += 1;
            Some(s.record.current_version)
        } else {
            None
        }
    }
}

impl KeyCache {
    /// First reservation of a new key's first material.
    pub(crate) fn first_reservation(&self) -> u64 {
        RESERVATION_BLOCK.min(self.max_per_material)
    }
}

impl Vault {
    /// One GCM invocation of the key's current material. Reserves a new block in the
    /// store when the reservation is spent, and makes new material (HSM object first,
    /// then metadata) when the version has had its maximum.
    pub(crate) async fn take_invocation(
        &self,
        key: &KeyEntry,
    ) -> Result<MaterialVersion, KmsError> {
        loop {
            if let Some(v) = key.try_take() {
                return Ok(v);
            }
            let _refill = key.writes.lock().await;
            if let Some(v) = key.try_take() {
                return Ok(v);
            }
            let version = key.lock().record.current_version;
            let max = self.keys.max_per_material;
            let id = key.key_id;
            // The next block from the store, which no other claim overlaps (another
            // daemon on the same database included): its invocations are this
            // daemon's to use.
            let claimed = self
                .store_call(move |s| s.claim_invocations(&id, version, RESERVATION_BLOCK, max))
                .await?;
            match claimed {
                Some(range) => {
                    self.metrics.iv_reservation();
                    let mut s = key.lock();
                    if s.record.current_version == version {
                        s.used = range.start;
                        s.reserved = range.end;
                        if let Some(m) = s.record.versions.iter_mut().find(|m| m.version == version)
                        {
                            m.reserved_invocations = range.end;
                        }
                    }
                }
                None => {
                    self.new_material(key, version, None).await?;
                }
            }
        }
    }

    /// Adopts the store's record when it already holds version `next` or later (made by
    /// a cancelled request of this daemon, or by another daemon), counting its whole
    /// reservation as used; the version now current, or None.
    async fn adopt_newer(
        &self,
        key: &KeyEntry,
        next: MaterialVersion,
    ) -> Result<Option<MaterialVersion>, KmsError> {
        let id = key.key_id;
        let Some(stored) = self.store_call(move |s| s.get_key(&id)).await? else {
            return Ok(None);
        };
        if stored.current_version < next {
            return Ok(None);
        }
        let reserved = stored
            .current()
            .map(|m| m.reserved_invocations)
            .unwrap_or(0);
        let mut s = key.lock();
        s.record.current_version = stored.current_version;
        s.record.versions = stored.versions;
        s.record.rotation = stored.rotation;
        s.used = reserved;
        s.reserved = reserved;
        Ok(Some(stored.current_version))
    }

    /// Makes material version `exhausted + 1` the current one: because `exhausted` spent
    /// its IV budget (`rotation` None), or as a rotation, which may also move the key's
    /// next automatic rotation (in the same store transaction). Returns the version.
    pub(crate) async fn new_material(
        &self,
        key: &KeyEntry,
        exhausted: MaterialVersion,
        rotation: Option<(RotationType, Option<SystemTime>)>,
    ) -> Result<MaterialVersion, KmsError> {
        if key.kind().2 == crate::domain::Origin::External {
            // Only its owner has imported material: none can be made to take over.
            return Err(KmsError::LimitExceeded(
                "this key's imported material has been used for as many encryptions as AES-GCM with random IVs allows; encrypt under another key".into(),
            ));
        }
        let next = exhausted
            .0
            .checked_add(1)
            .map(MaterialVersion)
            .ok_or_else(|| {
                KmsError::LimitExceeded("this key has no material versions left".into())
            })?;
        let id = key.key_id;
        // A request cancelled after the store recorded `next` but before memory did
        // leaves the store ahead (and so does another daemon's new material, on a shared
        // store): adopt what it holds instead of making the material again. Only an
        // unrecorded object is ever replaced by create_material.
        if let Some(v) = self.adopt_newer(key, next).await? {
            return Ok(v);
        }
        // The right to make `next`, before the token object: making material clears the
        // objects of its CKA_ID, so two daemons must never make the same version. While
        // another holds it, wait for its record and adopt that.
        loop {
            let claimed = self
                .store_call(move |s| {
                    s.claim_material(&id, next, crate::vault::MATERIAL_CLAIM_STALE)
                })
                .await?;
            if claimed {
                // Another daemon may have recorded `next` between the look above and
                // this claim (recording gives the claim back): adopt it under the
                // claim, never make it again (making it would destroy theirs).
                if let Some(v) = self.adopt_newer(key, next).await? {
                    let _ = self
                        .store_call(move |s| s.release_material(&id, next))
                        .await;
                    return Ok(v);
                }
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if let Some(v) = self.adopt_newer(key, next).await? {
                return Ok(v);
            }
        }
        let m = MaterialRecord {
            version: next,
            created: self.settings.clock.now(),
            reserved_invocations: self.keys.first_reservation(),
            rotation: rotation.map(|(t, _)| t),
        };
        let stored = m.clone();
        let next_rotation = rotation.and_then(|(_, n)| n);
        let made = async {
            let (spec, usage, _) = key.kind();
            self.hsm
                .create_material(key.material_ref(next), spec, usage)
                .await?;
            crate::failpoint::hit("new_material.after_material");
            self.store_call(move |s| s.add_material(&id, &stored, next_rotation))
                .await
        };
        if let Err(e) = made.await {
            // Best effort: a claim left behind only delays the next maker until it goes
            // stale.
            let _ = self
                .store_call(move |s| s.release_material(&id, next))
                .await;
            return Err(e);
        }
        crate::failpoint::hit("new_material.after_store");
        match rotation {
            None => {
                self.metrics.material_rollover();
                info!(key_id = %id, version = next.0, "IV budget of the key material spent; made new material");
                self.audit_background("RollOverKeyMaterial", self.arn_of(key).to_string(), None)
                    .await;
            }
            Some((t, _)) => {
                info!(key_id = %id, version = next.0, rotation = t.as_str(), "key rotated: new material")
            }
        }
        let mut s = key.lock();
        s.record.current_version = next;
        s.record.versions.push(m);
        s.used = 0;
        s.reserved = self.keys.first_reservation();
        if let (Some(r), Some((_, Some(next)))) = (s.record.rotation.as_mut(), rotation) {
            r.next = next;
        }
        Ok(next)
    }
}
