//! Streams through a group: failing over before the first chunk, errors after it, and the
//! in-flight count and token usage a stream holds until it ends.

use std::collections::HashMap;

use futures_util::{FutureExt, StreamExt};
use switchyard_router::{Attempts, EndpointSettings, Policy, health::State};
use switchyard_types::llm::{ErrorClass, LlmResponse, ResponseBody};
use tower::ServiceExt;

use crate::support::{
    Fake, Item, chunk, deployment, failure, group, price, retries, send, stack, stream_chat, streamed,
    streamed_forever, table, text, usage_chunk, within_one_minute,
};

fn chunks(response: LlmResponse) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = Item> + Send>> {
    match response.body {
        ResponseBody::ChatStream(chunks) => chunks,
        _ => panic!("expected a stream"),
    }
}

async fn texts(response: LlmResponse) -> Vec<String> {
    chunks(response).take(20).collect::<Vec<_>>().await.iter().map(text).collect()
}

/// A fake that streams `items` on every call.
fn streaming(label: &'static str, items: fn() -> Vec<Item>) -> Fake {
    Fake::new(label, move |_| std::future::ready(Ok(streamed(label, items()))).boxed())
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_fails_before_its_first_chunk_fails_over() {
    let a = streaming("a", || vec![Err(failure(ErrorClass::UpstreamServer))]);
    let b = streaming("b", || vec![chunk("b1"), chunk("b2")]);
    let table =
        table(vec![group("m", Policy::LowestCost, vec![a.endpoint(price(0.1)), b.endpoint(price(5.0))])]);

    let error = send(&table, stream_chat("m")).await.expect_err("the attempt failed, not the stream");
    assert_eq!(error.class, ErrorClass::UpstreamServer);

    let mut request = stream_chat("m");
    let attempts = Attempts::of(&mut request);
    let response = stack(&table, retries(2), HashMap::new()).oneshot(request).await.expect("b serves");
    assert_eq!(texts(response).await, ["b1", "b2"]);
    let failures: Vec<_> = attempts.to_vec().iter().map(|a| (a.deployment.to_string(), a.failure)).collect();
    assert_eq!(failures, [("a".into(), Some(ErrorClass::UpstreamServer)), ("b".into(), None)]);
    assert_eq!(deployment(&table, "a").health(), State::Healthy { consecutive: 2 });
    assert_eq!((deployment(&table, "a").in_flight(), deployment(&table, "b").in_flight()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_ends_before_its_first_chunk_fails_over() {
    let a = streaming("a", Vec::new);
    let b = streaming("b", || vec![chunk("b1")]);
    let table =
        table(vec![group("m", Policy::LowestCost, vec![a.endpoint(price(0.1)), b.endpoint(price(5.0))])]);

    let error = send(&table, stream_chat("m")).await.expect_err("an empty stream is a failed attempt");
    assert_eq!(error.class, ErrorClass::UpstreamServer);
    assert!(error.message.contains("ended the stream before sending anything"), "{}", error.message);

    let response =
        stack(&table, retries(2), HashMap::new()).oneshot(stream_chat("m")).await.expect("b serves");
    assert_eq!(texts(response).await, ["b1"]);
    assert_eq!(a.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_error_after_the_first_chunk_reaches_the_client_and_counts_against_the_deployment() {
    let a = streaming("a", || vec![chunk("a1"), Err(failure(ErrorClass::Unreachable)), chunk("never")]);
    let b = streaming("b", || vec![chunk("b1")]);
    let table =
        table(vec![group("m", Policy::LowestCost, vec![a.endpoint(price(0.1)), b.endpoint(price(5.0))])]);

    let mut request = stream_chat("m");
    let attempts = Attempts::of(&mut request);
    let response = stack(&table, retries(2), HashMap::new()).oneshot(request).await.expect("a answers");
    let mut chunks = chunks(response);
    assert_eq!(text(&chunks.next().await.expect("a chunk")), "a1");
    assert_eq!(deployment(&table, "a").health(), State::Healthy { consecutive: 0 }, "a success so far");
    assert_eq!(text(&chunks.next().await.expect("the error")), "error: upstream_unreachable");
    assert_eq!(deployment(&table, "a").health(), State::Healthy { consecutive: 1 });
    assert_eq!(deployment(&table, "a").in_flight(), 0, "the error ended the request");
    assert_eq!(b.calls(), 0, "no failover once the client has output");
    assert_eq!(attempts.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_stream_is_in_flight_until_it_ends_or_is_dropped() {
    let a = Fake::new("a", |n| {
        let items = vec![chunk("1"), chunk("2"), chunk("3")];
        let response = if n == 0 { streamed("a", items) } else { streamed_forever("a", items) };
        std::future::ready(Ok(response)).boxed()
    });
    let table =
        table(vec![group("m", Policy::WeightedRandom, vec![a.endpoint(EndpointSettings::default())])]);
    let in_flight = || deployment(&table, "a").in_flight();

    let mut ending = chunks(send(&table, stream_chat("m")).await.expect("served"));
    assert_eq!(in_flight(), 1);
    for _ in 0..3 {
        ending.next().await.expect("a chunk").expect("not an error");
    }
    assert_eq!(in_flight(), 1, "not over until the stream ends");
    assert!(ending.next().await.is_none());
    assert_eq!(in_flight(), 0);

    let mut endless = chunks(send(&table, stream_chat("m")).await.expect("served"));
    endless.next().await.expect("a chunk").expect("not an error");
    assert_eq!(in_flight(), 1);
    drop(endless);
    assert_eq!(in_flight(), 0, "the client went away");
    assert_eq!(deployment(&table, "a").health(), State::Healthy { consecutive: 0 });
}

#[tokio::test(start_paused = true)]
async fn the_usage_a_stream_reports_counts_against_the_tpm() {
    within_one_minute(|| async {
        let a = streaming("a", || vec![chunk("a1"), usage_chunk(100)]);
        let b = streaming("b", || vec![chunk("b1")]);
        let table = table(vec![group(
            "m",
            Policy::LowestCost,
            vec![a.endpoint(EndpointSettings { tpm: Some(100), ..price(0.1) }), b.endpoint(price(5.0))],
        )]);
        let first = send(&table, stream_chat("m")).await.expect("served");
        assert_eq!(texts(first).await, ["a1", ""]);
        let second = send(&table, stream_chat("m")).await.expect("served");
        assert_eq!(texts(second).await, ["b1"], "a used its 100 tokens this minute");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_deployment_whose_streams_break_midway_is_cooled_down() {
    // Each stream starts well and then breaks: its first chunk must not count as a success
    // that resets the failure count, or such a deployment would never leave the rotation.
    let a = streaming("a", || vec![chunk("a1"), Err(failure(ErrorClass::UpstreamServer))]);
    let b = streaming("b", || vec![chunk("b1")]);
    let table =
        table(vec![group("m", Policy::LowestCost, vec![a.endpoint(price(0.1)), b.endpoint(price(5.0))])]);
    for _ in 0..3 {
        let mut stream = chunks(send(&table, stream_chat("m")).await.expect("a starts"));
        while stream.next().await.is_some() {}
    }
    assert!(
        matches!(deployment(&table, "a").health(), State::Cooling { .. }),
        "three broken streams cool it down: {:?}",
        deployment(&table, "a").health()
    );
    let response = send(&table, stream_chat("m")).await.expect("b serves");
    assert_eq!(texts(response).await, ["b1"]);
}
