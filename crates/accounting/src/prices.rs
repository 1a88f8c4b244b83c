//! Model prices and what a request cost: the built-in catalog and the cost of a [`Usage`].
//!
//! The built-in catalog (`prices/catalog.json`, embedded in the binary) holds list prices in US
//! dollars per million tokens for the major providers' current models, with the source they
//! were read from and the date ([`Catalog::source`], [`Catalog::as_of`]). Prices change: an
//! operator overrides or extends them with [`Catalog::from_json`] in the same format.
//!
//! What is priced: input tokens, split into uncached, cache-read and cache-write tokens, and
//! output tokens, split into visible and reasoning tokens. What is not: long-context tiers
//! (the catalog holds the first tier), batch, flex and priority service tiers, regional
//! uplifts, audio and image tokens, per-request fees (web search). Those costs are understated.
//!
//! ```
//! use switchyard_accounting::{model::Usage, prices::Catalog};
//!
//! let price = Catalog::builtin().price("openai", "gpt-4o-2024-08-06").expect("priced");
//! let usage = Usage { input: 1_000_000, output: 0, ..Usage::default() };
//! assert_eq!(price.cost(&usage), 2.5);
//! ```

use std::{collections::HashMap, sync::OnceLock};

use serde::{Deserialize, Serialize};

use crate::model::{Nanos, Usage};

/// The catalog compiled into the binary.
const BUILTIN_JSON: &str = include_str!("../prices/catalog.json");

/// What a model costs, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per million prompt tokens.
    pub input: f64,
    /// Per million completion tokens.
    pub output: f64,
    /// Per million prompt tokens read from the provider's cache; `None`: as `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
    /// Per million prompt tokens written to the provider's cache; `None`: as `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation: Option<f64>,
    /// Per million reasoning tokens; `None`: as `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<f64>,
}

// === impl Price ===

impl Price {
    /// What `usage` costs, in dollars.
    ///
    /// `usage.input` includes cached and cache-creation tokens and `usage.output` includes
    /// reasoning tokens ([`Usage`]); each part is priced at its own rate. When a provider
    /// reports more cached or cache-creation tokens than input tokens (or more reasoning than
    /// output), the parts are charged as reported and the remainder counts as zero, so that an
    /// inconsistent report never makes a request cheaper than its parts.
    pub fn cost(&self, usage: &Usage) -> f64 {
        self.micro_dollars(usage) / 1e6
    }

    /// [`Price::cost`] in nano-dollars, rounded up as [`crate::model::to_nanos`] does, so that no spend
    /// rounds to free.
    pub fn cost_nanos(&self, usage: &Usage) -> Nanos {
        ceil_nanos(self.micro_dollars(usage) * 1e3)
    }

    /// Tokens times dollars per million tokens: millionths of a dollar. Summed in this unit
    /// and divided once, since dividing each part first adds rounding error that a ceiling
    /// then turns into a whole extra nano-dollar.
    fn micro_dollars(&self, usage: &Usage) -> f64 {
        let uncached = usage.input.saturating_sub(usage.cached_input).saturating_sub(usage.cache_creation);
        let visible = usage.output.saturating_sub(usage.reasoning);
        let parts = [
            (uncached, self.input),
            (usage.cached_input, self.cached_input.unwrap_or(self.input)),
            (usage.cache_creation, self.cache_creation.unwrap_or(self.input)),
            (visible, self.output),
            (usage.reasoning, self.reasoning.unwrap_or(self.output)),
        ];
        parts.iter().map(|&(tokens, rate)| tokens as f64 * rate).sum::<f64>().max(0.0)
    }

    fn is_valid(&self) -> bool {
        let ok = |rate: f64| rate.is_finite() && rate >= 0.0;
        ok(self.input)
            && ok(self.output)
            && [self.cached_input, self.cache_creation, self.reasoning].into_iter().flatten().all(ok)
    }
}

/// Nano-dollars rounded up to a whole one. A product of decimal rates lands a hair above a
/// whole number (`50.000000000000007`), so a millionth of a nano-dollar is forgiven before the
/// ceiling; any spend at all still costs at least one nano-dollar.
fn ceil_nanos(nanos: f64) -> Nanos {
    if nanos.is_finite() && nanos > 0.0 {
        (nanos - 1e-6).ceil().clamp(1.0, i64::MAX as f64) as Nanos
    } else {
        0
    }
}

/// The most a request may cost before it runs, for a budget reservation: every prompt token
/// at the uncached input rate and every allowed output token at the dearer of the output and
/// reasoning rates. Settlement later replaces it with the real cost.
pub fn estimate_nanos(price: &Price, prompt_tokens: u64, max_output_tokens: u64) -> Nanos {
    let output_rate = price.output.max(price.reasoning.unwrap_or(price.output));
    ceil_nanos((prompt_tokens as f64 * price.input + max_output_tokens as f64 * output_rate) * 1e3)
}

/// Prices by provider and model.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    source: String,
    as_of: String,
    /// Provider preset name, then the model id as the provider names it. Two levels, so that
    /// a lookup borrows the caller's strings instead of building a key.
    prices: HashMap<String, HashMap<String, Price>>,
}

/// The file format of a catalog.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    source: String,
    as_of: String,
    prices: Vec<Entry>,
}

/// One entry of a catalog file. The price fields are spelt out rather than flattened, since
/// serde cannot deny unknown fields through a flattened struct.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    provider: String,
    model: String,
    input: f64,
    output: f64,
    #[serde(default)]
    cached_input: Option<f64>,
    #[serde(default)]
    cache_creation: Option<f64>,
    #[serde(default)]
    reasoning: Option<f64>,
}

/// Why a catalog could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The document is not a valid catalog.
    #[error("the price catalog is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// A price is negative, infinite or not a number.
    #[error("the price of {provider}/{model} is negative or not a finite number")]
    InvalidPrice {
        /// The entry's provider.
        provider: String,
        /// The entry's model.
        model: String,
    },
    /// The same provider and model appear twice.
    #[error("{provider}/{model} is priced twice")]
    Duplicate {
        /// The entry's provider.
        provider: String,
        /// The entry's model.
        model: String,
    },
}

/// Aggregators that name a model `vendor/model` and charge the vendor's list price, and the
/// vendors they name, as Switchyard's preset names.
const OPENROUTER_VENDORS: &[(&str, &str)] = &[
    ("openai", "openai"),
    ("anthropic", "anthropic"),
    ("google", "gemini"),
    ("mistralai", "mistral"),
    ("deepseek", "deepseek"),
    ("x-ai", "xai"),
];

// === impl Catalog ===

impl Catalog {
    /// The catalog built into the binary, parsed on first use.
    ///
    /// A test proves the embedded file parses; should it ever not, the error is logged once
    /// and the catalog is empty (every model unpriced) rather than the process failing.
    pub fn builtin() -> &'static Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            Catalog::from_json(BUILTIN_JSON).unwrap_or_else(|err| {
                tracing::error!(error = %err, "the built-in price catalog does not parse; no model is priced");
                Catalog::default()
            })
        })
    }

    /// A catalog in the built-in file's format: `{"source", "as_of", "prices": [{"provider",
    /// "model", "input", "output", "cached_input"?, "cache_creation"?, "reasoning"?}]}`,
    /// prices in dollars per million tokens. Unknown fields, duplicates and negative or
    /// non-finite prices are errors.
    pub fn from_json(json: &str) -> Result<Self, CatalogError> {
        let file: CatalogFile = serde_json::from_str(json)?;
        let mut prices: HashMap<String, HashMap<String, Price>> = HashMap::new();
        for entry in file.prices {
            let price = Price {
                input: entry.input,
                output: entry.output,
                cached_input: entry.cached_input,
                cache_creation: entry.cache_creation,
                reasoning: entry.reasoning,
            };
            if !price.is_valid() {
                return Err(CatalogError::InvalidPrice { provider: entry.provider, model: entry.model });
            }
            let models = prices.entry(entry.provider.clone()).or_default();
            if models.contains_key(&entry.model) {
                return Err(CatalogError::Duplicate { provider: entry.provider, model: entry.model });
            }
            models.insert(entry.model, price);
        }
        Ok(Self { source: file.source, as_of: file.as_of, prices })
    }

    /// Where the prices come from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// When they were read (`YYYY-MM-DD`).
    pub fn as_of(&self) -> &str {
        &self.as_of
    }

    /// How many models are priced.
    pub fn len(&self) -> usize {
        self.prices.values().map(HashMap::len).sum()
    }

    /// Whether no model is priced.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry, as (provider, model, price), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &Price)> {
        self.prices.iter().flat_map(|(provider, models)| {
            models.iter().map(move |(model, price)| (provider.as_str(), model.as_str(), price))
        })
    }

    /// The price of `model` served by the provider preset `provider`, tried in this order,
    /// the first found winning:
    ///
    /// 1. exactly `(provider, model)`;
    /// 2. `(provider, model)` without a date suffix, `-YYYY-MM-DD` or `-YYYYMMDD`
    ///    (`gpt-4o-2024-08-06` is priced as `gpt-4o`), so that a dated snapshot the catalog
    ///    does not list costs what its alias costs; a snapshot priced differently is listed
    ///    itself and wins at step 1 (`gpt-4o-2024-05-13`);
    /// 3. for `azure`, the same model (steps 1 and 2) under `openai`: Azure OpenAI names
    ///    deployments after the model and charges OpenAI's list price;
    /// 4. for `openrouter`, a `vendor/model` id under the vendor's preset (`openai/`,
    ///    `anthropic/`, `google/` as `gemini`, `mistralai/` as `mistral`, `deepseek/`,
    ///    `x-ai/` as `xai`): OpenRouter passes the vendor's price through. OpenRouter's own
    ///    spellings (`anthropic/claude-sonnet-4.5`) and variants (`:free`) do not match.
    ///
    /// Nothing else: no case folding, prefix or fuzzy matching. Hosts that price open models
    /// themselves (together, fireworks, deepinfra, groq, ...) are priced only by their own
    /// entries, and local servers (vllm, ollama, lmstudio) are unpriced.
    pub fn price(&self, provider: &str, model: &str) -> Option<&Price> {
        self.direct(provider, model).or_else(|| match provider {
            "azure" => self.direct("openai", model),
            "openrouter" => {
                let (vendor, rest) = model.split_once('/')?;
                let (_, preset) = OPENROUTER_VENDORS.iter().find(|(name, _)| *name == vendor)?;
                self.direct(preset, rest)
            }
            _ => None,
        })
    }

    /// Steps 1 and 2 of [`Catalog::price`].
    fn direct(&self, provider: &str, model: &str) -> Option<&Price> {
        let models = self.prices.get(provider)?;
        models.get(model).or_else(|| models.get(without_date_suffix(model)?))
    }
}

/// `model` without a trailing `-YYYY-MM-DD` or `-YYYYMMDD` (a year from 2000), when it has one.
fn without_date_suffix(model: &str) -> Option<&str> {
    let bytes = model.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    let n = bytes.len();
    // `-YYYY-MM-DD`: 11 bytes.
    if n > 11
        && bytes[n - 11] == b'-'
        && bytes[n - 6] == b'-'
        && bytes[n - 3] == b'-'
        && digits(n - 10..n - 6)
        && digits(n - 5..n - 3)
        && digits(n - 2..n)
        && bytes[n - 10] == b'2'
    {
        return Some(&model[..n - 11]);
    }
    // `-YYYYMMDD`: 9 bytes.
    if n > 9 && bytes[n - 9] == b'-' && digits(n - 8..n) && bytes[n - 8] == b'2' {
        return Some(&model[..n - 9]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64) -> Usage {
        Usage { input, output, ..Usage::default() }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn the_builtin_catalog_parses_and_every_price_is_finite_and_not_negative() {
        let catalog = Catalog::from_json(BUILTIN_JSON).expect("the embedded catalog parses");
        assert!(catalog.len() >= 40, "{} entries", catalog.len());
        assert_eq!(Catalog::builtin().len(), catalog.len());
        assert!(!catalog.source().is_empty());
        assert_eq!(catalog.as_of().len(), 10, "YYYY-MM-DD: {}", catalog.as_of());
        for (provider, model, price) in catalog.iter() {
            assert!(price.is_valid(), "{provider}/{model}: {price:?}");
            assert!(price.input > 0.0, "{provider}/{model} has no input price");
            assert!(
                crate_presets().contains(&provider),
                "{provider} is not a Switchyard preset name ({model})"
            );
        }
    }

    /// The provider names the catalog may use: Switchyard's presets (switchyard-providers,
    /// which this crate does not depend on) plus the native dialects.
    fn crate_presets() -> [&'static str; 8] {
        ["openai", "azure", "anthropic", "gemini", "mistral", "groq", "deepseek", "xai"]
    }

    #[test]
    fn every_model_the_brief_names_is_priced() {
        let catalog = Catalog::builtin();
        for (provider, model) in [
            ("openai", "gpt-4o"),
            ("openai", "gpt-4o-mini"),
            ("openai", "gpt-4.1"),
            ("openai", "gpt-4.1-mini"),
            ("openai", "gpt-4.1-nano"),
            ("openai", "o1"),
            ("openai", "o3"),
            ("openai", "o3-mini"),
            ("openai", "o4-mini"),
            ("openai", "gpt-5"),
            ("openai", "gpt-5-mini"),
            ("openai", "gpt-5-nano"),
            ("openai", "text-embedding-3-small"),
            ("openai", "text-embedding-3-large"),
            ("anthropic", "claude-sonnet-4-5-20250929"),
            ("anthropic", "claude-3-5-haiku-20241022"),
            ("gemini", "gemini-2.0-flash"),
            ("gemini", "gemini-2.5-pro"),
            ("gemini", "gemini-2.5-flash"),
            ("gemini", "gemini-2.5-flash-lite"),
            ("mistral", "mistral-large-latest"),
            ("groq", "llama-3.3-70b-versatile"),
            ("deepseek", "deepseek-chat"),
            ("deepseek", "deepseek-reasoner"),
            ("xai", "grok-4"),
        ] {
            assert!(catalog.price(provider, model).is_some(), "{provider}/{model}");
        }
    }

    #[test]
    fn cost_prices_each_kind_of_token_at_its_rate() {
        let price = Price {
            input: 3.0,
            output: 15.0,
            cached_input: Some(0.3),
            cache_creation: Some(3.75),
            reasoning: Some(20.0),
        };
        let usage = Usage {
            input: 1_000_000 + 2_000_000 + 4_000_000,
            cached_input: 2_000_000,
            cache_creation: 4_000_000,
            output: 1_000_000 + 500_000,
            reasoning: 500_000,
        };
        // 1M uncached at 3, 2M cached at 0.3, 4M written at 3.75, 1M visible at 15, 0.5M reasoning at 20.
        assert!(close(price.cost(&usage), 3.0 + 0.6 + 15.0 + 15.0 + 10.0), "{}", price.cost(&usage));
        assert_eq!(price.cost_nanos(&usage), 43_600_000_000);
    }

    #[test]
    fn missing_rates_fall_back_to_input_and_output() {
        let price =
            Price { input: 2.0, output: 8.0, cached_input: None, cache_creation: None, reasoning: None };
        let usage = Usage {
            input: 1_000_000,
            cached_input: 250_000,
            cache_creation: 250_000,
            output: 1_000_000,
            reasoning: 400_000,
        };
        assert!(close(price.cost(&usage), 2.0 + 8.0));
    }

    #[test]
    fn an_inconsistent_report_charges_the_parts_as_reported() {
        let price =
            Price { input: 1.0, output: 1.0, cached_input: Some(0.5), cache_creation: None, reasoning: None };
        let usage = Usage { input: 100, cached_input: 300, output: 10, reasoning: 50, ..Usage::default() };
        // No negative uncached input: 300 cached at 0.5, 50 reasoning at 1.
        assert!(close(price.cost(&usage), (300.0 * 0.5 + 50.0) / 1e6));
    }

    #[test]
    fn nanos_are_exact_for_decimal_rates_and_a_small_request_never_rounds_to_free() {
        let nano = Catalog::builtin().price("openai", "gpt-5-nano").expect("priced");
        assert_eq!(nano.cost_nanos(&usage(1, 0)), 50, "$0.05 per million is 50 nano-dollars a token");
        let cached = Usage { input: 3, cached_input: 3, ..Usage::default() };
        assert_eq!(nano.cost_nanos(&cached), 15);
        assert_eq!(nano.cost_nanos(&usage(0, 0)), 0);
        let tiny =
            Price { input: 0.0001, output: 0.0, cached_input: None, cache_creation: None, reasoning: None };
        assert_eq!(tiny.cost_nanos(&usage(1, 0)), 1, "a tenth of a nano-dollar rounds up to one");
    }

    #[test]
    fn known_requests_cost_what_the_price_list_says() {
        let catalog = Catalog::builtin();
        let gpt4o = catalog.price("openai", "gpt-4o").expect("priced");
        // 1,000 prompt tokens (200 cached) and 500 completion tokens on gpt-4o:
        // 800 * 2.5 + 200 * 1.25 + 500 * 10 = 7,250 micro-dollars.
        let used = Usage { input: 1000, cached_input: 200, output: 500, ..Usage::default() };
        assert_eq!(gpt4o.cost_nanos(&used), 7_250_000);

        let sonnet = catalog.price("anthropic", "claude-sonnet-4-5").expect("priced");
        let used = Usage { input: 10_000, cache_creation: 8_000, output: 1_000, ..Usage::default() };
        // 2,000 * 3 + 8,000 * 3.75 + 1,000 * 15 = 51,000 micro-dollars.
        assert_eq!(sonnet.cost_nanos(&used), 51_000_000);
    }

    #[test]
    fn dated_snapshots_fall_back_to_their_alias_unless_priced_themselves() {
        let catalog = Catalog::builtin();
        let alias = catalog.price("openai", "gpt-4o").copied();
        assert_eq!(catalog.price("openai", "gpt-4o-2024-08-06").copied(), alias);
        assert_eq!(catalog.price("openai", "gpt-4o-2024-05-13").map(|p| p.input), Some(5.0));
        assert_eq!(
            catalog.price("anthropic", "claude-haiku-4-5-20991231").copied(),
            catalog.price("anthropic", "claude-haiku-4-5").copied()
        );
        assert_eq!(
            catalog.price("anthropic", "claude-3-5-haiku-20241022").map(|p| p.input),
            Some(0.8),
            "Anthropic's dated id is listed as Anthropic names it"
        );
    }

    #[test]
    fn azure_and_openrouter_fall_back_to_the_original_provider() {
        let catalog = Catalog::builtin();
        let gpt41 = catalog.price("openai", "gpt-4.1").copied();
        assert!(gpt41.is_some());
        assert_eq!(catalog.price("azure", "gpt-4.1").copied(), gpt41);
        assert_eq!(catalog.price("azure", "gpt-4.1-2025-04-14").copied(), gpt41);
        assert_eq!(catalog.price("openrouter", "openai/gpt-4.1").copied(), gpt41);
        assert_eq!(
            catalog.price("openrouter", "google/gemini-2.5-pro").copied(),
            catalog.price("gemini", "gemini-2.5-pro").copied()
        );
        assert_eq!(
            catalog.price("openrouter", "x-ai/grok-4").copied(),
            catalog.price("xai", "grok-4").copied()
        );
    }

    #[test]
    fn nothing_fuzzy_matches() {
        let catalog = Catalog::builtin();
        for (provider, model) in [
            ("openai", "GPT-4o"),
            ("openai", "gpt-4o-latest-preview"),
            ("openai", "gpt-4"),
            ("together", "gpt-4o"),
            ("vllm", "gpt-4o"),
            ("openrouter", "gpt-4o"),
            ("openrouter", "anthropic/claude-sonnet-4.5"),
            ("openrouter", "meta-llama/llama-3.3-70b-instruct"),
            ("groq", "gpt-4o"),
            ("azure", "claude-sonnet-4-5"),
            ("mistral", "mistral-large"),
        ] {
            assert!(catalog.price(provider, model).is_none(), "{provider}/{model} must be unpriced");
        }
    }

    #[test]
    fn date_suffixes_are_recognised_exactly() {
        assert_eq!(without_date_suffix("gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(without_date_suffix("claude-3-5-haiku-20241022"), Some("claude-3-5-haiku"));
        assert_eq!(without_date_suffix("gpt-4-0613"), None, "MMDD is not a date suffix");
        assert_eq!(without_date_suffix("mistral-large-2411"), None);
        assert_eq!(without_date_suffix("model-12345678"), None, "years start with 2");
        assert_eq!(without_date_suffix("-2024-08-06"), None, "nothing left");
        assert_eq!(without_date_suffix("x-2024-8-06"), None);
        assert_eq!(without_date_suffix("é-2024-08-06"), Some("é"));
    }

    #[test]
    fn estimates_reserve_the_most_a_request_may_cost() {
        let price = Price {
            input: 2.0,
            output: 8.0,
            cached_input: Some(0.5),
            cache_creation: None,
            reasoning: Some(12.0),
        };
        // 1,000 prompt tokens at 2 and 100 output tokens at the dearer 12.
        assert_eq!(estimate_nanos(&price, 1000, 100), 2_000_000 + 1_200_000);
        assert_eq!(estimate_nanos(&price, 0, 0), 0);
    }

    #[test]
    fn bad_catalogs_are_refused_with_the_entry_named() {
        let bad = |prices: &str| {
            Catalog::from_json(&format!(r#"{{"source":"s","as_of":"2026-01-01","prices":[{prices}]}}"#))
                .expect_err("refused")
                .to_string()
        };
        assert!(bad(r#"{"provider":"p","model":"m","input":-1,"output":1}"#).contains("p/m"));
        assert!(
            bad(r#"{"provider":"p","model":"m","input":1,"output":1,"cached":1}"#).contains("unknown field")
        );
        assert!(
            bad(r#"{"provider":"p","model":"m","input":1,"output":1},{"provider":"p","model":"m","input":2,"output":2}"#)
                .contains("twice")
        );
        let ok = Catalog::from_json(r#"{"source":"mine","as_of":"2026-01-01","prices":[{"provider":"p","model":"m","input":1,"output":2}]}"#)
            .expect("valid");
        assert_eq!((ok.source(), ok.len()), ("mine", 1));
        assert_eq!(ok.price("p", "m").map(|p| p.output), Some(2.0));
    }
}
