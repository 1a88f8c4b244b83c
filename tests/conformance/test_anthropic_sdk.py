"""The official `anthropic` Python SDK against the gateway's `/v1/messages`.

Each behaviour runs on `claude-sonnet`, a native Anthropic deployment (Anthropic to Anthropic,
forwarded as sent), on `claude-via-openai`, an OpenAI-dialect deployment (the request and answer
translated both ways), and on Gemini and Bedrock deployments (translated twice). The SDK parses every answer into its own types, so a
shape it does not accept fails here.
"""

from __future__ import annotations

import anthropic
import pytest

from conftest import MASTER_KEY, Stack

# A native Anthropic deployment, an OpenAI-dialect one, and two more native adapters reached
# through two translations (Messages → Chat → Gemini / Bedrock).
MODELS = ["claude-sonnet", "claude-via-openai", "gemini-flash", "bedrock-claude"]

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string", "description": "The city"}},
        "required": ["location"],
    },
}


@pytest.mark.parametrize("model", MODELS)
def test_message(anthropic_client: anthropic.Anthropic, model: str) -> None:
    message = anthropic_client.messages.create(
        model=model,
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "Say hello."}],
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text.strip()
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_multi_turn(anthropic_client: anthropic.Anthropic, model: str) -> None:
    message = anthropic_client.messages.create(
        model=model,
        max_tokens=64,
        messages=[
            {"role": "user", "content": "Hello."},
            {"role": "assistant", "content": "Hi! How can I help?"},
            {"role": "user", "content": [{"type": "text", "text": "Tell me a fact."}]},
        ],
    )
    assert message.content[0].type == "text"


@pytest.mark.parametrize("model", MODELS)
def test_stream(anthropic_client: anthropic.Anthropic, model: str) -> None:
    with anthropic_client.messages.stream(
        model=model,
        max_tokens=64,
        messages=[{"role": "user", "content": "Count to five."}],
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1, "the text arrives in pieces"
    assert final.content[0].type == "text"
    assert final.content[0].text == "".join(pieces)
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_raw_stream_events_come_in_anthropics_order(anthropic_client: anthropic.Anthropic, model: str) -> None:
    events = anthropic_client.messages.create(
        model=model,
        max_tokens=64,
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
    )
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert "content_block_start" in kinds and "content_block_delta" in kinds and "content_block_stop" in kinds


@pytest.mark.parametrize("model", MODELS)
def test_tool_use_and_tool_result(anthropic_client: anthropic.Anthropic, model: str) -> None:
    question = {"role": "user", "content": "What is the weather in Paris?"}
    message = anthropic_client.messages.create(
        model=model, max_tokens=256, tools=[WEATHER_TOOL], messages=[question]
    )
    assert message.stop_reason == "tool_use"
    uses = [block for block in message.content if block.type == "tool_use"]
    assert len(uses) == 1
    assert uses[0].name == "get_weather"
    assert isinstance(uses[0].input, dict)
    assert uses[0].id

    follow_up = anthropic_client.messages.create(
        model=model,
        max_tokens=256,
        tools=[WEATHER_TOOL],
        messages=[
            question,
            {"role": "assistant", "content": message.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "15 degrees"}]},
        ],
    )
    assert follow_up.stop_reason == "end_turn"
    assert follow_up.content[0].type == "text"


@pytest.mark.parametrize("model", MODELS)
def test_streamed_tool_use_reassembles(anthropic_client: anthropic.Anthropic, model: str) -> None:
    with anthropic_client.messages.stream(
        model=model,
        max_tokens=256,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        final = stream.get_final_message()
    uses = [block for block in final.content if block.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "get_weather"
    assert isinstance(uses[0].input, dict) and uses[0].input, "the input JSON was reassembled"
    assert final.stop_reason == "tool_use"


def test_thinking_blocks_and_signatures_come_back_from_an_anthropic_deployment(
    anthropic_client: anthropic.Anthropic,
) -> None:
    message = anthropic_client.messages.create(
        model="claude-sonnet",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "Think, then answer."}],
    )
    thinking = [block for block in message.content if block.type == "thinking"]
    assert thinking and thinking[0].signature, "the signature survives the gateway"
    # Sent back as the next turn's history, as extended thinking with tools requires.
    again = anthropic_client.messages.create(
        model="claude-sonnet",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[
            {"role": "user", "content": "Think, then answer."},
            {"role": "assistant", "content": message.content},
            {"role": "user", "content": "And again."},
        ],
    )
    assert again.content


@pytest.mark.parametrize("model", MODELS)
def test_count_tokens(anthropic_client: anthropic.Anthropic, model: str) -> None:
    short = anthropic_client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "Hi"}])
    long = anthropic_client.messages.count_tokens(
        model=model,
        system="You are a careful assistant.",
        messages=[{"role": "user", "content": "Tell me about the history of railway switchyards. " * 20}],
    )
    assert short.input_tokens > 0
    assert long.input_tokens > short.input_tokens * 10


def test_wrong_key_is_an_authentication_error(stack: Stack) -> None:
    with anthropic.Anthropic(base_url=stack.root_url, api_key="sk-wrong", max_retries=0) as sdk:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            sdk.messages.create(model="claude-sonnet", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 401
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_unknown_model_is_not_found(anthropic_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        anthropic_client.messages.create(
            model="claude-nonexistent", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert "claude-nonexistent" in caught.value.message
    assert caught.value.body["error"]["type"] == "not_found_error"


def test_server_tools_cannot_run_on_another_providers_model(anthropic_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client.messages.create(
            model="claude-via-openai",
            max_tokens=10,
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
            messages=[{"role": "user", "content": "search"}],
        )
    assert "web_search_20250305" in caught.value.message


def test_the_key_works_as_x_api_key_and_as_bearer(stack: Stack) -> None:
    with anthropic.Anthropic(base_url=stack.root_url, auth_token=MASTER_KEY, api_key=None, max_retries=0) as sdk:
        message = sdk.messages.create(model="claude-sonnet", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert message.content
