"""The official `openai` Python SDK against models served by the native adapters: each request
is translated into the provider's own dialect (Anthropic Messages, ...), sent to the testkit mock
that speaks it, and the answer translated back; the SDK parses it into its own types.
"""

from __future__ import annotations

import json

import openai
import pytest

# Models served by a native adapter (see conftest's CONFIG_TEMPLATE): Anthropic Messages, Gemini
# generateContent, Bedrock Converse (SigV4, binary event streams) and Cohere v2 chat.
NATIVE = ["claude-sonnet", "gemini-flash", "bedrock-claude", "command-a"]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}


@pytest.mark.parametrize("model", NATIVE)
def test_chat_completion(client: openai.OpenAI, model: str) -> None:
    completion = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}],
        max_tokens=64,
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


@pytest.mark.parametrize("model", NATIVE)
def test_streaming_with_usage(client: openai.OpenAI, model: str) -> None:
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Count to five."}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize("model", NATIVE)
def test_streaming_without_usage_has_no_usage_chunk(client: openai.OpenAI, model: str) -> None:
    chunks = list(
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], stream=True)
    )
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


@pytest.mark.parametrize("model", NATIVE)
def test_tool_call_and_result(client: openai.OpenAI, model: str) -> None:
    question = {"role": "user", "content": "What is the weather in Paris?"}
    first = client.chat.completions.create(model=model, messages=[question], tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments), dict)

    follow_up = client.chat.completions.create(
        model=model,
        tools=[WEATHER],
        messages=[
            question,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "15 degrees"},
        ],
    )
    assert follow_up.choices[0].finish_reason == "stop"
    assert follow_up.choices[0].message.content


@pytest.mark.parametrize("model", NATIVE)
def test_streamed_tool_call_reassembles(client: openai.OpenAI, model: str) -> None:
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
    )
    name, arguments, finish = "", "", None
    for chunk in stream:
        if not chunk.choices:
            continue
        for call in chunk.choices[0].delta.tool_calls or []:
            name += call.function.name or ""
            arguments += call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather"
    assert isinstance(json.loads(arguments), dict)
    assert finish == "tool_calls"
