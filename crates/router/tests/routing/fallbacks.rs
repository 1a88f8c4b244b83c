//! Fallbacks over retries over routing: which models are tried, in which order, under which
//! name, and what the client hears when all of them fail.

use std::collections::HashMap;

use switchyard_router::{
    Attempts, EndpointSettings, Policy, RouteTable,
    fallback::{ClientFallbacks, Fallbacks},
};
use switchyard_types::llm::{ErrorClass, LlmRequest};
use tower::ServiceExt;

use crate::support::{Fake, Stack, chat, group, retries, served_by, stack, table};

/// One single-deployment group per `(model, deployment)`.
fn models(deployments: &[(&str, &Fake)]) -> std::sync::Arc<RouteTable> {
    table(
        deployments
            .iter()
            .map(|(model, fake)| {
                group(model, Policy::WeightedRandom, vec![fake.endpoint(EndpointSettings::default())])
            })
            .collect(),
    )
}

fn general(models: &[&str]) -> Fallbacks {
    Fallbacks { general: models.iter().map(|m| m.to_string()).collect(), ..Fallbacks::default() }
}

fn with_fallbacks(table: &std::sync::Arc<RouteTable>, fallbacks: Vec<(&str, Fallbacks)>) -> Stack {
    let fallbacks = fallbacks.into_iter().map(|(model, f)| (model.to_owned(), f)).collect::<HashMap<_, _>>();
    stack(table, retries(1), fallbacks)
}

/// Sends `request`, returning the outcome and the models of its attempts in order.
async fn send(
    stack: &Stack,
    mut request: LlmRequest,
) -> (Result<String, switchyard_types::llm::LlmError>, Vec<String>) {
    let attempts = Attempts::of(&mut request);
    let outcome = stack.clone().oneshot(request).await.map(|r| served_by(&r).to_owned());
    (outcome, attempts.to_vec().iter().map(|a| a.model.to_string()).collect())
}

#[tokio::test(start_paused = true)]
async fn general_fallbacks_are_tried_in_order_after_the_models_own_retries() {
    let primary = Fake::failing("p", ErrorClass::UpstreamServer);
    let second = Fake::failing("s", ErrorClass::Overloaded);
    let third = Fake::ok("t");
    let table = models(&[("primary", &primary), ("second", &second), ("third", &third)]);
    let stack = with_fallbacks(&table, vec![("primary", general(&["second", "third"]))]);

    let (outcome, tried) = send(&stack, chat("primary")).await;
    assert_eq!(outcome.expect("the last fallback serves"), "t");
    assert_eq!(tried, ["primary", "primary", "second", "second", "third"]);
    assert_eq!((primary.calls(), second.calls(), third.calls()), (2, 2, 1));
}

#[tokio::test(start_paused = true)]
async fn the_fallbacks_deployment_is_sent_the_fallback_model() {
    let primary = Fake::failing("p", ErrorClass::Timeout);
    let backup = Fake::ok("b");
    let table = models(&[("primary", &primary), ("backup", &backup)]);
    let stack = with_fallbacks(&table, vec![("primary", general(&["backup"]))]);

    let (outcome, _) = send(&stack, chat("primary")).await;
    assert_eq!(outcome.expect("served"), "b");
    assert_eq!(primary.models(), ["primary", "primary"]);
    assert_eq!(backup.models(), ["backup"]);
}

#[tokio::test(start_paused = true)]
async fn context_length_and_content_policy_failures_use_their_own_lists() {
    let long = Fake::failing("l", ErrorClass::ContextLengthExceeded);
    let refused = Fake::failing("r", ErrorClass::ContentPolicy);
    let (general_fallback, big, lenient) = (Fake::ok("g"), Fake::ok("big"), Fake::ok("lenient"));
    let table = models(&[
        ("long", &long),
        ("refused", &refused),
        ("general", &general_fallback),
        ("big", &big),
        ("lenient", &lenient),
    ]);
    let lists = Fallbacks {
        general: vec!["general".into()],
        context_window: vec!["big".into()],
        content_policy: vec!["lenient".into()],
    };
    let stack = with_fallbacks(&table, vec![("long", lists.clone()), ("refused", lists)]);

    let (outcome, tried) = send(&stack, chat("long")).await;
    assert_eq!(outcome.expect("a larger model serves"), "big");
    assert_eq!(tried, ["long", "big"], "a prompt that does not fit is not retried");

    let (outcome, tried) = send(&stack, chat("refused")).await;
    assert_eq!(outcome.expect("a more lenient model serves"), "lenient");
    assert_eq!(tried, ["refused", "lenient"]);
    assert_eq!(general_fallback.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_clients_own_mistakes_do_not_fall_back() {
    let primary = Fake::failing("p", ErrorClass::BadRequest);
    let backup = Fake::ok("b");
    let table = models(&[("primary", &primary), ("backup", &backup)]);
    let lists = Fallbacks {
        general: vec!["backup".into()],
        context_window: vec!["backup".into()],
        content_policy: vec!["backup".into()],
    };
    let stack = with_fallbacks(&table, vec![("primary", lists)]);

    let mut request = chat("primary");
    request.extensions.insert(ClientFallbacks(vec!["backup".into()]));
    let (outcome, tried) = send(&stack, request).await;
    let error = outcome.expect_err("the request itself is wrong");
    assert_eq!(error.class, ErrorClass::BadRequest);
    assert!(!error.message.contains("models tried"), "{}", error.message);
    assert_eq!(tried, ["primary"]);
    assert_eq!(backup.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_clients_fallbacks_replace_the_configured_lists() {
    let primary = Fake::failing("p", ErrorClass::UpstreamServer);
    let unlisted = Fake::failing("u", ErrorClass::ContextLengthExceeded);
    let (configured, chosen) = (Fake::ok("configured"), Fake::ok("chosen"));
    let table = models(&[
        ("primary", &primary),
        ("unlisted", &unlisted),
        ("configured", &configured),
        ("chosen", &chosen),
    ]);
    let stack = with_fallbacks(&table, vec![("primary", general(&["configured"]))]);

    let mut request = chat("primary");
    request.extensions.insert(ClientFallbacks(vec!["chosen".into()]));
    let (outcome, _) = send(&stack, request).await;
    assert_eq!(outcome.expect("the client's fallback serves"), "chosen");
    assert_eq!(configured.calls(), 0);

    // A model without configured fallbacks, failing for a content reason, uses them too.
    let mut request = chat("unlisted");
    request.extensions.insert(ClientFallbacks(vec!["chosen".into()]));
    let (outcome, tried) = send(&stack, request).await;
    assert_eq!(outcome.expect("the client's fallback serves"), "chosen");
    assert_eq!(tried, ["unlisted", "chosen"]);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_fallback_model_is_skipped_and_does_not_hide_the_real_error() {
    let primary = Fake::failing("p", ErrorClass::UpstreamServer);
    let backup = Fake::ok("b");
    let table = models(&[("primary", &primary), ("backup", &backup)]);
    let stack = with_fallbacks(&table, vec![("primary", general(&["missing", "backup"]))]);

    let (outcome, _) = send(&stack, chat("primary")).await;
    assert_eq!(outcome.expect("the next fallback serves"), "b");

    let only = Fake::failing("o", ErrorClass::UpstreamServer);
    let table = models(&[("primary", &only)]);
    let stack = with_fallbacks(&table, vec![("primary", general(&["missing"]))]);
    let (outcome, _) = send(&stack, chat("primary")).await;
    let error = outcome.expect_err("nothing could serve");
    assert_eq!(error.class, ErrorClass::UpstreamServer, "the primary's error, not `missing`'s not-found");
}

#[tokio::test(start_paused = true)]
async fn when_every_model_fails_the_error_names_the_models_tried() {
    let primary = Fake::failing("p", ErrorClass::UpstreamServer);
    let second = Fake::failing("s", ErrorClass::Overloaded);
    let table = models(&[("primary", &primary), ("second", &second)]);
    let stack = with_fallbacks(&table, vec![("primary", general(&["second", "missing"]))]);

    let (outcome, _) = send(&stack, chat("primary")).await;
    let error = outcome.expect_err("every model failed");
    assert_eq!(error.class, ErrorClass::Overloaded, "the last failure");
    assert!(
        error.message.ends_with("(models tried: primary, second, missing.)"),
        "the message names the models tried: {}",
        error.message
    );
}
