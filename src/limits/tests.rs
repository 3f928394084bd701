//! The limits as DtsCaller uses them, on tokio's paused clock: time only
//! moves when every task waits, so every instant below is exact.

use std::sync::Arc;

use super::*;
use dts_api::{ErrorClass, ErrorKind};

fn limits(rate: u32, concurrency: usize, threshold: u32) -> Arc<Limits> {
    Arc::new(Limits::new(
        LimitsConfig {
            rate: NonZeroU32::new(rate).unwrap(),
            max_concurrency: concurrency,
            failure_threshold: threshold,
            cooloff: Duration::from_secs(10),
        },
        Arc::new(Metrics::unregistered()),
    ))
}

fn creds(id: &str) -> Credentials {
    Credentials::new(id, "secret-value")
}

// Built as DTS returns it (see the allowance in the DTS client).
#[allow(clippy::result_large_err)]
fn error(code: &str, retry_after: Option<Duration>) -> Result<(), DtsError> {
    Err(DtsError {
        kind: ErrorKind::Api,
        class: ErrorClass::Retryable,
        http_status: Some(400),
        code: Some(code.into()),
        retry_after,
        ..DtsError::invalid_request("")
    })
}

fn member(name: &str) -> Member {
    Member {
        namespace: "ns".into(),
        name: name.into(),
    }
}

/// Sends one call for `id` and reports `answer`; returns when it was sent.
async fn call(l: &Limits, id: &str, answer: Result<(), DtsError>) -> Result<Instant, CircuitInfo> {
    let pass = l.acquire(&creds(id), "cn-hangzhou", true).await?;
    let at = Instant::now();
    l.answered(pass, &answer);
    Ok(at)
}

fn rate_of(l: &Limits, id: &str) -> f64 {
    let key = label(id);
    l.snapshot().into_iter().find(|k| k.key == key).map(|k| k.rate).unwrap()
}

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_rate_and_a_throttled_key_does_not_slow_another() {
    let l = limits(10, 16, 5);
    let t0 = Instant::now();
    // Account B is throttled and told to wait 2 s.
    call(&l, "LTAIb", Ok(())).await.unwrap();
    call(&l, "LTAIb", error("Throttling.User", Some(Duration::from_secs(2))))
        .await
        .unwrap();
    assert!(rate_of(&l, "LTAIb") < 10.0);
    // Account A meanwhile: ten calls, 100 ms apart from the first, which
    // goes at once, as if B did not exist.
    let mut a = Vec::new();
    for _ in 0..10 {
        a.push(call(&l, "LTAIa", Ok(())).await.unwrap() - t0);
    }
    let expected: Vec<Duration> = (1..=10).map(|i| Duration::from_millis(100 * i)).collect();
    assert_eq!(a, expected, "B's second call went at 100 ms; A started then");
    assert_eq!(rate_of(&l, "LTAIa"), 10.0);
    // B's next call waits out x-acs-retry-after (answered at t0 + 100 ms).
    let b = call(&l, "LTAIb", Ok(())).await.unwrap() - t0;
    assert_eq!(b, Duration::from_millis(2100));
    // The same AccessKeyId in another region is another key.
    let other = l.acquire(&creds("LTAIb"), "cn-beijing", true).await.unwrap();
    assert_eq!(Instant::now() - t0, Duration::from_millis(2100), "not paused");
    l.answered(other, &Ok::<(), DtsError>(()));
    assert_eq!(l.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_throttled_rate_falls_then_recovers_to_the_ceiling() {
    let l = limits(10, 16, 5);
    call(&l, "LTAIb", Ok(())).await.unwrap();
    call(&l, "LTAIb", error("Throttling.User", None)).await.unwrap();
    let low = rate_of(&l, "LTAIb");
    assert!((low - 7.0).abs() < 0.01, "{low}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mid = rate_of(&l, "LTAIb");
    assert!(mid > low && mid < 10.0, "recovering: {mid}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(rate_of(&l, "LTAIb"), 10.0, "recovered without a call");
}

#[tokio::test(start_paused = true)]
async fn no_more_than_the_concurrency_limit_is_in_flight_and_waiting_holds_no_permit() {
    let l = limits(1000, 2, 5);
    let first = l.acquire(&creds("LTAIa"), "r", true).await.unwrap();
    let second = l.acquire(&creds("LTAIb"), "r", true).await.unwrap();
    // A third call waits for a permit.
    let c = creds("LTAIc");
    let third = l.acquire(&c, "r", true);
    tokio::pin!(third);
    assert!(
        tokio::time::timeout(Duration::from_secs(5), &mut third).await.is_err(),
        "two in flight: the third waits"
    );
    l.answered(first, &Ok::<(), DtsError>(()));
    let third = tokio::time::timeout(Duration::from_millis(1), third)
        .await
        .expect("a permit freed")
        .unwrap();
    l.answered(second, &Ok::<(), DtsError>(()));
    l.answered(third, &Ok::<(), DtsError>(()));

    // A key paused by retry-after: its waiting call holds no permit, so
    // another key's two calls go at once.
    let l = limits(1000, 2, 5);
    call(&l, "LTAIslow", error("Throttling.User", Some(Duration::from_secs(60))))
        .await
        .unwrap();
    let slow = tokio::spawn({
        let l = l.clone();
        async move { call(&l, "LTAIslow", Ok(())).await.unwrap() }
    });
    tokio::task::yield_now().await;
    let t = Instant::now();
    let a = l.acquire(&creds("LTAIa"), "r", true).await.unwrap();
    let b = l.acquire(&creds("LTAIa2"), "r", true).await.unwrap();
    assert_eq!(Instant::now(), t, "the paused key's waiting call holds no permit");
    l.answered(a, &Ok::<(), DtsError>(()));
    l.answered(b, &Ok::<(), DtsError>(()));
    let sent = slow.await.unwrap();
    assert!(sent - t >= Duration::from_secs(59), "{:?}", sent - t);
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_refuses_at_once_and_lets_one_probe_through_per_cooloff() {
    let l = limits(10, 16, 3);
    let mut wakeups = l.take_wakeups().unwrap();
    let revoked = "InvalidAccessKeyId.NotFound";
    // Two jobs failed before it opened: told when it opens.
    for name in ["a", "b"] {
        call(&l, "LTAIrevoked", error(revoked, None)).await.unwrap();
        assert_eq!(
            l.enlist(&creds("LTAIrevoked"), "cn-hangzhou", &member(name), Group::Credentials),
            None
        );
    }
    call(&l, "LTAIrevoked", error(revoked, None)).await.unwrap();
    let held = l
        .enlist(&creds("LTAIrevoked"), "cn-hangzhou", &member("c"), Group::Credentials)
        .expect("open now");
    assert_eq!(
        (held.code.as_str(), held.failures, held.group),
        (revoked, 3, Group::Credentials)
    );
    assert_eq!(held.key, label("LTAIrevoked"));
    assert!(!held.message().contains("LTAIrevoked"), "{}", held.message());
    let mut told = Vec::new();
    while let Ok(m) = wakeups.try_recv() {
        told.push(m.name);
    }
    assert_eq!(told, ["a", "b"], "the members at the time it opened");

    // Refused at once, without waiting for the bucket.
    let t = Instant::now();
    let refused = call(&l, "LTAIrevoked", Ok(())).await.unwrap_err();
    assert_eq!(Instant::now(), t);
    assert!(refused.retry_in <= Duration::from_secs(10) && refused.retry_in > Duration::from_secs(9));
    // A reconcile that observes it is held, and told when to look again.
    let Circuit::Open(info) = l.admit(&creds("LTAIrevoked"), "cn-hangzhou", &member("d"), "uid-d") else {
        panic!("open");
    };
    assert_eq!(info.code, revoked);
    assert!(l.snapshot()[0].open);

    // After the cool-off: one reconcile holds the probe, the others wait.
    tokio::time::sleep(info.retry_in).await;
    assert_eq!(
        l.admit(&creds("LTAIrevoked"), "cn-hangzhou", &member("d"), "uid-d"),
        Circuit::Probe
    );
    assert!(matches!(
        l.admit(&creds("LTAIrevoked"), "cn-hangzhou", &member("e"), "uid-e"),
        Circuit::Open(_)
    ));
    // The observer's read is no probe.
    assert!(l.acquire(&creds("LTAIrevoked"), "cn-hangzhou", false).await.is_err());
    // The probe is answered: closed, and every member is told.
    call(&l, "LTAIrevoked", Ok(())).await.unwrap();
    let mut told: Vec<String> = Vec::new();
    while let Ok(m) = wakeups.try_recv() {
        told.push(m.name);
    }
    assert_eq!(told, ["a", "b", "c", "d", "e"]);
    assert_eq!(
        l.admit(&creds("LTAIrevoked"), "cn-hangzhou", &member("e"), "uid-e"),
        Circuit::Closed
    );
    assert!(!l.snapshot()[0].open);
}

#[tokio::test(start_paused = true)]
async fn a_fixed_secret_for_the_same_access_key_closes_the_circuit_at_once() {
    let l = limits(10, 16, 1);
    call(&l, "LTAIsame", error("SignatureDoesNotMatch", None))
        .await
        .unwrap();
    assert!(matches!(
        l.admit(&creds("LTAIsame"), "cn-hangzhou", &member("a"), "uid-a"),
        Circuit::Open(_)
    ));
    let fixed = Credentials::new("LTAIsame", "the-right-secret");
    assert_eq!(l.admit(&fixed, "cn-hangzhou", &member("a"), "uid-a"), Circuit::Closed);
    let pass = l.acquire(&fixed, "cn-hangzhou", true).await.expect("sent at once");
    l.answered(pass, &Ok::<(), DtsError>(()));
}

#[tokio::test(start_paused = true)]
async fn idle_keys_are_dropped_and_an_open_circuit_nobody_asks_about_is_forgotten() {
    let l = limits(10, 16, 1);
    call(&l, "LTAIidle", Ok(())).await.unwrap();
    call(&l, "LTAIbroken", error("Forbidden.RAM", None)).await.unwrap();
    assert_eq!(l.len(), 2);
    // Two cool-offs without a question: the open circuit goes.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(l.snapshot().len(), 1);
    tokio::time::sleep(IDLE_TTL).await;
    assert!(l.snapshot().is_empty());
    // A key with a call under way stays, however long the call takes.
    let pass = l.acquire(&creds("LTAIslow"), "r", true).await.unwrap();
    tokio::time::sleep(IDLE_TTL * 2).await;
    assert_eq!(l.snapshot().len(), 1);
    l.answered(pass, &Ok::<(), DtsError>(()));
}

#[test]
fn labels_are_short_hashes_of_the_access_key_id() {
    let a = label("LTAIe2eTestAccessKey");
    assert_eq!(a.len(), 8);
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        a,
        label("LTAIe2eTestAccessKey"),
        "stable, so dashboards and restarts agree"
    );
    assert_ne!(a, label("LTAIother"));
}
