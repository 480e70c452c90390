//! Batch calls, beyond AWS: BatchEncrypt and BatchDecrypt carry up to 1000 items, each
//! an Encrypt or Decrypt request of its own. Each item goes through the request path's
//! steps (`request.rs`) as a request of its own: its own id, authorization, metric,
//! audit record and answer, so one bad item does not fail the others. The items run
//! concurrently, and their records are queued with the batch's own record as one group,
//! so the whole batch costs one audit write and fsync instead of one per item.

use std::future::{ready, Future};

use futures_util::stream::{self, StreamExt as _};
use tracing::Instrument as _;

use super::request::{BatchRef, Ongoing, Outcome, RequestInfo, Trace};
use super::{Caller, KmsError, Vault};

/// The most items one batch call takes.
pub(crate) const MAX_BATCH_ITEMS: usize = 1000;

/// Items of one batch in flight at once. Enough to keep every HSM worker busy (the
/// pool queues at most 64 jobs per session anyway), few enough that a batch on keys not
/// yet cached does not start a thousand store look-ups at once.
const ITEMS_IN_FLIGHT: usize = 128;

/// One batch call as a transport hands it over.
pub(crate) struct Batch<T> {
    /// The operation of every item (`Encrypt`, `Decrypt`): the name of each item's
    /// audit record and metric.
    pub(crate) item_operation: &'static str,
    /// The items as the wire carried them, each converted and validated only inside
    /// its own request; Err when the call carries none the transport could read (a
    /// missing member), which fails the call as a whole.
    pub(crate) items: Result<Vec<T>, KmsError>,
    /// An item's KeyId parameter as given, for its span and audit record.
    pub(crate) key_id_of: fn(&T) -> String,
}

/// AWS's words for a member of the wrong length, with the member named as AWS names it.
fn check_item_count(n: usize) -> Result<(), KmsError> {
    let constraint = if n == 0 {
        "greater than or equal to 1".to_owned()
    } else if n > MAX_BATCH_ITEMS {
        format!("less than or equal to {MAX_BATCH_ITEMS}")
    } else {
        return Ok(());
    };
    // The value is left out, as AWS does for members that may hold secrets.
    Err(KmsError::validation(format!(
        "1 validation error detected: Value at 'items' failed to satisfy constraint: Member must have length {constraint}"
    )))
}

impl Caller {
    /// The same caller for one item of a batch, with a trace of its own, so that each
    /// item's authorizations and parameters go into its own record.
    fn for_item(&self) -> Caller {
        Caller {
            trace: Trace::default(),
            ..self.clone()
        }
    }
}

impl Vault {
    /// Runs one batch call: the call itself is a request (`info`: its operation, e.g.
    /// `BatchEncrypt`), identified by awaiting `identify` and refused as a whole when it
    /// holds no items or more than [`MAX_BATCH_ITEMS`]; then each item is a request of
    /// its own, by the same caller, running `op`. Returns each item's result, in order,
    /// and the batch's `Outcome`.
    ///
    /// The batch's record comes first in the trail, then its items' in order, each item
    /// naming the batch's request id and its index (`additionalEventData`). The records
    /// are durable before the call answers; if they cannot be written, every item and
    /// the call fail, as a single call would.
    pub(crate) async fn run_batch<T, R, F, Fut>(
        &self,
        info: RequestInfo,
        identify: impl Future<Output = Result<Caller, KmsError>>,
        batch: Batch<T>,
        op: F,
    ) -> (Result<Vec<Result<R, KmsError>>, KmsError>, Outcome)
    where
        F: Fn(Caller, T) -> Fut,
        Fut: Future<Output = Result<R, KmsError>>,
    {
        let (transport, source_ip) = (info.transport, info.source_ip);
        let Batch {
            item_operation,
            items,
            key_id_of,
        } = batch;
        let mut call = self.begin(info, None);
        let batch_id = call.request_id().to_owned();
        let op = &op;
        let ran = call
            .execute(identify, |caller| async move {
                let items = items?;
                caller.trace.parameter("itemCount", items.len());
                check_item_count(items.len())?;
                let runs = items.into_iter().enumerate().map(|(index, item)| {
                    let info = RequestInfo {
                        operation: item_operation,
                        transport,
                        key_id: key_id_of(&item),
                        source_ip,
                    };
                    let place = BatchRef {
                        request_id: batch_id.clone(),
                        index,
                    };
                    let caller = caller.for_item();
                    // Opened here, inside the batch's span, so the item's span is its
                    // child; dropped before it is recorded, it records itself as
                    // cancelled, as any request does.
                    let mut req = self.begin(info, Some(place));
                    async move {
                        let result = req.execute(ready(Ok(caller)), |c| op(c, item)).await;
                        req.settle(result.as_ref().err());
                        (req, result)
                    }
                });
                // `buffered` keeps the items' order, whatever order they finish in.
                Ok(stream::iter(runs)
                    .buffered(ITEMS_IN_FLIGHT)
                    .collect::<Vec<_>>()
                    .await)
            })
            .await;
        let (mut reqs, ran): (Vec<Ongoing<'_>>, Result<Vec<_>, KmsError>) = match ran {
            Ok(items) => {
                let (reqs, results) = items.into_iter().unzip();
                (reqs, Ok(results))
            }
            Err(e) => (Vec::new(), Err(e)),
        };
        call.settle(ran.as_ref().err());
        let recorded = {
            // In the batch's span, as a single call's record is written in its own.
            let span = call.span().clone();
            let mut group: Vec<&mut Ongoing<'_>> = Vec::with_capacity(reqs.len() + 1);
            group.push(&mut call);
            group.extend(reqs.iter_mut());
            self.record_group(&mut group).instrument(span).await
        };
        let result = ran.map(|results| {
            reqs.into_iter()
                .zip(results)
                .map(|(req, r)| self.finish(req, r, &recorded).0)
                .collect()
        });
        self.finish(call, result, &recorded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_knows_the_batch_limit() {
        assert_eq!(crate::client::MAX_BATCH_ITEMS, MAX_BATCH_ITEMS);
    }

    #[test]
    fn a_batch_holds_one_to_a_thousand_items() {
        assert!(check_item_count(1).is_ok());
        assert!(check_item_count(MAX_BATCH_ITEMS).is_ok());
        let over = check_item_count(MAX_BATCH_ITEMS + 1).unwrap_err();
        assert_eq!(over.name(), "ValidationException");
        assert_eq!(
            over.to_string(),
            "1 validation error detected: Value at 'items' failed to satisfy constraint: Member must have length less than or equal to 1000"
        );
        let none = check_item_count(0).unwrap_err();
        assert_eq!(
            none.to_string(),
            "1 validation error detected: Value at 'items' failed to satisfy constraint: Member must have length greater than or equal to 1"
        );
    }
}
