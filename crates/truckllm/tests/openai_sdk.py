"""The official OpenAI Python SDK, unchanged, against a TruckLLM gateway.

Usage: python3 openai_sdk.py BASE_URL   (e.g. http://127.0.0.1:2906/v1)
Exits non-zero with the failing check if anything is off.
"""

import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key="unused-in-open-mode", max_retries=0)

# Non-streaming chat, with fields that must pass through.
reply = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "count these five words"}],
    max_tokens=3,
    temperature=0.2,
    seed=7,
)
assert reply.choices[0].message.content == "This is a", reply
assert reply.usage.prompt_tokens == 4 and reply.usage.completion_tokens == 3, reply.usage

# Streaming without usage: the SDK sees only content chunks.
chunks = list(client.chat.completions.create(
    model="fast", messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=4,
))
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert text == "This is a mock", text
assert all(c.usage is None for c in chunks), "usage chunk must be stripped when not asked for"

# Streaming with usage.
chunks = list(client.chat.completions.create(
    model="mock:gpt-4o-mini", messages=[{"role": "user", "content": "hi there"}], stream=True,
    stream_options={"include_usage": True}, max_tokens=2,
))
assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 4, chunks[-1]

# Embeddings: the SDK asks for base64 unless told otherwise and decodes it; both forms must
# give the same unit vectors.
emb = client.embeddings.create(model="text-embedding-3-small", input=["one two", "three"])
assert len(emb.data) == 2 and len(emb.data[0].embedding) == 8, emb
assert emb.usage.prompt_tokens == 3, emb.usage
floats = client.embeddings.create(
    model="text-embedding-3-small", input=["one two", "three"], encoding_format="float",
)
for decoded, plain in zip(emb.data, floats.data):
    assert all(abs(a - b) < 1e-6 for a, b in zip(decoded.embedding, plain.embedding)), (decoded, plain)
    assert abs(sum(v * v for v in decoded.embedding) - 1.0) < 1e-5, decoded

# Models: listed, and retrieved one by one.
ids = [m.id for m in client.models.list()]
assert "mock:gpt-4o-mini" in ids and "fast" in ids, ids
model = client.models.retrieve("mock:gpt-4o-mini")
assert model.id == "mock:gpt-4o-mini" and model.owned_by == "mock", model
try:
    client.models.retrieve("mock:no-such-model")
    raise AssertionError("unknown model retrieved")
except openai.NotFoundError as e:
    assert e.body["code"] == "model_not_found", e.body

# Chat to an Anthropic provider (`claude-*` in the demo): translated both ways.
reply = client.chat.completions.create(
    model="claude-opus-5-5",
    messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "count these words"}],
    max_tokens=3,
)
assert reply.choices[0].message.content == "This is a", reply
assert reply.choices[0].finish_reason == "length", reply
assert reply.usage.completion_tokens == 3 and reply.usage.prompt_tokens > 0, reply.usage
chunks = list(client.chat.completions.create(
    model="claude-opus-5-5", messages=[{"role": "user", "content": "hi"}], stream=True,
    stream_options={"include_usage": True}, max_tokens=4,
))
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert text == "This is a mock", text
assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4, chunks[-1]
weather = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}}]
called = client.chat.completions.create(
    model="claude-opus-5-5", tools=weather, max_tokens=50,
    messages=[{"role": "user", "content": "what is the weather in Paris"}],
)
assert called.choices[0].finish_reason == "tool_calls", called
call = called.choices[0].message.tool_calls[0]
assert call.function.name == "get_weather", call
import json as _json
assert isinstance(_json.loads(call.function.arguments).get("city"), str), call
streamed_calls = list(client.chat.completions.create(
    model="claude-opus-5-5", tools=weather, max_tokens=50, stream=True,
    messages=[{"role": "user", "content": "what is the weather in Oslo"}],
))
arguments = "".join(
    c.choices[0].delta.tool_calls[0].function.arguments or ""
    for c in streamed_calls if c.choices and c.choices[0].delta.tool_calls
)
assert isinstance(_json.loads(arguments).get("city"), str), arguments

# Errors arrive as the SDK's typed exceptions.
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("unknown model accepted")
except openai.NotFoundError as e:
    assert e.body["code"] == "model_not_found", e.body

print("openai sdk: all checks passed")
