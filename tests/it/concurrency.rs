//! 200 parallel Encrypt/Decrypt round trips from 8 clients.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_parallel_round_trips_from_eight_clients() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let keys = [
        create_key(&mut admin).await.key_id,
        create_key(&mut admin).await.key_id,
    ];

    let mut workers = Vec::new();
    for i in 1..8 {
        let arn = role(ACCOUNT, &format!("Worker{i}"));
        put_identity_policy(
            &mut admin,
            &arn,
            "use-keys",
            allow(&["kms:Encrypt", "kms:Decrypt"]),
        )
        .await;
        workers.push(d.client_as(&arn).await);
    }
    let mut clients = vec![admin];
    clients.extend(workers);
    let mut tasks = Vec::new();
    for n in 0..200usize {
        let mut c = clients[n % 8].clone();
        let key = keys[n % 2].clone();
        tasks.push(tokio::spawn(async move {
            let plaintext: Vec<u8> = format!("message {n}").into_bytes();
            let n_str = n.to_string();
            let context = [("n", n_str.as_str())];
            let blob = encrypt(&mut c, &key, &plaintext, &context).await;
            assert_eq!(decrypt(&mut c, &blob, &context).await, plaintext);
            n
        }));
    }
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap());
    }
    done.sort_unstable();
    assert_eq!(done, (0..200).collect::<Vec<_>>());
}
