//! The store section: the daemon as deployed on PostgreSQL against the same on SQLite.
//! Once a key is cached, Encrypt touches the store only to reserve IV blocks (one write
//! per 65,536 encryptions), so its rate should not depend on the backend; CreateKey
//! writes the store on every call and shows what a network database costs.

use std::time::Duration;

use super::load::Stats;
use super::report::{Report, Row};
use super::{in_flight, median, BoxResult, Daemon, Launch, Op, CPU_PER_CALL};

/// Calls in flight of the CreateKey rows: each call makes a token object, and the
/// rate falls as the token fills, so the rows stay short.
const CREATE_IN_FLIGHT: usize = 4;

pub(crate) async fn postgres_against_sqlite(report: &mut Report, secs: Duration) -> BoxResult<()> {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1);
    let db = tokio::task::spawn_blocking(super::testdb::TestDb::start).await?;
    let url = format!("postgresql://p11kms@127.0.0.1:{}/p11kms", db.port);
    let sqlite = Daemon::start(&Launch {
        audit: true,
        ..Launch::default()
    })?;
    let postgres = Daemon::start(&Launch {
        audit: true,
        postgres: Some(url),
        ..Launch::default()
    })?;
    let (key_s, key_p) = (sqlite.key(false).await?, postgres.key(false).await?);
    let (gs, gp) = (sqlite.grpc(&key_s).await?, postgres.grpc(&key_p).await?);
    let mut rows = Vec::new();
    for (op, concurrency, secs) in in_flight()
        .into_iter()
        .map(|c| (Op::Encrypt, c, secs))
        .chain([(
            Op::CreateKey,
            CREATE_IN_FLIGHT,
            secs.min(Duration::from_secs(1)),
        )])
    {
        let (mut on_pg, mut on_sqlite) = (Vec::new(), Vec::new());
        let (mut cpu_pg, mut cpu_sqlite) = (Vec::new(), Vec::new());
        let (mut p99_pg, mut p99_sqlite) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            for side in 0..2 {
                if (round + side) % 2 == 0 {
                    let (s, cpu) = sqlite
                        .measured(gs.load(op, concurrency, None, secs), secs)
                        .await;
                    on_sqlite.push(s.rate);
                    cpu_sqlite.push(cpu);
                    p99_sqlite.push(s.p99_us);
                } else {
                    let (s, cpu) = postgres
                        .measured(gp.load(op, concurrency, None, secs), secs)
                        .await;
                    on_pg.push(s.rate);
                    cpu_pg.push(cpu);
                    p99_pg.push(s.p99_us);
                }
            }
        }
        let (pg, lite) = (median(&mut on_pg), median(&mut on_sqlite));
        let stats = |rate, p99| Stats {
            rate,
            p99_us: p99,
            ..Stats::default()
        };
        rows.push(
            Row::new(
                "store",
                format!("{op:?}, gRPC, {concurrency} in flight, PostgreSQL (median of {rounds})"),
                stats(pg, median(&mut p99_pg)),
            )
            .ratio("of SQLite", pg / lite)
            .figure(CPU_PER_CALL, median(&mut cpu_pg)),
        );
        rows.push(
            Row::new(
                "store",
                format!("{op:?}, gRPC, {concurrency} in flight, SQLite (median of {rounds})"),
                stats(lite, median(&mut p99_sqlite)),
            )
            .figure(CPU_PER_CALL, median(&mut cpu_sqlite)),
        );
    }
    for r in rows {
        report.push(r);
    }
    drop((sqlite, postgres));
    tokio::task::spawn_blocking(move || drop(db)).await?;
    Ok(())
}
