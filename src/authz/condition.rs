//! One condition against a request context, with IAM's rules:
//! several policy values are OR'd (NOR for negated operators); a missing key makes
//! positive operators false and negated ones true, except …IfExists (true when missing)
//! and Null (tests presence); ForAllValues is true for a missing key or empty set, and
//! ForAnyValue false.

use std::net::IpAddr;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::context::RequestContext;
use super::model::{Condition, Effect, Operator, Qualifier};
use super::pattern::{arn_like, glob};
use super::variables::{names_folded_key, substitute};

/// Does the condition hold for this request, in a statement of `effect`?
///
/// A single-valued key that holds several values because request keys differing only
/// in case folded onto it (`kms:EncryptionContext:TENANT` and `…:tenant`) is tested
/// value by value, each as a one-value request: a Deny holds when it holds for any of
/// them and an Allow only when it holds for every one, so that neither value can hide
/// the other from a policy.
pub(super) fn holds(c: &Condition, ctx: &RequestContext, variables: bool, effect: Effect) -> bool {
    let present = ctx
        .get(&c.key)
        .map(|v| v.values())
        .filter(|v| !v.is_empty());
    // A variable naming such a key resolves to nothing, and which way a null value
    // falls would be the caller's choice: the statement then holds for a Deny only.
    if variables
        && ctx.has_folded()
        && c.operator.takes_variables()
        && c.values.iter().any(|v| names_folded_key(v, ctx))
    {
        return effect == Effect::Deny;
    }
    // Whatever the qualifier: a set qualifier on a folded key would let one value
    // carry an Allow (ForAnyValue) or shield a Deny (ForAllValues).
    if c.operator != Operator::Null && ctx.is_folded(&c.key) {
        if let Some(values) = present {
            let each = |v: &String| holds_on(c, Some(std::slice::from_ref(v)), ctx, variables);
            return match effect {
                Effect::Deny => values.iter().any(each),
                Effect::Allow => values.iter().all(each),
            };
        }
    }
    holds_on(c, present, ctx, variables)
}

fn holds_on(
    c: &Condition,
    present: Option<&[String]>,
    ctx: &RequestContext,
    variables: bool,
) -> bool {
    if c.operator == Operator::Null {
        // "true": the key must be absent; "false": it must be present.
        return c
            .values
            .iter()
            .any(|v| v.eq_ignore_ascii_case("true") == present.is_none());
    }
    let Some(request_values) = present else {
        if c.if_exists {
            return true;
        }
        return match c.qualifier {
            Qualifier::ForAllValues => true,
            Qualifier::ForAnyValue => false,
            Qualifier::Single => c.operator.is_negated(),
        };
    };
    // A variable with no value (and no default) makes that policy value effectively
    // null: it equals and is like nothing, so positive operators miss it and inverted
    // ones match it (IAM guide, "Policy variables with no value").
    let substituting =
        variables && c.operator.takes_variables() && c.values.iter().any(|v| v.contains("${"));
    let resolved: Vec<String> = if substituting {
        c.values.iter().filter_map(|v| substitute(v, ctx)).collect()
    } else {
        Vec::new()
    };
    let policy_values: &[String] = if substituting { &resolved } else { &c.values };
    let matches_any = |rv: &str| {
        policy_values
            .iter()
            .any(|pv| base_match(c.operator, rv, pv))
    };
    let test = |rv: &String| {
        if c.operator.is_negated() {
            !matches_any(rv)
        } else {
            matches_any(rv)
        }
    };
    match c.qualifier {
        // A single-valued key has one value; for a multi-valued key without a set
        // qualifier, a positive operator needs one matching value and a negated one
        // needs every value to miss.
        Qualifier::Single if c.operator.is_negated() => request_values.iter().all(test),
        Qualifier::Single => request_values.iter().any(test),
        Qualifier::ForAllValues => request_values.iter().all(test),
        Qualifier::ForAnyValue => request_values.iter().any(test),
    }
}

/// The positive test of an operator family: "does request value `rv` match policy value
/// `pv`". Negation is applied by the caller.
fn base_match(op: Operator, rv: &str, pv: &str) -> bool {
    use Operator::*;
    match op {
        StringEquals | StringNotEquals | BinaryEquals => rv == pv,
        StringEqualsIgnoreCase | StringNotEqualsIgnoreCase => {
            rv.to_lowercase() == pv.to_lowercase()
        }
        StringLike | StringNotLike => glob(pv, rv),
        Bool => rv.eq_ignore_ascii_case(pv),
        ArnEquals | ArnLike | ArnNotEquals | ArnNotLike => arn_like(pv, rv),
        IpAddress | NotIpAddress => cidr_contains(pv, rv),
        NumericEquals
        | NumericNotEquals
        | NumericLessThan
        | NumericLessThanEquals
        | NumericGreaterThan
        | NumericGreaterThanEquals => match (rv.trim().parse::<f64>(), pv.trim().parse::<f64>()) {
            (Ok(r), Ok(p)) => compare(op, r.partial_cmp(&p)),
            _ => false,
        },
        DateEquals
        | DateNotEquals
        | DateLessThan
        | DateLessThanEquals
        | DateGreaterThan
        | DateGreaterThanEquals => match (date(rv), date(pv)) {
            (Some(r), Some(p)) => compare(op, Some(r.cmp(&p))),
            _ => false,
        },
        Null => false,
    }
}

fn compare(op: Operator, ord: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::*;
    use Operator::*;
    let Some(ord) = ord else { return false };
    match op {
        NumericEquals | NumericNotEquals | DateEquals | DateNotEquals => ord == Equal,
        NumericLessThan | DateLessThan => ord == Less,
        NumericLessThanEquals | DateLessThanEquals => ord != Greater,
        NumericGreaterThan | DateGreaterThan => ord == Greater,
        NumericGreaterThanEquals | DateGreaterThanEquals => ord != Less,
        _ => false,
    }
}

/// ISO 8601 / RFC 3339 date-times, plain dates, or epoch seconds; as nanoseconds.
fn date(s: &str) -> Option<i128> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.unix_timestamp_nanos());
    }
    if let Ok(secs) = s.parse::<i64>() {
        return Some(i128::from(secs) * 1_000_000_000);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt)
        .ok()
        .map(|d| d.midnight().assume_utc().unix_timestamp_nanos())
}

/// Is `ip` inside `cidr` (or equal to a bare address)? v4 and v6.
fn cidr_contains(cidr: &str, ip: &str) -> bool {
    let Ok(ip) = ip.trim().parse::<IpAddr>() else {
        return false;
    };
    let (net, bits) = match cidr.trim().split_once('/') {
        Some((n, b)) => match b.parse::<u32>() {
            Ok(b) => (n, Some(b)),
            Err(_) => return false,
        },
        None => (cidr.trim(), None),
    };
    let Ok(net) = net.parse::<IpAddr>() else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => prefix_eq(
            u128::from(u32::from(n)),
            u128::from(u32::from(i)),
            bits.unwrap_or(32),
            32,
        ),
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            prefix_eq(u128::from(n), u128::from(i), bits.unwrap_or(128), 128)
        }
        _ => false,
    }
}

fn prefix_eq(net: u128, ip: u128, bits: u32, width: u32) -> bool {
    if bits > width {
        return false;
    }
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (net >> shift) == (ip >> shift)
}

#[cfg(test)]
mod tests;
