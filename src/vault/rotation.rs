//! Key rotation: EnableKeyRotation, DisableKeyRotation, GetKeyRotationStatus,
//! RotateKeyOnDemand, ListKeyRotations, and the automatic rotations the daemon's sweep
//! runs when they are due.
//!
//! A rotation makes a new material version in the HSM and makes it current; older
//! versions stay in the token, untouched, for as long as the key exists, so every older
//! ciphertext still decrypts. Nothing is exported or re-wrapped.

use std::time::{Duration, SystemTime};

use super::authorize::Authz;
use super::keys::KeyEntry;
use super::marker::Listing;
use super::{Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::{KeyArn, KeyId, KeyState, MaterialVersion, RotationType};
use crate::store::RotationSchedule;

const MIN_PERIOD_DAYS: i32 = 90;
const MAX_PERIOD_DAYS: i32 = 2560;
const DEFAULT_PERIOD_DAYS: i32 = 365;
/// AWS's (non-adjustable) quota of on-demand rotations per key.
pub(crate) const MAX_ON_DEMAND_ROTATIONS: usize = 25;
const DAY: Duration = Duration::from_secs(24 * 3600);

/// What GetKeyRotationStatus answers.
#[derive(Debug)]
pub struct RotationStatus {
    /// The key ARN.
    pub key_arn: KeyArn,
    /// Whether automatic rotation is on.
    pub enabled: bool,
    /// Days between automatic rotations, when on.
    pub period_days: Option<u32>,
    /// When the next automatic rotation is due, when on.
    pub next_rotation: Option<SystemTime>,
}

/// One completed rotation.
#[derive(Debug)]
pub struct Rotation {
    /// The material version it made.
    pub version: MaterialVersion,
    /// When.
    pub date: SystemTime,
    /// Why.
    pub kind: RotationType,
}

/// One page of ListKeyRotations.
#[derive(Debug)]
pub struct RotationPage {
    /// The key ARN.
    pub key_arn: KeyArn,
    /// Oldest first.
    pub rotations: Vec<Rotation>,
    /// Marker for the next page, when truncated.
    pub next_marker: Option<String>,
}

impl Vault {
    async fn rotation_key(
        &self,
        caller: &Caller,
        key_id: &str,
        action: Action,
    ) -> Result<(std::sync::Arc<KeyEntry>, KeyArn), KmsError> {
        let key = self.resolve(caller, key_id).await?;
        let arn = self.arn_of(&key);
        self.authorize(caller, Authz::key(action, &key)).await?;
        // AWS rotates symmetric encryption keys only, and not those whose material was
        // imported (p11kms cannot make more of material it never had).
        let (spec, usage, origin) = key.kind();
        if origin == crate::domain::Origin::External {
            return Err(KmsError::UnsupportedOperation(format!(
                "{arn} origin is EXTERNAL, which is not valid for this operation"
            )));
        }
        if !spec.is_symmetric_encryption() {
            return Err(KmsError::UnsupportedOperation(format!(
                "{arn} is a {} key with KeyUsage {}; only symmetric encryption keys rotate",
                spec.as_str(),
                usage.as_str()
            )));
        }
        Ok((key, arn))
    }

    /// EnableKeyRotation: automatic rotation every `period_days` (90..2560, default
    /// 365), the first one that many days from now.
    pub async fn enable_key_rotation(
        &self,
        caller: &Caller,
        key_id: &str,
        period_days: Option<i32>,
    ) -> Result<(), KmsError> {
        let days = match period_days {
            None => DEFAULT_PERIOD_DAYS,
            Some(d) if (MIN_PERIOD_DAYS..=MAX_PERIOD_DAYS).contains(&d) => d,
            Some(_) => {
                return Err(KmsError::validation(format!(
                    "RotationPeriodInDays must be between {MIN_PERIOD_DAYS} and {MAX_PERIOD_DAYS}"
                )))
            }
        };
        let (key, arn) = self
            .rotation_key(caller, key_id, Action::ENABLE_KEY_ROTATION)
            .await?;
        // Rotation changes need an enabled key, as cryptographic operations do.
        key.check_usable(&arn)?;
        let schedule = RotationSchedule {
            period_days: days.unsigned_abs(),
            next: self.settings.clock.now() + DAY * days.unsigned_abs(),
        };
        let id = key.key_id();
        self.write_key(&key, move |s| s.set_rotation(&id, Some(schedule)))
            .await?;
        Ok(())
    }

    /// DisableKeyRotation.
    pub async fn disable_key_rotation(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<(), KmsError> {
        let (key, arn) = self
            .rotation_key(caller, key_id, Action::DISABLE_KEY_ROTATION)
            .await?;
        // Rotation changes need an enabled key, as cryptographic operations do.
        key.check_usable(&arn)?;
        let id = key.key_id();
        self.write_key(&key, move |s| s.set_rotation(&id, None))
            .await?;
        Ok(())
    }

    /// GetKeyRotationStatus.
    pub async fn key_rotation_status(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<RotationStatus, KmsError> {
        let (key, arn) = self
            .rotation_key(caller, key_id, Action::GET_KEY_ROTATION_STATUS)
            .await?;
        key.check_manageable(&arn)?;
        let r = key.rotation();
        Ok(RotationStatus {
            key_arn: arn,
            enabled: r.is_some(),
            period_days: r.map(|r| r.period_days),
            next_rotation: r.map(|r| r.next),
        })
    }

    /// RotateKeyOnDemand: new material now, at most 25 times per key. The automatic
    /// schedule does not move.
    pub async fn rotate_key_on_demand(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<KeyArn, KmsError> {
        let (key, arn) = self
            .rotation_key(caller, key_id, Action::ROTATE_KEY_ON_DEMAND)
            .await?;
        // Rotation changes need an enabled key, as cryptographic operations do.
        key.check_usable(&arn)?;
        let _one_at_a_time = key.lock_writes().await;
        // Again under the lock: a DisableKey or ScheduleKeyDeletion may have landed
        // while this request waited for it.
        key.check_usable(&arn)?;
        let on_demand = key
            .rotations()
            .iter()
            .filter(|(_, _, t)| *t == RotationType::OnDemand)
            .count();
        if on_demand >= MAX_ON_DEMAND_ROTATIONS {
            return Err(KmsError::LimitExceeded(format!(
                "{arn} has had its {MAX_ON_DEMAND_ROTATIONS} on-demand rotations."
            )));
        }
        self.new_material(
            &key,
            key.current_version(),
            Some((RotationType::OnDemand, None)),
        )
        .await?;
        Ok(arn)
    }

    /// ListKeyRotations: completed rotations, oldest first; the marker holds the last
    /// version of the previous page (see `marker`).
    pub async fn list_key_rotations(
        &self,
        caller: &Caller,
        key_id: &str,
        limit: Option<i32>,
        marker: &str,
    ) -> Result<RotationPage, KmsError> {
        let limit = match limit {
            None => 100,
            Some(n) => super::validate::count("Limit", n, 1, 1000)?,
        };
        let listing = Listing::new("ListKeyRotations", key_id);
        let after: u32 = self.markers.open(&listing, marker)?.unwrap_or(0);
        let (key, arn) = self
            .rotation_key(caller, key_id, Action::LIST_KEY_ROTATIONS)
            .await?;
        let mut rotations: Vec<Rotation> = key
            .rotations()
            .into_iter()
            .filter(|(v, _, _)| v.0 > after)
            .map(|(version, date, kind)| Rotation {
                version,
                date,
                kind,
            })
            .collect();
        let truncated = rotations.len() > limit;
        rotations.truncate(limit);
        let next_marker = if truncated {
            rotations
                .last()
                .map(|r| self.markers.issue(&listing, &r.version.0.to_string()))
        } else {
            None
        };
        Ok(RotationPage {
            key_arn: arn,
            rotations,
            next_marker,
        })
    }

    /// Rotates every enabled key whose automatic rotation is due; returns how many. A
    /// key that fails is logged and left for the next sweep; the others go ahead. The
    /// daemon's sweep calls this.
    pub async fn rotate_due_keys(&self) -> Result<usize, KmsError> {
        let now = self.settings.clock.now();
        let due = self
            .store_call(move |s| s.keys_due_for_rotation(now))
            .await?;
        let mut rotated = 0;
        for id in due {
            let result = self.rotate_if_due(id, now).await;
            if matches!(result, Ok(true) | Err(_)) {
                if let Some(k) = self.cached_key(id) {
                    let arn = self.arn_of(&k).to_string();
                    self.audit_background("RotateKey", arn, result.as_ref().err())
                        .await;
                }
            }
            match result {
                Ok(true) => rotated += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(key_id = %id, error = %e, "rotating a key failed; the next sweep retries")
                }
            }
        }
        Ok(rotated)
    }

    /// One automatic rotation, if the key is still enabled and due.
    async fn rotate_if_due(&self, id: KeyId, now: SystemTime) -> Result<bool, KmsError> {
        let Some(key) = self.key(id).await? else {
            return Ok(false);
        };
        let _one_at_a_time = key.lock_writes().await;
        let Some(schedule) = key.rotation().filter(|r| r.next <= now) else {
            return Ok(false);
        };
        if key.state() != KeyState::Enabled {
            return Ok(false);
        }
        let next = now + DAY * schedule.period_days;
        self.new_material(
            &key,
            key.current_version(),
            Some((RotationType::Automatic, Some(next))),
        )
        .await?;
        Ok(true)
    }
}
