"""The official `openai` Python SDK against the real `switchyard` binary.

The gateway serves three models (conftest.py): `gpt-4o-mini` and `text-embedding-3-small` on
`switchyard-mock` (deterministic answers: text `tok0 tok1 ... ` of 5 tokens; with tools, a call
of the first tool with arguments {"location":"Paris"}; unit-length embedding vectors, 8 values
by default), and `broken`, whose provider port refuses connections.

Each test asserts what an application written against OpenAI relies on: the SDK's own types
parse, streams reassemble, errors raise the SDK's exception classes with the OpenAI envelope.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import subprocess
import time

import openai
import pytest
from openai.types import CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from conftest import MASTER_KEY, UPSTREAM_KEY, Stack, http_get

CHAT_MODEL = "gpt-4o-mini"
EMBED_MODEL = "text-embedding-3-small"
MODEL_NAMES = [
    CHAT_MODEL,
    EMBED_MODEL,
    "broken",
    "claude-sonnet",
    "claude-via-openai",
    "gemini-flash",
    "bedrock-claude",
    "command-a",
]
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello."},
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
            "additionalProperties": False,
        },
    },
}
WEATHER_QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
# The mock's answer to MESSAGES-like requests: 5 tokens, as `tok{i} ` each.
MOCK_TEXT = "tok0 tok1 tok2 tok3 tok4 "


def mock_prompt_tokens(messages: list[dict]) -> int:
    """What the mock reports as prompt_tokens: characters of text content (strings and the
    `text` of content parts) / 4 + 1. Equal numbers mean the text reached the provider whole."""
    chars = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(part.get("text", "")) for part in content)
    return chars // 4 + 1


def wait_for_mock(stack: Stack, counter: str, at_least: int, timeout: float = 5.0) -> dict[str, int]:
    """Bounded polling of the mock's counters (they are bumped as the mock finishes writing)."""
    deadline = time.monotonic() + timeout
    stats = stack.mock_stats()
    while stats[counter] < at_least and time.monotonic() < deadline:
        time.sleep(0.02)
        stats = stack.mock_stats()
    return stats


def assert_usage_adds_up(usage) -> None:
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def assert_secrets_absent(text: str) -> None:
    assert UPSTREAM_KEY not in text, f"the upstream key leaked to the client: {text}"
    assert MASTER_KEY not in text, f"the master key was echoed to the client: {text}"


def assert_openai_envelope(err: openai.APIStatusError) -> dict:
    """The body is `{"error": {"message", "type", "param", "code"}}`, as OpenAI sends it."""
    assert err.response.headers["content-type"].startswith("application/json")
    envelope = err.response.json()
    assert set(envelope) == {"error"}, envelope
    error = envelope["error"]
    assert {"message", "type", "param", "code"} <= set(error), error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    # The SDK exposes the same fields.
    assert err.body == error
    assert err.type == error["type"]
    assert err.code == error["code"]
    assert err.param == error["param"]
    assert err.request_id, "every answer, errors included, carries x-request-id"
    assert_secrets_absent(err.response.text)
    return error


# --- the binary ---------------------------------------------------------------------------------


def test_check_accepts_the_configuration(stack: Stack) -> None:
    result = subprocess.run(
        [str(stack.gateway_bin), "check", "--config", str(stack.config_path)],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"switchyard check exited {result.returncode}:\n{output}"
    for name in MODEL_NAMES:
        assert name in output, f"switchyard check does not say it serves {name}:\n{output}"
    assert_secrets_absent(output)


# --- chat completions ---------------------------------------------------------------------------


def test_chat_completion(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model=CHAT_MODEL, messages=MESSAGES)
    assert raw.status_code == 200
    assert raw.headers["x-request-id"]
    assert raw.headers["x-switchyard-deployment"] == "openai/mock-gpt"

    completion = raw.parse()
    assert isinstance(completion, ChatCompletion)
    assert completion.object == "chat.completion"
    assert completion.id
    assert isinstance(completion.model, str) and completion.model
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == MOCK_TEXT
    assert choice.message.tool_calls is None
    assert_usage_adds_up(completion.usage)
    assert completion.usage.prompt_tokens == mock_prompt_tokens(MESSAGES)


def test_non_ascii_text_arrives_intact(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Grüße, 世界! 👋🏽 «quoted» \\ \"escaped\" \u2028 line"}]
    completion = client.chat.completions.create(model=CHAT_MODEL, messages=messages)
    assert completion.choices[0].message.content == MOCK_TEXT
    assert completion.usage.prompt_tokens == mock_prompt_tokens(messages)


def test_base_url_without_v1(stack: Stack) -> None:
    """The gateway also serves the OpenAI paths without the /v1 prefix."""
    with openai.OpenAI(base_url=stack.root_url, api_key=MASTER_KEY, max_retries=0, timeout=30.0) as sdk:
        assert sdk.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES).choices[0].message.content
        assert len(sdk.embeddings.create(model=EMBED_MODEL, input=["a"]).data) == 1
        assert [m.id for m in sdk.models.list()] == MODEL_NAMES


def test_request_id_from_the_client_is_echoed(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=MESSAGES, extra_headers={"x-request-id": "conformance-req-42"}
    )
    assert raw.headers["x-request-id"] == "conformance-req-42"


def test_openai_parameters_pass_through(client: openai.OpenAI, stack: Stack) -> None:
    """Parameters the gateway does not model still reach the provider and the call succeeds.

    The mock answers `n` choices and stops at `max_completion_tokens` with finish_reason
    `length`, so those two prove the body was forwarded; the rest must at least not be refused."""
    before = stack.mock_stats()
    image = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()
    messages = [
        {"role": "system", "content": "Answer in JSON."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe this picture."},
                {"type": "image_url", "image_url": {"url": image, "detail": "low"}},
            ],
        },
    ]
    completion = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=messages,
        seed=1234,
        n=2,
        max_completion_tokens=3,
        temperature=0.2,
        logprobs=True,
        top_logprobs=2,
        user="conformance",
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "description",
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {"summary": {"type": "string"}},
                    "required": ["summary"],
                    "additionalProperties": False,
                },
            },
        },
        extra_body={"some_vendor_field": {"a": 1}},
    )
    assert isinstance(completion, ChatCompletion)
    assert [c.index for c in completion.choices] == [0, 1]
    for choice in completion.choices:
        assert choice.finish_reason == "length"
        assert choice.message.content == "tok0 tok1 tok2 "
    assert_usage_adds_up(completion.usage)
    assert completion.usage.prompt_tokens == mock_prompt_tokens(messages)
    assert completion.usage.completion_tokens == 2 * 3
    after = stack.mock_stats()
    assert after["chat_completions"] == before["chat_completions"] + 1


def test_streaming_with_usage(client: openai.OpenAI, stack: Stack) -> None:
    before = stack.mock_stats()
    raw = client.chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-request-id"]
    assert raw.headers["x-switchyard-deployment"] == "openai/mock-gpt"
    with raw.parse() as stream:
        chunks = list(stream)

    assert chunks, "the stream had no chunks"
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1, "every chunk of one completion carries its id"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == MOCK_TEXT
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]

    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1, f"expected exactly one usage chunk, got {len(with_usage)}"
    assert with_usage[0] is chunks[-1], "the usage chunk comes last"
    assert with_usage[0].choices == []
    assert_usage_adds_up(with_usage[0].usage)

    # The gateway read the provider's stream to its end ([DONE]).
    stats = wait_for_mock(stack, "streams_completed", before["streams_completed"] + 1)
    assert stats["streams_completed"] == before["streams_completed"] + 1
    assert stats["streams"] == before["streams"] + 1


def test_streaming_without_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, stream=True))
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks), "without include_usage no chunk has empty choices"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == MOCK_TEXT


def test_streaming_several_choices(client: openai.OpenAI) -> None:
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    for chunk in client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, n=2, stream=True):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                assert choice.index not in finishes, "one finish_reason per choice"
                finishes[choice.index] = choice.finish_reason
    assert texts == {0: MOCK_TEXT, 1: MOCK_TEXT}
    assert finishes == {0: "stop", 1: "stop"}


def test_streaming_helper(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model=CHAT_MODEL, messages=MESSAGES, stream_options={"include_usage": True}
    ) as stream:
        events = list(stream)
        final = stream.get_final_completion()

    types = [e.type for e in events]
    assert "chunk" in types
    deltas = "".join(e.delta for e in events if e.type == "content.delta")
    assert deltas == MOCK_TEXT
    done = [e for e in events if e.type == "content.done"]
    assert len(done) == 1 and done[0].content == MOCK_TEXT

    assert final.choices[0].message.content == MOCK_TEXT
    assert final.choices[0].finish_reason == "stop"
    assert_usage_adds_up(final.usage)


# --- tools --------------------------------------------------------------------------------------


def test_tool_call(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=CHAT_MODEL, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL], tool_choice="auto"
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.id
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}


def test_streamed_tool_call_reassembles(client: openai.OpenAI) -> None:
    calls: dict[int, dict[str, str]] = {}
    finishes = []
    for chunk in client.chat.completions.create(
        model=CHAT_MODEL, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL], stream=True
    ):
        for choice in chunk.choices:
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                if delta.id:
                    call["id"] = delta.id
                if delta.function and delta.function.name:
                    call["name"] += delta.function.name
                if delta.function and delta.function.arguments:
                    call["arguments"] += delta.function.arguments
    assert finishes == ["tool_calls"]
    assert list(calls) == [0]
    assert calls[0]["id"]
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"location": "Paris"}


def test_streaming_helper_with_tools(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(model=CHAT_MODEL, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL]) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    done = [e for e in events if e.type == "tool_calls.function.arguments.done"]
    assert len(done) == 1
    assert done[0].name == "get_weather"
    assert json.loads(done[0].arguments) == {"location": "Paris"}
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}
    assert final.choices[0].finish_reason == "tool_calls"


def test_tool_result_follow_up(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model=CHAT_MODEL, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL])
    assistant = first.choices[0].message
    call = assistant.tool_calls[0]
    # As applications do: the SDK's own message object goes back into the history as is
    # (with its null `refusal`, empty `annotations` and so on).
    messages = [
        *WEATHER_QUESTION,
        assistant,
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature_c": 21})},
    ]
    second = client.chat.completions.create(model=CHAT_MODEL, messages=messages, tools=[WEATHER_TOOL])
    choice = second.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.tool_calls is None
    assert choice.message.content
    assert_usage_adds_up(second.usage)


# --- embeddings ---------------------------------------------------------------------------------


def assert_unit_vector(vector: list[float]) -> None:
    assert all(isinstance(v, float) for v in vector)
    assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-4)


def test_embeddings_default_encoding(client: openai.OpenAI) -> None:
    """This SDK asks for `encoding_format: "base64"` when the caller names none, and decodes it."""
    raw = client.embeddings.with_raw_response.create(model=EMBED_MODEL, input=["a", "b"])
    sent = json.loads(raw.http_request.content)
    assert sent["encoding_format"] == "base64", "the SDK's default changed; revisit this test"
    assert raw.headers["x-switchyard-deployment"] == "openai/mock-embed"
    wire = raw.http_response.json()
    assert all(isinstance(item["embedding"], str) for item in wire["data"]), "base64 was asked for"

    response = raw.parse()
    assert isinstance(response, CreateEmbeddingResponse)
    assert [item.index for item in response.data] == [0, 1]
    for item in response.data:
        assert len(item.embedding) == 8
        assert_unit_vector(item.embedding)
    assert response.data[0].embedding != response.data[1].embedding
    assert response.usage.prompt_tokens > 0
    assert response.usage.total_tokens == response.usage.prompt_tokens


def test_embeddings_float_and_base64_agree(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model=EMBED_MODEL, input=["a", "b"], encoding_format="float")
    assert isinstance(floats, CreateEmbeddingResponse)
    assert len(floats.data) == 2
    for item in floats.data:
        assert_unit_vector(item.embedding)

    # Asked for explicitly, base64 reaches the caller undecoded: little-endian float32s.
    encoded = client.embeddings.create(model=EMBED_MODEL, input=["a", "b"], encoding_format="base64")
    for as_float, as_base64 in zip(floats.data, encoded.data, strict=True):
        assert isinstance(as_base64.embedding, str)
        raw = base64.b64decode(as_base64.embedding)
        decoded = list(struct.unpack(f"<{len(raw) // 4}f", raw))
        assert decoded == pytest.approx(as_float.embedding, rel=1e-6)

    default = client.embeddings.create(model=EMBED_MODEL, input=["a", "b"])
    for as_float, as_default in zip(floats.data, default.data, strict=True):
        assert as_default.embedding == pytest.approx(as_float.embedding, rel=1e-6)


def test_embeddings_dimensions_pass_through(client: openai.OpenAI) -> None:
    response = client.embeddings.create(model=EMBED_MODEL, input="one string", dimensions=16)
    assert len(response.data) == 1
    assert len(response.data[0].embedding) == 16
    assert_unit_vector(response.data[0].embedding)


# --- models -------------------------------------------------------------------------------------


def test_models_list(client: openai.OpenAI) -> None:
    models = list(client.models.list())
    assert [m.id for m in models] == MODEL_NAMES
    for model in models:
        assert isinstance(model, Model)
        assert model.object == "model"
        assert isinstance(model.created, int)
        assert isinstance(model.owned_by, str)


def test_models_retrieve(client: openai.OpenAI) -> None:
    model = client.models.retrieve(CHAT_MODEL)
    assert isinstance(model, Model)
    assert model.id == CHAT_MODEL

    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.status_code == 404
    assert_openai_envelope(caught.value)


# --- errors -------------------------------------------------------------------------------------


def test_wrong_api_key_is_an_authentication_error(stack: Stack) -> None:
    before = stack.mock_stats()
    with openai.OpenAI(base_url=stack.base_url, api_key="sk-wrong", max_retries=0, timeout=30.0) as wrong:
        with pytest.raises(openai.AuthenticationError) as caught:
            wrong.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
        assert caught.value.status_code == 401
        error = assert_openai_envelope(caught.value)
        assert error["type"] == "authentication_error"
        assert "sk-wrong" not in caught.value.response.text

        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
        with pytest.raises(openai.AuthenticationError):
            wrong.embeddings.create(model=EMBED_MODEL, input="a")
    after = stack.mock_stats()
    assert after["requests"] == before["requests"], "a rejected request must not reach the provider"


def test_unknown_model_is_not_found(client: openai.OpenAI, stack: Stack) -> None:
    before = stack.mock_stats()
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-nonexistent", messages=MESSAGES)
    assert caught.value.status_code == 404
    error = assert_openai_envelope(caught.value)
    assert error["param"] == "model"
    assert error["code"] == "model_not_found"
    assert "gpt-nonexistent" in error["message"]
    for name in MODEL_NAMES:
        assert name in error["message"], f"the 404 does not list {name}: {error['message']}"

    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="embed-nonexistent", input="a")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-nonexistent", messages=MESSAGES, stream=True)
    assert stack.mock_stats()["requests"] == before["requests"]


def test_malformed_json_is_a_bad_request(client: openai.OpenAI, stack: Stack) -> None:
    before = stack.mock_stats()
    with pytest.raises(openai.BadRequestError) as caught:
        client.post(
            "/chat/completions",
            content=b'{"model": "gpt-4o-mini", "messages": [',
            options={"headers": {"content-type": "application/json"}},
            cast_to=object,
        )
    assert caught.value.status_code == 400
    error = assert_openai_envelope(caught.value)
    assert error["type"] == "invalid_request_error"
    assert "JSON" in error["message"]
    assert stack.mock_stats()["requests"] == before["requests"]


def test_missing_messages_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/chat/completions", body={"model": CHAT_MODEL}, cast_to=object)
    assert caught.value.status_code == 400
    error = assert_openai_envelope(caught.value)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages"
    assert "messages" in error["message"]


def test_provider_rejection_is_a_bad_request(client: openai.OpenAI) -> None:
    """A 400 from the provider reaches the client as a 400 with the provider's message."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, n=200)
    error = assert_openai_envelope(caught.value)
    assert error["type"] == "invalid_request_error"
    assert "200 is not a valid value for 'n'" in error["message"], error["message"]

    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=EMBED_MODEL, input="a", dimensions=0)
    error = assert_openai_envelope(caught.value)
    assert "'dimensions'" in error["message"], error["message"]


def test_provider_rejection_keeps_the_param(client: openai.OpenAI) -> None:
    """OpenAI names the offending parameter in `param`; a same-dialect gateway keeps it."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, n=200)
    assert caught.value.param == "n"


def test_unreachable_provider_is_a_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="broken", messages=MESSAGES)
    err = caught.value
    assert isinstance(err, openai.APIStatusError)
    assert err.status_code == 502
    error = assert_openai_envelope(err)
    assert error["type"] == "api_error"
    assert "connect" in error["message"].lower(), error["message"]

    # A stream that fails before its first chunk still gets a real status, not a broken stream.
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="broken", messages=MESSAGES, stream=True)
    assert caught.value.status_code == 502
    assert_openai_envelope(caught.value)


def test_body_over_32_mib_is_413(client: openai.OpenAI, stack: Stack) -> None:
    before = stack.mock_stats()
    huge = "x" * (32 * 1024 * 1024 + 1)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": huge}])
    assert caught.value.status_code == 413
    error = assert_openai_envelope(caught.value)
    assert error["type"] == "invalid_request_error"
    assert stack.mock_stats()["requests"] == before["requests"]

    # The gateway is still serving afterwards.
    assert client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES).choices[0].message.content


# --- the async client -----------------------------------------------------------------------------


def test_async_client(stack: Stack) -> None:
    async def scenario() -> None:
        async with openai.AsyncOpenAI(
            base_url=stack.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30.0
        ) as sdk:
            stream = await sdk.chat.completions.create(
                model=CHAT_MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
            chunks = [chunk async for chunk in stream]
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == MOCK_TEXT
            assert chunks[-1].choices == [] and chunks[-1].usage is not None

            # Concurrent requests, streamed and not, over the client's connection pool.
            async def streamed() -> str:
                parts = []
                async for chunk in await sdk.chat.completions.create(
                    model=CHAT_MODEL, messages=MESSAGES, stream=True
                ):
                    parts.extend(c.delta.content or "" for c in chunk.choices)
                return "".join(parts)

            async def whole() -> str:
                completion = await sdk.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
                return completion.choices[0].message.content or ""

            answers = await asyncio.gather(*[streamed() for _ in range(4)], *[whole() for _ in range(4)])
            assert answers == [MOCK_TEXT] * 8

            embeddings = await sdk.embeddings.create(model=EMBED_MODEL, input=["a", "b"])
            assert len(embeddings.data) == 2
            for item in embeddings.data:
                assert_unit_vector(item.embedding)

            with pytest.raises(openai.NotFoundError):
                await sdk.chat.completions.create(model="gpt-nonexistent", messages=MESSAGES)

    asyncio.run(scenario())


# --- probes and auth on the raw HTTP surface ----------------------------------------------------


@pytest.mark.parametrize("path", ["/health/liveness", "/health/readiness"])
def test_health_probes_need_no_key(stack: Stack, path: str) -> None:
    status, body = http_get(stack.root_url + path)
    assert status == 200, body
    assert json.loads(body)["status"] in ("alive", "ready")


def test_api_needs_the_key_and_accepts_it_as_x_api_key(stack: Stack) -> None:
    status, body = http_get(stack.base_url + "/models")
    assert status == 401, body
    assert json.loads(body)["error"]["type"] == "authentication_error"

    status, body = http_get(stack.base_url + "/models", headers={"x-api-key": MASTER_KEY})
    assert status == 200, body
    assert [m["id"] for m in json.loads(body)["data"]] == MODEL_NAMES


def test_gateway_stays_up(stack: Stack) -> None:
    """Last in the file: nothing above crashed the gateway or the mock."""
    assert stack.gateway.popen.poll() is None, stack.gateway.log()
    assert stack.mock.popen.poll() is None
    status, _ = http_get(stack.root_url + "/health/liveness")
    assert status == 200
