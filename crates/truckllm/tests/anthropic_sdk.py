"""The official Anthropic Python SDK, unchanged, against a TruckLLM gateway.

Usage: python3 anthropic_sdk.py BASE_URL   (e.g. http://127.0.0.1:2906)
`claude-*` models go to an Anthropic provider (passed through), `gpt-4o-mini` to an
OpenAI-compatible one (translated). Exits non-zero with the failing check if anything is off.
"""

import json
import sys

import anthropic

client = anthropic.Anthropic(base_url=sys.argv[1], api_key="unused-in-open-mode", max_retries=0)
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}

for model in ["claude-opus-5-5", "gpt-4o-mini"]:
    # Create.
    reply = client.messages.create(
        model=model, max_tokens=5, system="be brief",
        messages=[{"role": "user", "content": "count these five words"}],
    )
    assert reply.type == "message" and reply.role == "assistant", reply
    assert reply.content[0].type == "text" and reply.content[0].text == "This is a mock reply", (model, reply)
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens == 5, (model, reply.usage)

    # Stream: the SDK's own event parser assembles the message.
    with client.messages.stream(
        model=model, max_tokens=4, messages=[{"role": "user", "content": "hi there"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "This is a mock", (model, text)
    assert final.usage.output_tokens == 4, (model, final.usage)

    # Count tokens: the provider's own count, or the gateway's estimate.
    counted = client.messages.count_tokens(
        model=model, messages=[{"role": "user", "content": "one two three"}],
    )
    assert counted.input_tokens > 0, (model, counted)

# Tools, through the Anthropic provider: a tool_use block, then the tool's result.
asked = client.messages.create(
    model="claude-opus-5-5", max_tokens=50, tools=[WEATHER],
    messages=[{"role": "user", "content": "what is the weather in Paris"}],
)
assert asked.stop_reason == "tool_use", asked
use = next(b for b in asked.content if b.type == "tool_use")
assert use.name == "get_weather" and isinstance(use.input.get("city"), str), use
answered = client.messages.create(
    model="claude-opus-5-5", max_tokens=50, tools=[WEATHER],
    messages=[
        {"role": "user", "content": "what is the weather in Paris"},
        {"role": "assistant", "content": asked.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ],
)
assert answered.content[0].type == "text", answered

# Tools streamed: the SDK joins the input_json_delta pieces into the tool's input.
with client.messages.stream(
    model="claude-opus-5-5", max_tokens=50, tools=[WEATHER],
    messages=[{"role": "user", "content": "the weather in Oslo, please"}],
) as stream:
    final = stream.get_final_message()
streamed_use = next(b for b in final.content if b.type == "tool_use")
assert isinstance(streamed_use.input.get("city"), str), final

# Errors arrive as the SDK's typed exceptions, in Anthropic's shape.
try:
    client.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("unknown model accepted")
except anthropic.NotFoundError as e:
    assert e.body["type"] == "error" and e.body["error"]["type"] == "not_found_error", e.body
try:
    client.messages.create(model="anthropic:missing-model", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("the provider's 404 was not passed on")
except anthropic.NotFoundError as e:
    assert e.body["error"]["type"] == "not_found_error", e.body

print("anthropic sdk: all checks passed")
