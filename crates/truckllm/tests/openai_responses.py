"""The official OpenAI Python SDK's Responses API against two TruckLLM gateways sharing one
store: every follow-up (previous_response_id) lands on the other gateway.

Usage: openai_responses.py GATEWAY_A GATEWAY_B MOCK_URL
Models: gpt-4o-mini goes to an OpenAI-compatible provider (translated to Chat),
claude-sonnet-4-5 to an Anthropic provider (translated to Chat, then to Messages).
Prints "all checks passed" at the end; any failed check raises.
"""

import json
import sys
import urllib.request

from openai import NotFoundError, OpenAI, BadRequestError

A, B, MOCK = sys.argv[1], sys.argv[2], sys.argv[3]
a = OpenAI(base_url=A, api_key="client-secret", max_retries=0)
b = OpenAI(base_url=B, api_key="client-secret", max_retries=0)
REPLY = "This is a mock reply from the TruckLLM upstream."
WEATHER = [{
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]


def last_upstream_request():
    with urllib.request.urlopen(MOCK + "/mock/last-request") as r:
        return json.load(r)


def check_text(model):
    first = a.responses.create(model=model, input="Say hello to the gateway", instructions="Be brief.")
    assert first.id.startswith("resp_"), first.id
    assert first.status == "completed", first.status
    assert first.output_text == REPLY, first.output_text
    assert first.usage.input_tokens > 0 and first.usage.output_tokens > 0, first.usage
    assert first.usage.input_tokens_details.cached_tokens == 0
    assert first.usage.output_tokens_details.reasoning_tokens == 0
    # The follow-up on the other gateway continues the stored conversation, without the
    # first turn's instructions.
    second = b.responses.create(model=model, input="And again", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens > first.usage.input_tokens, (first.usage, second.usage)
    upstream = json.dumps(last_upstream_request())
    assert "Say hello to the gateway" in upstream and REPLY in upstream, upstream
    assert "Be brief." not in upstream, "instructions are not carried over"
    items = a.responses.input_items.list(second.id, order="asc")
    texts = [i.content[0].text for i in items.data if i.type == "message"]
    assert texts == ["Say hello to the gateway", REPLY, "And again"], texts
    assert b.responses.retrieve(first.id).output_text == REPLY
    return first


def check_tools(model):
    asked = a.responses.create(model=model, input="What is the weather in Paris?", tools=WEATHER)
    calls = [o for o in asked.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather", asked.output
    assert calls[0].call_id, calls[0]
    json.loads(calls[0].arguments)
    answered = b.responses.create(
        model=model,
        previous_response_id=asked.id,
        tools=WEATHER,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C and sunny"}],
    )
    assert answered.output_text == REPLY, answered.output
    upstream = json.dumps(last_upstream_request())
    assert "18C and sunny" in upstream and calls[0].call_id in upstream, upstream


def check_json_schema():
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    a.responses.create(
        model="gpt-4o-mini",
        input="Name a city",
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
    )
    sent = last_upstream_request()["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}}, sent


def check_stream(model, previous):
    kinds, numbers = [], []
    with b.responses.stream(model=model, input="Stream it", previous_response_id=previous) as stream:
        for event in stream:
            kinds.append(event.type)
            numbers.append(event.sequence_number)
        final = stream.get_final_response()
    assert numbers == list(range(len(numbers))), numbers
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"], kinds
    assert "response.output_text.delta" in kinds, kinds
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"], kinds
    assert final.output_text == REPLY, final.output_text
    assert final.usage is not None and final.usage.output_tokens > 0, final.usage
    # A streamed response is kept too: the other gateway continues it.
    after = a.responses.create(model=model, input="After the stream", previous_response_id=final.id)
    assert after.usage.input_tokens > final.usage.input_tokens


def check_store_and_delete(first_id):
    unstored = a.responses.create(model="gpt-4o-mini", input="forget me", store=False)
    try:
        b.responses.retrieve(unstored.id)
        raise AssertionError("store: false kept the response")
    except NotFoundError:
        pass
    a.responses.delete(first_id)
    try:
        b.responses.retrieve(first_id)
        raise AssertionError("a deleted response is still there")
    except NotFoundError:
        pass
    try:
        b.responses.create(model="gpt-4o-mini", input="x", previous_response_id=first_id)
        raise AssertionError("a deleted response was continued")
    except BadRequestError as e:
        assert "not found" in str(e), e


def check_untranslatable():
    try:
        a.responses.create(model="gpt-4o-mini", input="hi", tools=[{"type": "custom", "name": "patch"}])
        raise AssertionError("a custom tool was accepted")
    except BadRequestError as e:
        assert e.body["code"] == "untranslatable_request", e.body
        assert "`custom` tools" in e.body["message"], e.body


for model in ["gpt-4o-mini", "claude-sonnet-4-5"]:
    first = check_text(model)
    check_tools(model)
    check_stream(model, first.id)
check_json_schema()
check_store_and_delete(first.id)
check_untranslatable()
print("all checks passed")
