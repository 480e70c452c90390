//! Policy variables (`${aws:username}`, `${aws:PrincipalTag/team}`, `${*}` …), available
//! in Version 2012-10-17 policies, in Resource and in string and ARN conditions.

use super::context::{ContextValue, RequestContext};

/// Substitutes every `${…}` in `s`. `None` when a variable has no single value in the
/// request and no default: such a policy value then matches nothing.
pub(super) fn substitute(s: &str, ctx: &RequestContext) -> Option<String> {
    if !s.contains("${") {
        return Some(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(rest.get(..start)?);
        let after = rest.get(start + 2..)?;
        let Some(end) = after.find('}') else {
            // No closing brace: not a variable, keep the text as written.
            out.push_str(rest.get(start..)?);
            return Some(out);
        };
        let body = after.get(..end)?;
        out.push_str(&resolve(body, ctx)?);
        rest = after.get(end + 1..)?;
    }
    out.push_str(rest);
    Some(out)
}

/// Does `s` hold a variable naming a key that request keys differing only in case
/// folded onto (see `RequestContext::add`)?
pub(super) fn names_folded_key(s: &str, ctx: &RequestContext) -> bool {
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let Some(after) = rest.get(start + 2..) else {
            return false;
        };
        let Some(end) = after.find('}') else {
            return false;
        };
        let body = after.get(..end).unwrap_or_default();
        let name = body.split_once(',').map_or(body, |(n, _)| n).trim();
        if ctx.is_folded(&name.to_ascii_lowercase()) {
            return true;
        }
        rest = after.get(end + 1..).unwrap_or_default();
    }
    false
}

fn resolve(body: &str, ctx: &RequestContext) -> Option<String> {
    match body {
        "*" => return Some("*".into()),
        "?" => return Some("?".into()),
        "$" => return Some("$".into()),
        _ => {}
    }
    // `${aws:username, 'default'}`
    let (name, default) = match body.split_once(',') {
        Some((n, d)) => {
            let d = d.trim();
            let d = d
                .strip_prefix('\'')
                .and_then(|d| d.strip_suffix('\''))
                .unwrap_or(d);
            (n.trim(), Some(d.to_owned()))
        }
        None => (body.trim(), None),
    };
    match ctx.get(&name.to_ascii_lowercase()) {
        Some(ContextValue::One(v)) => Some(v.clone()),
        _ => default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_resolve_from_the_context() {
        let mut ctx = RequestContext::default();
        ctx.set_one("aws:username", "bob");
        ctx.set_one("aws:PrincipalTag/team", "blue");
        assert_eq!(
            substitute("home/${aws:username}/*", &ctx).unwrap(),
            "home/bob/*"
        );
        assert_eq!(
            substitute("${aws:principaltag/team}", &ctx).unwrap(),
            "blue"
        );
        assert_eq!(substitute("a${*}b${?}${$}", &ctx).unwrap(), "a*b?$");
        assert_eq!(
            substitute("${aws:PrincipalTag/missing, 'none'}", &ctx).unwrap(),
            "none"
        );
        assert_eq!(substitute("${aws:PrincipalTag/missing}", &ctx), None);
        assert_eq!(substitute("${unclosed", &ctx).unwrap(), "${unclosed");
    }
}
