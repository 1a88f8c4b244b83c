//! Model names: exact names, wildcard prefixes (`groq/*`) and what their deployments are sent,
//! and unknown models.

use switchyard_router::{EndpointSettings, Policy};
use switchyard_types::llm::ErrorClass;

use crate::support::{Fake, chat, group, send, served_by, table};

#[tokio::test]
async fn a_wildcard_forwards_the_matched_rest_to_a_deployment_that_takes_it_as_its_model() {
    let (groq, proxy) = (Fake::ok("groq"), Fake::ok("proxy"));
    let table = table(vec![
        group(
            "groq/*",
            Policy::WeightedRandom,
            vec![groq.endpoint(EndpointSettings::default()).forwarding_model()],
        ),
        group("proxy/*", Policy::WeightedRandom, vec![proxy.endpoint(EndpointSettings::default())]),
    ]);
    send(&table, chat("groq/llama-3.1-8b-instant")).await.expect("served");
    send(&table, chat("proxy/gpt-4o")).await.expect("served");
    assert_eq!(groq.models(), ["llama-3.1-8b-instant"]);
    assert_eq!(proxy.models(), ["proxy/gpt-4o"], "a deployment that does not forward gets the name as sent");
}

#[tokio::test]
async fn exact_names_win_over_prefixes_and_longer_prefixes_over_shorter_ones() {
    let (any, exact, fast) = (Fake::ok("any"), Fake::ok("exact"), Fake::ok("fast"));
    let table = table(vec![
        group(
            "groq/*",
            Policy::WeightedRandom,
            vec![any.endpoint(EndpointSettings::default()).forwarding_model()],
        ),
        group("groq/special", Policy::WeightedRandom, vec![exact.endpoint(EndpointSettings::default())]),
        group(
            "groq/fast/*",
            Policy::WeightedRandom,
            vec![fast.endpoint(EndpointSettings::default()).forwarding_model()],
        ),
    ]);
    let served = |model: &'static str| {
        let table = table.clone();
        async move { served_by(&send(&table, chat(model)).await.expect("served")).to_owned() }
    };
    assert_eq!(served("groq/special").await, "exact");
    assert_eq!(served("groq/fast/llama").await, "fast");
    assert_eq!(served("groq/specialist").await, "any");
    assert_eq!(exact.models(), ["groq/special"]);
    assert_eq!(fast.models(), ["llama"]);
    assert_eq!(any.models(), ["specialist"]);
    let (group, rest) = table.resolve("groq/fast/x").expect("resolves");
    assert_eq!((group.name(), rest), ("groq/fast/*", Some("x")));
}

#[tokio::test]
async fn an_unknown_model_is_not_found_and_the_error_lists_the_models() {
    let a = Fake::ok("a");
    let table = table(vec![
        group("gpt-4o-mini", Policy::WeightedRandom, vec![a.endpoint(EndpointSettings::default())]),
        group("groq/*", Policy::WeightedRandom, vec![a.endpoint(EndpointSettings::default())]),
    ]);
    for model in ["gpt-5", "groq/", "groq"] {
        let error = send(&table, chat(model)).await.expect_err("no such model");
        assert_eq!(error.class, ErrorClass::NotFound, "{model}");
        assert_eq!(error.param.as_deref(), Some("model"));
        assert!(error.message.contains(&format!("`{model}`")), "{}", error.message);
        assert!(error.message.contains("Available models: gpt-4o-mini, groq/*."), "{}", error.message);
    }
    assert_eq!(a.calls(), 0);
}
