//! Paginated calls continue only from markers the daemon issued for the same listing:
//! a made-up, edited or borrowed marker is InvalidMarkerException, over gRPC and over
//! the AWS JSON protocol, as AWS answers a marker it did not issue.

use p11kms::client::KmsClient;
use p11kms::proto;
use serde_json::{json, Value};

use crate::aws_sdk::{call, creds_for};
use crate::harness::*;

/// One paginated listing over gRPC.
#[derive(Clone, Copy, Debug)]
enum List<'a> {
    Keys,
    Aliases,
    Grants(&'a str),
    RetirableGrants(&'a str),
    Tags(&'a str),
    Rotations(&'a str),
}

/// One page of `list`: a name for each item, and the next marker when truncated.
async fn page(
    c: &mut KmsClient,
    list: List<'_>,
    limit: i32,
    marker: &str,
) -> Result<(Vec<String>, Option<String>), tonic::Status> {
    let (limit, marker) = (Some(limit), marker.to_owned());
    let next = |truncated: bool, m: String| truncated.then_some(m);
    Ok(match list {
        List::Keys => {
            let r = c
                .list_keys(proto::ListKeysRequest { limit, marker })
                .await?
                .into_inner();
            let items = r.keys.into_iter().map(|k| k.key_id).collect();
            (items, next(r.truncated, r.next_marker))
        }
        List::Aliases => {
            let r = c
                .list_aliases(proto::ListAliasesRequest {
                    limit,
                    marker,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let items = r.aliases.into_iter().map(|a| a.alias_name).collect();
            (items, next(r.truncated, r.next_marker))
        }
        List::Grants(key_id) => {
            let r = c
                .list_grants(proto::ListGrantsRequest {
                    key_id: key_id.into(),
                    limit,
                    marker,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let items = r.grants.into_iter().map(|g| g.grant_id).collect();
            (items, next(r.truncated, r.next_marker))
        }
        List::RetirableGrants(principal) => {
            let r = c
                .list_retirable_grants(proto::ListRetirableGrantsRequest {
                    retiring_principal: principal.into(),
                    limit,
                    marker,
                })
                .await?
                .into_inner();
            let items = r.grants.into_iter().map(|g| g.grant_id).collect();
            (items, next(r.truncated, r.next_marker))
        }
        List::Tags(key_id) => {
            let r = c
                .list_resource_tags(proto::ListResourceTagsRequest {
                    key_id: key_id.into(),
                    limit,
                    marker,
                })
                .await?
                .into_inner();
            let items = r.tags.into_iter().map(|t| t.tag_key).collect();
            (items, next(r.truncated, r.next_marker))
        }
        List::Rotations(key_id) => {
            let r = c
                .list_key_rotations(proto::ListKeyRotationsRequest {
                    key_id: key_id.into(),
                    limit,
                    marker,
                })
                .await?
                .into_inner();
            let items = r
                .rotations
                .into_iter()
                .map(|x| format!("{:?} {}", x.rotation_date, x.rotation_type))
                .collect();
            (items, next(r.truncated, r.next_marker))
        }
    })
}

/// Two keys, each with two aliases, two grants retirable by `retiring`, two tags and
/// two rotations: every listing has more than one page of one item.
async fn listings(c: &mut KmsClient, retiring: &str) -> (String, String) {
    let (a, b) = (create_key(c).await.key_id, create_key(c).await.key_id);
    for (key, name) in [(&a, "a"), (&b, "b")] {
        for i in 0..2 {
            c.create_alias(proto::CreateAliasRequest {
                alias_name: format!("alias/markers-{name}{i}"),
                target_key_id: key.clone(),
            })
            .await
            .unwrap();
            c.create_grant(proto::CreateGrantRequest {
                key_id: key.clone(),
                grantee_principal: role(ACCOUNT, &format!("Grantee{i}")),
                retiring_principal: retiring.into(),
                operations: vec!["Decrypt".into()],
                ..Default::default()
            })
            .await
            .unwrap();
            c.rotate_key_on_demand(proto::RotateKeyOnDemandRequest {
                key_id: key.clone(),
            })
            .await
            .unwrap();
        }
        c.tag_resource(proto::TagResourceRequest {
            key_id: key.clone(),
            tags: vec![
                proto::Tag {
                    tag_key: "team".into(),
                    tag_value: "x".into(),
                },
                proto::Tag {
                    tag_key: "env".into(),
                    tag_value: "y".into(),
                },
            ],
        })
        .await
        .unwrap();
    }
    (a, b)
}

/// Flips one character of a marker (as a client that stores it badly would).
fn edited(marker: &str) -> String {
    let mut chars: Vec<char> = marker.chars().collect();
    let last = chars.last_mut().unwrap();
    *last = if *last == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn paginated_calls_take_only_the_markers_they_issued_over_grpc() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let retiring = role(ACCOUNT, "Retirer");
    let (a, b) = listings(&mut c, &retiring).await;

    let lists = [
        List::Keys,
        List::Aliases,
        List::Grants(&a),
        List::RetirableGrants(&retiring),
        List::Tags(&a),
        List::Rotations(&a),
    ];
    for list in lists {
        // Page by page with the markers issued, the listing is the whole listing.
        let (all, none) = page(&mut c, list, 50, "").await.unwrap();
        assert!(none.is_none() && all.len() >= 2, "{list:?}: {all:?}");
        let (mut paged, mut marker) = (Vec::new(), String::new());
        loop {
            let (items, next) = page(&mut c, list, 1, &marker).await.unwrap();
            paged.extend(items);
            match next {
                Some(m) => marker = m,
                None => break,
            }
        }
        assert_eq!(paged, all, "{list:?}");

        let (first, issued) = page(&mut c, list, 1, "").await.unwrap();
        let issued = issued.unwrap();
        // What a marker used to be, and what a client could make up: the last item
        // it saw (a key id, alias name, grant id or tag key; a rotation's version).
        let made_up = match list {
            List::Rotations(_) => "1".to_owned(),
            _ => first[0].clone(),
        };
        for bad in [made_up, edited(&issued), "garbage".to_owned()] {
            assert_kms_error(
                page(&mut c, list, 1, &bad).await.map(tonic::Response::new),
                "InvalidMarkerException",
            );
        }
    }

    // A marker continues only the listing it came from: not another key's, nor
    // another operation's.
    for (from, to) in [
        (List::Grants(&a), List::Grants(&b)),
        (List::Tags(&a), List::Tags(&b)),
        (List::Rotations(&a), List::Rotations(&b)),
        (List::Grants(&a), List::RetirableGrants(&retiring)),
        (List::Keys, List::Aliases),
    ] {
        let issued = page(&mut c, from, 1, "").await.unwrap().1.unwrap();
        assert_kms_error(
            page(&mut c, to, 1, &issued).await.map(tonic::Response::new),
            "InvalidMarkerException",
        );
    }
    // ListKeyPolicies has one page: no marker is its.
    assert_kms_error(
        c.list_key_policies(proto::ListKeyPoliciesRequest {
            key_id: a.clone(),
            limit: None,
            marker: "x".into(),
        })
        .await,
        "InvalidMarkerException",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn paginated_calls_take_only_the_markers_they_issued_over_aws_json() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let retiring = role(ACCOUNT, "Retirer");
    let (a, b) = listings(&mut c, &retiring).await;
    let creds = creds_for(&mut c, &root_of(ACCOUNT)).await;
    let first_key = page(&mut c, List::Keys, 1, "").await.unwrap().0[0].clone();

    // Each operation's own parameters, and a marker made up from what it lists.
    let calls = [
        ("ListKeys", json!({}), first_key.clone()),
        ("ListAliases", json!({}), "alias/markers-a0".to_owned()),
        ("ListGrants", json!({"KeyId": a}), "0".repeat(64)),
        (
            "ListRetirableGrants",
            json!({"RetiringPrincipal": retiring}),
            "0".repeat(64),
        ),
        ("ListResourceTags", json!({"KeyId": a}), "env".to_owned()),
        ("ListKeyRotations", json!({"KeyId": a}), "1".to_owned()),
    ];
    let with = |params: &Value, extra: Value| {
        let mut p = params.clone();
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        p
    };
    for (op, params, made_up) in &calls {
        let (status, _, first) = call(&d, &creds, op, with(params, json!({"Limit": 1})));
        assert_eq!(status, 200, "{op}: {first}");
        assert_eq!(first["Truncated"], true, "{op}: {first}");
        let issued = first["NextMarker"].as_str().unwrap().to_owned();
        let (status, _, second) = call(
            &d,
            &creds,
            op,
            with(params, json!({"Limit": 1, "Marker": issued})),
        );
        assert_eq!(status, 200, "{op}: {second}");
        assert_ne!(first, second, "{op}: the marker moved on");
        for bad in [made_up.clone(), edited(&issued)] {
            let (status, name, body) = call(
                &d,
                &creds,
                op,
                with(params, json!({"Limit": 1, "Marker": bad})),
            );
            assert_eq!(
                (status, name.as_deref()),
                (400, Some("InvalidMarkerException")),
                "{op} with {bad}: {body}"
            );
        }
    }
    // Another key's marker.
    let (_, _, of_a) = call(&d, &creds, "ListGrants", json!({"KeyId": a, "Limit": 1}));
    let (status, name, _) = call(
        &d,
        &creds,
        "ListGrants",
        json!({"KeyId": b, "Marker": of_a["NextMarker"]}),
    );
    assert_eq!(
        (status, name.as_deref()),
        (400, Some("InvalidMarkerException"))
    );
}
