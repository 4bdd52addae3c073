"""The OpenAI Python SDK's Responses API through two TruckLLM gateways in front of a provider
that takes Responses natively (the mock with --responses-native, two keys, round robin):
each follow-up must reach the key that made the response it continues, whichever gateway it
lands on, or the provider does not find it.

Usage: openai_responses_native.py GATEWAY_A GATEWAY_B
Prints "all checks passed" at the end; any failed check raises.
"""

import sys

from openai import BadRequestError, NotFoundError, OpenAI

A, B = sys.argv[1], sys.argv[2]
clients = [OpenAI(base_url=url, api_key="client-secret", max_retries=0) for url in (A, B)]
REPLY = "This is a mock reply from the TruckLLM upstream."

first = clients[0].responses.create(model="gpt-4o-mini", input="Start a conversation")
assert first.id.startswith("resp_mock"), first.id
assert first.output_text == REPLY, first.output_text
previous = first
for turn in range(6):
    client = clients[(turn + 1) % 2]
    answer = client.responses.create(model="gpt-4o-mini", input=f"Turn {turn}", previous_response_id=previous.id)
    assert answer.previous_response_id == previous.id
    assert answer.usage.input_tokens > previous.usage.input_tokens, (previous.usage, answer.usage)
    previous = answer

kinds = []
with clients[1].responses.stream(model="gpt-4o-mini", input="Stream a turn", previous_response_id=previous.id) as stream:
    for event in stream:
        kinds.append(event.type)
    streamed = stream.get_final_response()
assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
assert streamed.output_text == REPLY
assert streamed.usage.input_tokens > previous.usage.input_tokens

after = clients[0].responses.create(model="gpt-4o-mini", input="After the stream", previous_response_id=streamed.id)
assert after.usage.input_tokens > streamed.usage.input_tokens
# Retrieve and delete ask the key that made the response, from either gateway.
kept = clients[1].responses.retrieve(first.id)
assert kept.id == first.id and kept.output_text == REPLY, kept
clients[0].responses.delete(first.id)
try:
    clients[1].responses.retrieve(first.id)
    raise AssertionError("a deleted response is still there")
except NotFoundError:
    pass
try:
    clients[1].responses.create(model="gpt-4o-mini", input="x", previous_response_id=first.id)
    raise AssertionError("a deleted response was continued")
except BadRequestError as e:
    assert "not found" in str(e), e
print("all checks passed")
